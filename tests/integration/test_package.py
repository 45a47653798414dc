"""The wheel recipe (and the harvest path it shares with recipe maven) and the .deb of the
cpu × debian12 cell, inspected with real tools."""
import dataclasses
import gzip
import hashlib
import io
import json
import re
import subprocess

import pytest

from mxbuild import deb
from mxbuild.errors import ChecksumError, MxbuildError
from mxbuild.fetch import cas_path
from mxbuild.recipes.wheel import harvest

from ..conftest import ctx_with

MA = "usr/lib/x86_64-linux-gnu"


@pytest.fixture(scope="session")
def payload(run_ctx, cpu_cell, cell_images):
    return harvest(run_ctx, cpu_cell, cell_images[1].ref, io.StringIO())


@pytest.fixture(scope="session")
def built(run_ctx, cpu_cell, cell_images, payload):
    (only,) = deb.build(run_ctx, cpu_cell, payload, cell_images[1].ref, io.StringIO(),
                        run_ctx.opts.out_dir / "debs" / cpu_cell.id)
    return only


@pytest.fixture(scope="session")
def unpacked(built, tmp_path_factory):
    root = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["dpkg-deb", "-x", str(built.path), str(root)], check=True)
    return root


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *args], check=True, capture_output=True, text=True).stdout


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_control_fields(built, cpu_cell):
    fields = dict(re.findall(r"^ ?([A-Za-z-]+): (.*)$", dpkg_deb("-I", str(built.path)), re.M))
    assert fields["Package"] == "libmxnet"
    assert fields["Version"] == "1.9.1-6~deb12" == cpu_cell.deb_version
    assert fields["Architecture"] == "amd64"
    assert fields["Section"] == "libs"
    assert fields["Mxnet-Variant"] == "cpu"
    depends = [d.split()[0] for d in fields["Depends"].split(", ")]
    # from dpkg-shlibdeps for what is not bundled
    assert {"libc6", "libgomp1", "libquadmath0", "libstdc++6", "libgcc-s1"} <= set(depends)
    # the bundled libraries are not dependencies
    assert not any("openblas" in d or "gfortran" in d for d in depends)
    assert built.path.name == "libmxnet_1.9.1-6~deb12_amd64.deb"


def test_contents(built):
    listing = dpkg_deb("-c", str(built.path))
    files = sorted(line.split()[-1] for line in listing.splitlines() if line.startswith("-"))
    assert files == sorted([
        f"./{MA}/libmxnet.so",
        f"./{MA}/libmxnet/libgfortran.so.3",
        f"./{MA}/libmxnet/libopenblas.so.0",
        "./usr/share/doc/libmxnet/buildinfo.json",
        "./usr/share/doc/libmxnet/changelog.Debian.gz",
        "./usr/share/doc/libmxnet/copyright",
        "./usr/share/lintian/overrides/libmxnet",
    ])
    links = [line.split()[-3:] for line in listing.splitlines() if line.startswith("l")]
    assert links == [[f"./{MA}/m", "->", "libmxnet"]]   # what libmxnet.so's RPATH names
    for line in listing.splitlines():
        assert " root/root " in line, line
    members = subprocess.run(["sh", "-c", f"dpkg-deb --ctrl-tarfile '{built.path}' | tar -t"],
                             check=True, capture_output=True, text=True).stdout.split()
    assert sorted(m.lstrip("./") for m in members if m not in ("./",)) == [
        "control", "md5sums", "symbols", "triggers"]


def test_lintian_has_no_errors_and_every_override_has_a_reason(built, unpacked):
    output = built.lintian_path.read_text()
    assert built.lintian_errors == 0, output
    assert "lintian-exit=0" in output
    lines = (unpacked / "usr/share/lintian/overrides/libmxnet").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"override without a reason: {line}"


def test_triggers_and_symbols(built, tmp_path):
    subprocess.run(["dpkg-deb", "-e", str(built.path), str(tmp_path / "ctl")], check=True)
    assert "activate-noawait ldconfig" in (tmp_path / "ctl/triggers").read_text()
    assert (tmp_path / "ctl/symbols").read_text() == "libmxnet.so libmxnet (>= 1.9.1)\n"


