def test_wheel_cell_package_texts_are_unchanged(tmp_path, golden):
    """A published version never changes content (the pool refuses it), so the texts a
    wheel cell ships are pinned here: a change needs a packaging revision bump and
    `pytest tests/unit --update-golden`."""
    import gzip
    from mxbuild import debpack, matrix, options
    from mxbuild.context import open_run
    from mxbuild.deb import stage_tree
    from mxbuild.payload import Payload
    from mxbuild.recipes.official import OVERRIDES
    from mxbuild.recipes.wheel import PROVENANCE
    from ..conftest import ROOT
    cell = matrix.load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12")[0]
    payload_dir = tmp_path / "payload"
    (payload_dir / "libmxnet").mkdir(parents=True)
    rels = ("libmxnet.so", "libmxnet/libopenblas.so.0", "libmxnet/libgfortran.so.3")
    for rel in rels:
        (payload_dir / rel).write_bytes(b"x")
    pin = cell.official_wheel
    source = (f"{pin.filename} (PyPI {pin.name}=={pin.version}, "
              f"sha256 {pin.sha256})")   # as the wheel recipe writes it
    payload = Payload(payload_dir, {rel: "0" * 64 for rel in rels}, {}, source, 1652763094,
                      pin.bundled, tuple(p.format(source=source) for p in PROVENANCE),
                      OVERRIDES)
    ctx = open_run(options.resolve(out_dir=str(tmp_path / "out")), gpu=False)
    src = stage_tree(ctx, cell, payload, {"dpkg": "1.21.22"},
                     {"libmxnet": debpack.choose("1.21.22", "debian12")}, tmp_path / "src")
    doc = src / "debian/libmxnet/usr/share/doc/libmxnet"
    golden("deb12-copyright", (doc / "copyright").read_text())
    golden("deb12-changelog", gzip.decompress((doc / "changelog.Debian.gz").read_bytes()).decode())
    golden("deb12-lintian-overrides",
           (src / "debian/libmxnet/usr/share/lintian/overrides/libmxnet").read_text())
    golden("deb12-control", (src / "debian/control").read_text())
    golden("deb12-symbols", (src / "DEBIAN/libmxnet/symbols").read_text())
