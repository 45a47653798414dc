def test_wheel_cell_package_texts_are_unchanged(tmp_path, golden):
    """A published version never changes content (the pool refuses it), so the texts a
    wheel cell ships are pinned here: a change needs a packaging revision bump and
    `pytest tests/unit --update-golden`."""
    import gzip
    from mxbuild import deb, debpack, matrix, options
    from mxbuild.recipes import Payload
    from ..conftest import ROOT
    cell = matrix.load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12")[0]
    payload_dir = tmp_path / "payload"
    (payload_dir / "libmxnet").mkdir(parents=True)
    for rel in ("libmxnet.so", "libmxnet/libopenblas.so.0", "libmxnet/libgfortran.so.3"):
        (payload_dir / rel).write_bytes(b"x")
    source = (f"{cell.wheel.filename} (PyPI {cell.wheel.name}=={cell.wheel.version}, "
              f"sha256 {cell.wheel.sha256})")   # as recipes.harvest_wheel writes it
    payload = Payload(payload_dir, {"libmxnet.so": "0" * 64}, {}, source, 1652763094)
    src = deb.stage_tree(cell, payload, {"dpkg": "1.21.22"}, debpack.choose("1.21.22", "debian12"),
                         options.resolve(out_dir=str(tmp_path / "out")), tmp_path / "src")
    doc = src / "debian/libmxnet/usr/share/doc/libmxnet"
    golden("deb12-copyright", (doc / "copyright").read_text())
    golden("deb12-changelog", gzip.decompress((doc / "changelog.Debian.gz").read_bytes()).decode())
    golden("deb12-lintian-overrides",
           (src / "debian/libmxnet/usr/share/lintian/overrides/libmxnet").read_text())
    golden("deb12-control", (src / "debian/control").read_text())
    golden("deb12-symbols", (src / "DEBIAN/symbols").read_text())