def test_library_rpath_points_at_the_private_directory_in_place(unpacked, cpu_cell,
                                                                 test_opts):
    """Upstream's RPATH string rewritten in place: same size as the wheel's file, still a
    DT_RPATH, $ORIGIN/m -> libmxnet/ (no segment appended, unlike patchelf)."""
    import zipfile
    lib = unpacked / MA / "libmxnet.so"
    dyn = subprocess.run(["readelf", "-d", str(lib)], check=True, capture_output=True,
                         text=True).stdout
    assert "(RPATH)              Library rpath: [$ORIGIN/m]" in dyn
    assert "Library soname: [libmxnet.so]" in dyn
    wheel = cas_path(test_opts.cache_dir / "downloads", cpu_cell.official_wheel.sha256,
                     cpu_cell.official_wheel.filename)
    with zipfile.ZipFile(wheel) as zf:
        assert zf.getinfo("mxnet/libmxnet.so").file_size == lib.stat().st_size
    loads = subprocess.run(["readelf", "-lW", str(lib)], check=True, capture_output=True,
                           text=True).stdout
    assert len([line for line in loads.splitlines() if line.strip().startswith("LOAD")]) == 2


@pytest.mark.parametrize("distro", ["ubuntu16", "ubuntu18"])
def test_old_ldconfig_says_nothing_about_the_packaged_files(docker_client, run_ctx, built,
                                                            distro):
    """glibc <= 2.27's ldconfig (xenial, bionic) called the patchelf'd library "truncated";
    the package's files, unpacked as dpkg would, draw no word from it now."""
    from mxbuild import images
    from mxbuild.containers import Container
    base = images.ensure_base(run_ctx, run_ctx_matrix().distros[distro], io.StringIO())
    with Container(docker_client, base.ref, label=f"ldconfig-{distro}") as box:
        box.copy_into(built.path, "/tmp")
        box.run(["dpkg-deb", "-x", f"/tmp/{built.path.name}", "/"])
        out = box.run("ldconfig -v 2>&1").output
        cache = box.run("ldconfig -p").output
        ldd = box.run(f"ldd /{MA}/libmxnet.so").output
    assert [line for line in out.splitlines() if "mxnet" in line or "truncated" in line] \
        == ["\tlibmxnet.so -> libmxnet.so"], out
    assert f"libmxnet.so (libc6,x86-64) => /{MA}/libmxnet.so" in cache
    assert f"libopenblas.so.0 => /{MA}/m/libopenblas.so.0" in ldd, ldd


def run_ctx_matrix():
    from mxbuild import matrix
    from ..conftest import ROOT
    return matrix.load(ROOT / "matrix.yaml")


def test_build_info_records_inputs_and_file_hashes(unpacked, cpu_cell, cell_images, payload):
    info = json.loads((unpacked / "usr/share/doc/libmxnet/buildinfo.json").read_text())
    assert info["recipe"] == "wheel"
    assert cpu_cell.official_wheel.sha256 in info["source"]
    # tool versions, not image ids: two bootstraps of the same inputs give the same .deb
    assert set(info["build_tools"]) == {"dpkg", "dpkg-dev", "binutils", "xz-utils", "libc6"}
    assert info["build_tools"]["dpkg"].startswith("1.21.") and "build_image" not in info
    assert info["source_date_epoch"] == payload.source_date_epoch
    assert info["deb_compression"]["format"] == "xz"
    assert info["deb_compression"]["data"]["filters"] == ["x86", "lzma2 preset 5"]
    for rel, digest in info["files"].items():
        assert sha256(unpacked / rel) == digest, rel
    # upstream hashes are kept: libmxnet.so differs only by its rpath
    assert set(info["upstream_sha256"]) == {"libmxnet.so", "libopenblas.so.0", "libgfortran.so.3"}
    assert info["upstream_sha256"]["libgfortran.so.3"] == info["files"][f"{MA}/libmxnet/libgfortran.so.3"]


def test_copyright_and_changelog(unpacked):
    text = (unpacked / "usr/share/doc/libmxnet/copyright").read_text()
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    for needle in ("License: Apache-2.0", f"Files: {MA}/libmxnet/libopenblas.so.0",
                   "License: BSD-3-clause", "License: GPL-3+ with GCC-exception-3.1"):
        assert needle in text
    changelog = gzip.decompress((unpacked / "usr/share/doc/libmxnet/changelog.Debian.gz")
                                .read_bytes()).decode()
    assert changelog.startswith("libmxnet (1.9.1-6~deb12) bookworm; urgency=medium")


def test_no_ca_bundle_in_the_package(unpacked, test_opts):
    bundle = test_opts.extra_ca_bundle.read_bytes()[:4096]
    for path in unpacked.rglob("*"):
        if path.is_file():
            assert not path.name.endswith((".crt", ".pem")), path
            if path.stat().st_size < 1 << 20:
                assert bundle not in path.read_bytes(), path


def test_mtimes_are_set_to_source_date_epoch(built, payload):
    import tarfile
    proc = subprocess.run(["sh", "-c", f"dpkg-deb --fsys-tarfile '{built.path}'"],
                          check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        assert {m.mtime for m in tar.getmembers()} == {payload.source_date_epoch}


def test_rebuilding_with_clean_caches_gives_a_bit_identical_deb(
        run_ctx, cpu_cell, cell_images, payload, built, tmp_path):
    """No compressed payload part to reuse, a new staging tree: the same bytes."""
    clean = dataclasses.replace(run_ctx.opts, cache_dir=tmp_path / "cache")
    log = io.StringIO()
    (again,) = deb.build(ctx_with(run_ctx, clean), cpu_cell, payload, cell_images[1].ref, log,
                         tmp_path / "again")
    assert "compressed" in log.getvalue() and "reused" not in log.getvalue()
    assert again.sha256 == built.sha256


def test_corrupted_wheel_is_refused_before_anything_is_built(run_ctx, cpu_cell, test_opts,
                                                             cell_images, tmp_path,
                                                             monkeypatch):
    cached = cas_path(test_opts.cache_dir / "downloads", cpu_cell.official_wheel.sha256,
                      cpu_cell.official_wheel.filename)
    corrupt = tmp_path / "wheels" / cpu_cell.official_wheel.filename
    corrupt.parent.mkdir()
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    monkeypatch.setenv("MXBUILD_WHEEL_DIR", str(corrupt.parent))
    opts = dataclasses.replace(test_opts, cache_dir=tmp_path / "cache",
                               out_dir=tmp_path / "out")
    with pytest.raises(ChecksumError) as info:
        harvest(ctx_with(run_ctx, opts), cpu_cell, cell_images[1].ref, io.StringIO())
    assert cpu_cell.official_wheel.sha256 in info.value.message
    assert not (opts.work_dir / cpu_cell.id / "payload").exists()
    assert not any((tmp_path / "cache").rglob("*.whl"))


def test_harvest_refuses_undeclared_bundled_libraries(run_ctx, cpu_cell, test_opts,
                                                      cell_images, tmp_path):
    wheel = dataclasses.replace(cpu_cell.official_wheel, bundled=("libopenblas.so.0",))
    cell = dataclasses.replace(cpu_cell, official_wheel=wheel)
    opts = dataclasses.replace(test_opts, out_dir=tmp_path / "out")
    with pytest.raises(MxbuildError, match="harvesting .* failed") as info:
        harvest(ctx_with(run_ctx, opts), cell, cell_images[1].ref, io.StringIO())
    assert "libgfortran.so.3" in info.value.message


def test_consumers_get_a_versioned_dependency_from_the_symbols_file(docker_client, built,
                                                                   cell_images, payload,
                                                                   tmp_path):
    """A library linked against libmxnet.so gets `libmxnet (>= 1.9.1)` from dpkg-shlibdeps,
    although the SONAME is unversioned (what a shlibs file could not give it)."""
    from mxbuild.containers import Container
    src = tmp_path / "consumer"
    tree = src / "debian/consumer/usr/lib"
    tree.mkdir(parents=True)
    (src / "c.c").write_text("extern int MXGetVersion(int*);\n"
                             "int consumer(void) { int v; return MXGetVersion(&v); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tree / "libconsumer.so.1"),
                    str(src / "c.c"), f"-L{payload.dir}", "-lmxnet",
                    "-Wl,-soname,libconsumer.so.1"], check=True)
    (src / "debian/control").write_text("Source: consumer\n\nPackage: consumer\n"
                                        "Architecture: amd64\n")
    with Container(docker_client, cell_images[1].ref, label="consumer") as box:
        box.copy_into(built.path, "/tmp")
        box.copy_into(src, "/tmp")
        box.run(["dpkg", "-i", f"/tmp/{built.path.name}"])
        out = box.run(["sh", "-c", "cd /tmp/consumer && dpkg-shlibdeps -O "
                       "debian/consumer/usr/lib/libconsumer.so.1 2>/dev/null"]).output
    assert out.strip() == "shlibs:Depends=libmxnet (>= 1.9.1)"


def test_harvest_strips_an_unstripped_upstream_library(run_ctx, cpu_cell, test_opts,
                                                       cell_images, tmp_path, monkeypatch):
    """mxnet-cu92 1.7.0 ships libmxnet.so with its symbol table and debug info (1.37 GB):
    the recipe strips it like dh_strip would; a stripped library stays byte for byte."""
    import zipfile
    from mxbuild.matrix import WheelPin
    lib = tmp_path / "libmxnet.so"
    subprocess.run(["gcc", "-g", "-shared", "-fPIC", "-o", str(lib), "-x", "c", "-",
                    "-Wl,-soname,libmxnet.so"], input="int MXGetVersion(int*v){*v=10701;return 0;}",
                   text=True, check=True)
    assert "not stripped" in subprocess.run(["file", str(lib)], capture_output=True,
                                            text=True).stdout
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "mxnet_probe-1.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(lib, "mxnet/libmxnet.so")
    pin = WheelPin("mxnet-probe", "1.7.0", wheel.name, sha256(wheel), ())
    cell = dataclasses.replace(cpu_cell, official_wheel=pin)
    monkeypatch.setenv("MXBUILD_WHEEL_DIR", str(wheels))
    opts = dataclasses.replace(test_opts, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    log = io.StringIO()
    payload = harvest(ctx_with(run_ctx, opts), cell, cell_images[1].ref, log)
    assert "stripped libmxnet.so" in log.getvalue()
    harvested = payload.dir / "libmxnet.so"
    sections = subprocess.run(["readelf", "-S", str(harvested)], capture_output=True,
                              text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections
    dyn = subprocess.run(["readelf", "-d", str(harvested)], capture_output=True, text=True,
                         check=True).stdout
    assert "[libmxnet.so]" in dyn and "RPATH" not in dyn    # it bundles nothing
    assert payload.upstream_sha256["libmxnet.so"] != payload.files["libmxnet.so"]


def test_the_one_harvest_path_takes_a_jar_s_natives(run_ctx, cpu_cell, test_opts,
                                                    cell_images, tmp_path):
    """Recipe maven harvests through the wheel's path (recipes/official/harvest.sh): a jar's
    lib/native/, libmxnet-scala.so to jni/, unstripped libraries stripped except one whose
    licence forbids modifying it, RPATH pointed at the private directory; a native library
    matrix.yaml does not list is refused naming the key that lists them."""
    import zipfile
    from mxbuild.payload import PRIVATE_DIR
    from mxbuild.recipes import official
    libs = tmp_path / "libs"
    libs.mkdir()

    def shared_library(name, *flags):
        subprocess.run(["gcc", "-g", "-shared", "-fPIC", "-o", str(libs / name), "-x", "c", "-",
                        "-x", "none", f"-Wl,-soname,{name}", *flags],
                       input=f"int f_{abs(hash(name))}(void){{return 1;}}", text=True,
                       check=True)
    shared_library("libmxnet.so", "-Wl,-rpath,$ORIGIN/room-for-the-private-directory-link")
    shared_library("libmxnet-scala.so", f"-L{libs}", "-lmxnet")
    shared_library("libgfortran.so.3")
    shared_library("libiomp5.so")
    jar = tmp_path / "mxnet-full_2.11-linux-x86_64-cpu-1.5.1.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("org/apache/mxnet/Base.class", b"\xca\xfe\xba\xbe")
        for name in ("libmxnet.so", "libmxnet-scala.so", "libgfortran.so.3", "libiomp5.so"):
            zf.write(libs / name, f"lib/native/{name}")
    spec = official.Harvest(jar, "lib/native", (("libmxnet.so", "libmxnet.so"),
                                                ("libmxnet-scala.so", "jni/libmxnet-scala.so")),
                            ("libgfortran.so.3", "libiomp5.so"), "jar.bundled", ("libiomp5.so",))
    ctx = ctx_with(run_ctx, dataclasses.replace(test_opts, out_dir=tmp_path / "out"))
    log = io.StringIO()
    out = official.harvest(ctx, cpu_cell, cell_images[1].ref, log, spec)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        sorted(spec.rels)
    for rel in ("libmxnet.so", "jni/libmxnet-scala.so", f"{PRIVATE_DIR}/libgfortran.so.3"):
        assert f"stripped {rel}" in log.getvalue()
    assert f"kept as is: {PRIVATE_DIR}/libiomp5.so" in log.getvalue()
    assert sha256(out / PRIVATE_DIR / "libiomp5.so") == sha256(libs / "libiomp5.so")
    assert spec.upstream_hashes()["libmxnet-scala.so"] == sha256(libs / "libmxnet-scala.so")
    dyn = subprocess.run(["readelf", "-d", str(out / "libmxnet.so")], capture_output=True,
                         text=True, check=True).stdout
    assert f"$ORIGIN/" in dyn and "room-for" not in dyn

    undeclared = dataclasses.replace(spec, bundled=("libiomp5.so",))
    with pytest.raises(MxbuildError, match="harvesting .* failed") as info:
        official.harvest(ctx, cpu_cell, cell_images[1].ref, io.StringIO(), undeclared)
    assert "libgfortran.so.3" in info.value.message and "jar.bundled" in info.value.message
