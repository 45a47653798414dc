"""Recipe "compile" for real: the compile image, CMake + Ninja with the variant's preset,
ccache in a Docker volume, strip, ABI gate. The source is a fixture CMake project made
here (MXNet's source is not reachable from this machine): it records the cache variables
it was given into the library it builds."""
from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import textwrap
import uuid

import pytest

from mxbuild.recipes import compile as compile_recipe
from mxbuild import source_tree
from mxbuild.errors import AbiError
from mxbuild.matrix import load
from mxbuild.recipes import compile as compile_recipe

from ..conftest import ROOT, ctx_with
from ..fixtures import upstream_tests

RECORDED = ["CMAKE_BUILD_TYPE", "USE_CUDA", "USE_CUDNN", "USE_NCCL", "MXNET_CUDA_ARCH",
            "USE_MKLDNN", "USE_BLAS", "USE_LAPACK", "USE_OPENMP", "USE_OPENCV",
            "USE_DIST_KVSTORE", "USE_SIGNAL_HANDLER", "CMAKE_CXX_COMPILER_LAUNCHER",
            "USE_SSE", "USE_F16C", "CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS",
            "CMAKE_SYSTEM_PROCESSOR", "CMAKE_CROSSCOMPILING", "CMAKE_LIBRARY_ARCHITECTURE",
            "OPENBLAS", "ZMQ_LINK_LIBRARIES"]


def fixture_tree(path, *, newer_glibc: bool = False, distro_libs: bool = True,
                 exist_ok: bool = False):
    """A CMake project that builds an unstripped libmxnet.so embedding what it was given
    (and exporting MXGetVersion, what a JNI library built against it calls) and linking
    two of the distro's libraries as MXNet does: OpenBLAS (find_library) and ZeroMQ
    (pkg-config), so its Depends come from the sysroot it was compiled against; with
    Python tests laid out as MXNet's are (tests/fixtures/upstream_tests.py).
    newer_glibc: also call arc4random (GLIBC_2.36), which bullseye's glibc 2.31 lacks.
    distro_libs=False: links neither (builds with any compiler in any compile image).
    exist_ok: add it to an existing tree (e.g. the scala-package fixture)."""
    path.mkdir(parents=True, exist_ok=exist_ok)
    keys = " ".join(RECORDED)
    libs = textwrap.dedent("""\
        find_library(OPENBLAS openblas REQUIRED)
        find_package(PkgConfig REQUIRED)
        pkg_check_modules(ZMQ REQUIRED libzmq)
        add_compile_definitions(FIXTURE_DISTRO_LIBS)
        """) if distro_libs else ""
    (path / "CMakeLists.txt").write_text(textwrap.dedent("""\
        cmake_minimum_required(VERSION 3.13)
        project(fixture_mxnet CXX)
        """) + libs + textwrap.dedent(f"""\
        set(recorded "")
        foreach(key {keys})
          string(REPLACE ";" "," value "${{${{key}}}}")   # a list would split the define
          string(APPEND recorded "${{key}}=${{value}}|")
        endforeach()
        file(WRITE ${{CMAKE_BINARY_DIR}}/recorded.txt "${{recorded}}")
        add_library(mxnet SHARED mxnet.cc)
        # -g: the recipe must strip what the build leaves in
        target_compile_options(mxnet PRIVATE -g)
        target_compile_definitions(mxnet PRIVATE "RECORDED=\\"${{recorded}}\\"")
        target_include_directories(mxnet PRIVATE ${{ZMQ_INCLUDE_DIRS}})
        target_link_libraries(mxnet PRIVATE ${{OPENBLAS}} ${{ZMQ_LINK_LIBRARIES}})
        """))
    extra = ("#include <stdlib.h>\nextern \"C\" unsigned fixture_random() "
             "{ return arc4random(); }\n") if newer_glibc else ""
    (path / "mxnet.cc").write_text(textwrap.dedent("""\
        #include <string>
        extern "C" const char *MXGetRecorded() { static std::string s(RECORDED); return s.c_str(); }
        #ifdef FIXTURE_DISTRO_LIBS
        #include <zmq.h>
        extern "C" float cblas_sdot(int n, const float *x, int incx, const float *y, int incy);
        extern "C" float MXFixtureDot() { float a[2] = {1, 2}; return cblas_sdot(2, a, 1, a, 1); }
        extern "C" int MXFixtureZmq() { int a, b, c; zmq_version(&a, &b, &c); return a; }
        #endif
        extern "C" int MXGetVersion(int *out) { *out = 10901; return 0; }
        """) + extra)
    # what the recipe's source check looks for in an MXNet 1.9.1 tree
    (path / source_tree.VERSION_H).parent.mkdir(parents=True, exist_ok=True)
    (path / source_tree.VERSION_H).write_text(
        "#define MXNET_MAJOR 1\n#define MXNET_MINOR 9\n#define MXNET_PATCH 1\n")
    for marker in (*source_tree.ALWAYS, *source_tree.BY_FLAG.values(), source_tree.CUB):
        (path / marker.path).parent.mkdir(parents=True, exist_ok=True)
        (path / marker.path).write_text("")
    return upstream_tests.add_to(path)


@pytest.fixture(scope="module")
def ccache_opts(test_opts, docker_client):
    """A ccache volume of this test module only, removed afterwards."""
    volume = f"mxbuild-test-ccache-{uuid.uuid4().hex[:8]}"
    yield dataclasses.replace(test_opts, ccache_volume=volume)
    try:
        docker_client.volumes.get(volume).remove(force=True)
    except Exception:  # the volume may not exist if the first compile failed early
        pass


def _cell(variant: str, target: str, build_on: str, arch: str = "amd64"):
    """A cell of `variant` for distro `target` and architecture `arch`, compiled in
    `build_on`'s image (the amd64 one: arm64 is cross-compiled)."""
    m = load(ROOT / "matrix.yaml")
    cell = m.select(variant=variant, mxnet="1.9.1", arch=arch)[0]   # the fixture's version
    own = compile_recipe.compile_spec(cell)
    spec = compile_recipe.CompileSpec(own.preset if own else f"linux_{variant}",
                                      m.distros[build_on])
    return compile_recipe.with_inputs(dataclasses.replace(cell, distro=m.distros[target],
                                                          recipe="compile"), spec=spec)


def _recorded(lib) -> dict[str, str]:
    text = lib.read_bytes()
    start = text.index(b"CMAKE_BUILD_TYPE=")
    block = text[start:text.index(b"\0", start)].decode()
    return dict(item.split("=", 1) for item in block.split("|") if "=" in item)


def _sections(lib) -> str:
    return subprocess.run(["readelf", "-S", "-W", str(lib)], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def cpu_compiled(run_ctx, ccache_opts, tmp_path_factory, cell_images):
    src = fixture_tree(tmp_path_factory.mktemp("src") / "fixture")
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    cell = _cell("cpu", "debian11", "debian12")
    log = io.StringIO()
    first = compile_recipe.compile_cell(ctx_with(run_ctx, opts), cell, log)
    second = compile_recipe.compile_cell(ctx_with(run_ctx, opts), cell, log)
    return cell, first, second, log.getvalue()


def test_cpu_preset_flags_reach_the_build(cpu_compiled):
    cell, (payload, report), _, _ = cpu_compiled
    seen = _recorded(payload.dir / "libmxnet.so")
    assert seen["CMAKE_BUILD_TYPE"] == "Distribution"
    assert seen["USE_CUDA"] == "OFF" and seen["USE_CUDNN"] == "OFF" and seen["USE_NCCL"] == "OFF"
    assert seen["MXNET_CUDA_ARCH"] == ""
    for flag in ("USE_MKLDNN", "USE_LAPACK", "USE_OPENMP", "USE_OPENCV", "USE_DIST_KVSTORE",
                 "USE_SIGNAL_HANDLER"):
        assert seen[flag] == "ON", flag
    assert seen["USE_BLAS"] == "open"
    assert seen["CMAKE_CXX_COMPILER_LAUNCHER"] == "ccache"
    # the amd64 layer: x86 instruction sets, no AVX, compiled natively
    assert seen["USE_SSE"] == "ON" and seen["USE_F16C"] == "OFF"
    assert seen["CMAKE_C_FLAGS"] == seen["CMAKE_CXX_FLAGS"] == "-mno-avx"
    assert seen["CMAKE_SYSTEM_PROCESSOR"] == "x86_64" and seen["CMAKE_CROSSCOMPILING"] == "FALSE"
    assert seen["OPENBLAS"] == "/usr/lib/x86_64-linux-gnu/libopenblas.so"
    # the same values as the recipe read back from CMakeCache.txt
    assert report.cache["USE_MKLDNN"] == "ON" and report.cache["CMAKE_BUILD_TYPE"] == "Distribution"
    assert "CMAKE_TOOLCHAIN_FILE" not in report.cache


def test_ccache_volume_is_used_across_containers(cpu_compiled):
    _, (_, first), (_, second), _ = cpu_compiled
    assert first.ccache_misses >= 1
    assert second.ccache_hits >= 1 and second.ccache_misses == 0


def test_output_is_stripped_with_soname_and_no_rpath(cpu_compiled):
    _, (payload, _), _, _ = cpu_compiled
    lib = payload.dir / "libmxnet.so"
    sections = _sections(lib)
    assert ".symtab" not in sections and ".debug_info" not in sections
    dynamic = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    assert "Library soname: [libmxnet.so]" in dynamic
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic
    assert list(payload.files) == ["libmxnet.so"]


def test_abi_gate_passes_and_records_the_requirements(cpu_compiled):
    cell, (_, report), _, _ = cpu_compiled
    assert cell.distro.name == "debian11"
    assert tuple(map(int, report.abi["GLIBC"].split("."))) <= (2, 31)
    assert "GLIBCXX" in report.abi


def test_abi_gate_fails_for_a_newer_glibc_symbol(run_ctx, ccache_opts, tmp_path):
    src = fixture_tree(tmp_path / "fixture", newer_glibc=True)
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    with pytest.raises(AbiError) as err:
        compile_recipe.compile_cell(ctx_with(run_ctx, opts),
                                    _cell("cpu", "debian11", "debian12"), io.StringIO())
    msg = err.value.render()
    assert "GLIBC_2.36" in msg and "arc4random" in msg and "debian11" in msg
    assert "GLIBC_2.31" in msg and "build_on" in msg


def test_gpu_preset_flags_reach_the_build(run_ctx, ccache_opts, tmp_path):
    """The cu112 preset configured for real (the fixture compiles no CUDA code, so no
    toolkit is needed to see the flags it sets)."""
    src = fixture_tree(tmp_path / "fixture")
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    payload, report = compile_recipe.compile_cell(
        ctx_with(run_ctx, opts), _cell("cu112", "debian12", "debian12"), io.StringIO())
    seen = _recorded(payload.dir / "libmxnet.so")
    assert seen["USE_CUDA"] == "ON" and seen["USE_CUDNN"] == "ON" and seen["USE_NCCL"] == "ON"
    assert seen["MXNET_CUDA_ARCH"] == "5.0,6.0,7.0,8.0,8.6"
    assert report.cache["CMAKE_CUDA_COMPILER"] == "/usr/local/cuda-11.2/bin/nvcc"


def test_compiled_library_goes_through_the_package_stage(run_ctx, ccache_opts,
                                                         tmp_path, cell_images):
    """A compiled payload is packaged like a harvested one: no private directory, Depends
    from dpkg-shlibdeps, copyright saying what was compiled, lintian without errors."""
    from mxbuild import deb
    from mxbuild.recipes.registry import CellImages
    src = fixture_tree(tmp_path / "fixture")
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    cell = _cell("cpu", "debian12", "debian12")
    ctx = ctx_with(run_ctx, opts)
    payload, _ = compile_recipe.compile_cell(ctx, cell, io.StringIO())
    # where the pipeline packages a compiled payload: the compile image, which holds the
    # packages of the libraries it links (OpenBLAS, ZeroMQ)
    image = compile_recipe.CompileRecipe().package_image(ctx, cell, CellImages(*cell_images),
                                                         io.StringIO())
    (result,) = deb.build(ctx, cell, payload, image.ref, io.StringIO(), tmp_path / "debs")
    assert result.lintian_errors == 0, result.lintian_path.read_text()
    listing = subprocess.run(["dpkg-deb", "-c", str(result.path)], capture_output=True,
                             text=True, check=True).stdout
    assert "x86_64-linux-gnu/libmxnet/" not in listing
    assert "x86_64-linux-gnu/libmxnet.so" in listing
    info = subprocess.run(["dpkg-deb", "-I", str(result.path)], capture_output=True,
                          text=True, check=True).stdout
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    assert "libc6" in depends and "libstdc++6" in depends
    assert "libzmq5" in depends and "libopenblas0" in depends
    assert re.search(r"^ Architecture: amd64$", info, re.M)
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(result.path), str(unpacked)], check=True)
    copyright = (unpacked / "usr/share/doc/libmxnet/copyright").read_text()
    assert "compiled by mxbuild from the Apache MXNet source" in copyright
    assert "source tree fixture" in copyright and "linux_cpu.cmake" in copyright


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_a_second_machine_gets_the_compiled_payload_from_the_artifact_cache(
        run_ctx, ccache_opts, docker_client, tmp_path, cell_images, arch):
    """A compile is a once-per-release cost: machine A compiles and stores the payload in
    the artifact cache (a shared directory here; S3 goes through the same stage cache);
    machine B, with empty local caches and no ccache volume, gets the same payload without
    compiling. An edit of the tree is a new compile. The same for arm64's cross-compiled
    payload, which is not amd64's (the key names the architecture)."""
    from mxbuild import pipeline
    from mxbuild.context import open_run
    from mxbuild.recipes.registry import CellImages
    from mxbuild.report import Report

    src = fixture_tree(tmp_path / "fixture")
    cell = _cell("cpu", "debian12", "debian12", arch)

    def machine(name, volume):
        opts = dataclasses.replace(ccache_opts, source_dir=src, ccache_volume=volume,
                                   out_dir=tmp_path / name / "out",
                                   cache_dir=tmp_path / name / "cache",
                                   artifact_cache=str(tmp_path / "shared"))
        report = Report(opts.out_dir, opts.logs_dir)
        ctx = open_run(opts, docker=docker_client, report=report, gpu=False)
        payload = pipeline._recipe_stage(ctx, cell, CellImages(*cell_images))
        stage = report.cell(cell).stages[-1]
        return payload, stage.status, open(stage.log).read()

    a, status_a, _ = machine("a", ccache_opts.ccache_volume)
    assert status_a == "ok"
    unused = f"{ccache_opts.ccache_volume}-machine-b"
    b, status_b, log_b = machine("b", unused)
    assert status_b == "reused" and "reused" in log_b
    assert b.files == a.files and b.source == a.source
    assert (b.dir / "libmxnet.so").read_bytes() == (a.dir / "libmxnet.so").read_bytes()
    assert not docker_client.volumes.list(filters={"name": unused})   # nothing compiled
    machine_of = subprocess.run(["readelf", "-h", str(b.dir / "libmxnet.so")],
                                capture_output=True, text=True, check=True).stdout
    assert compile_recipe.elf_machine(machine_of) == cell.arch.elf_machine
    (src / "mxnet.cc").write_text((src / "mxnet.cc").read_text() + "// edited\n")
    _, status_c, _ = machine("c", ccache_opts.ccache_volume)
    assert status_c == "ok"


# ---------------------------------------------------------------- arm64: cross-compiled

@pytest.fixture(scope="module")
def arm64_compiled(run_ctx, ccache_opts, tmp_path_factory, cell_images):
    """The fixture cross-compiled for arm64 in debian12's arm64 compile image (the amd64
    build image + Debian's cross toolchain + the :arm64 libraries)."""
    src = fixture_tree(tmp_path_factory.mktemp("src") / "fixture")
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    cell = _cell("cpu", "debian12", "debian12", "arm64")
    log = io.StringIO()
    payload, report = compile_recipe.compile_cell(ctx_with(run_ctx, opts), cell, log)
    return cell, payload, report, log.getvalue(), opts


def test_arm64_is_cross_compiled_for_the_armv8_baseline(arm64_compiled):
    cell, payload, report, log, opts = arm64_compiled
    seen = _recorded(payload.dir / "libmxnet.so")
    assert seen["CMAKE_SYSTEM_PROCESSOR"] == "aarch64" and seen["CMAKE_CROSSCOMPILING"] == "TRUE"
    assert seen["CMAKE_LIBRARY_ARCHITECTURE"] == "aarch64-linux-gnu"
    assert seen["CMAKE_C_FLAGS"] == seen["CMAKE_CXX_FLAGS"] == "-march=armv8-a"
    assert seen["USE_SSE"] == seen["USE_F16C"] == seen["USE_MKLDNN"] == "OFF"
    assert seen["USE_OPENMP"] == seen["USE_DIST_KVSTORE"] == "ON"
    # the :arm64 libraries, found by find_library and by pkg-config
    assert seen["OPENBLAS"] == "/usr/lib/aarch64-linux-gnu/libopenblas.so"
    assert seen["ZMQ_LINK_LIBRARIES"] == "/usr/lib/aarch64-linux-gnu/libzmq.so"
    assert report.cache["CMAKE_TOOLCHAIN_FILE"].endswith("/toolchain_arm64.cmake")
    assert report.cache["USE_MKLDNN"] == "OFF" and "-mno-avx" not in report.cache["CMAKE_CXX_FLAGS"]
    header = subprocess.run(["readelf", "-h", str(payload.dir / "libmxnet.so")],
                            capture_output=True, text=True, check=True).stdout
    assert compile_recipe.elf_machine(header) == "AArch64"
    sections = _sections(payload.dir / "libmxnet.so")       # stripped by the cross strip
    assert ".symtab" not in sections and ".debug_info" not in sections
    dynamic = subprocess.run(["readelf", "-d", str(payload.dir / "libmxnet.so")],
                             capture_output=True, text=True).stdout
    assert "Library soname: [libmxnet.so]" in dynamic and "RPATH" not in dynamic
    assert "[libopenblas.so.0]" in dynamic and "[libzmq.so.5]" in dynamic
    # the ABI gate read the arm64 binary (aarch64's glibc symbols start at 2.17)
    assert (2, 17) <= tuple(map(int, report.abi["GLIBC"].split("."))) <= (2, 36)
    assert "for arm64" in payload.source
    # Ninja's log is kept for bench/compile_steps.py
    assert report.steps["count"] >= 2 and report.steps["seconds"] > 0
    kept = opts.work_dir / cell.id / "compile" / "ninja-log.txt"
    assert compile_recipe.ninja_steps(kept.read_text()) == report.steps


def test_arm64_payload_is_an_arm64_deb_with_depends_from_the_arm64_sysroot(
        run_ctx, arm64_compiled, cell_images, tmp_path):
    """Packaged in the arm64 compile image (the amd64 tools + the :arm64 libraries):
    dpkg-shlibdeps maps libopenblas.so.0 and libzmq.so.5 to their arm64 packages,
    dpkg-gencontrol writes Architecture: arm64, lintian (amd64's) reports no error."""
    from mxbuild import deb
    from mxbuild.recipes.registry import CellImages
    cell, payload, _, _, opts = arm64_compiled
    ctx = ctx_with(run_ctx, opts)
    image = compile_recipe.CompileRecipe().package_image(ctx, cell, CellImages(*cell_images),
                                                         io.StringIO())
    assert image.ref.startswith("mxbuild/compile:debian12-cpu-arm64-")
    (result,) = deb.build(ctx, cell, payload, image.ref, io.StringIO(), tmp_path / "debs")
    assert result.lintian_errors == 0, result.lintian_path.read_text()
    assert result.path.name == "libmxnet_1.9.1-6~deb12_arm64.deb"
    info = subprocess.run(["dpkg-deb", "-I", str(result.path)], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r"^ Architecture: arm64$", info, re.M)
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    for package in ("libc6", "libstdc++6", "libopenblas0", "libzmq5"):
        assert package in depends, depends
    listing = subprocess.run(["dpkg-deb", "-c", str(result.path)], capture_output=True,
                             text=True, check=True).stdout
    assert "./usr/lib/aarch64-linux-gnu/libmxnet.so" in listing
    assert "x86_64-linux-gnu" not in listing
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(result.path), str(unpacked)], check=True)
    info_json = json.loads((unpacked / "usr/share/doc/libmxnet/buildinfo.json").read_text())
    assert info_json["cell"]["arch"] == "arm64"
    assert "x86" not in info_json["deb_compression"]["data"]["filters"]
    assert "binutils-aarch64-linux-gnu" in info_json["build_tools"]   # its objdump read it
    assert "for arm64" in (unpacked / "usr/share/doc/libmxnet/copyright").read_text()


def test_arm64_abi_gate_fails_for_a_newer_glibc_symbol(run_ctx, ccache_opts, tmp_path):
    """Cross-compiled against bookworm's arm64 libc for bullseye: the gate reads the
    aarch64 binary and names the symbol."""
    src = fixture_tree(tmp_path / "fixture", newer_glibc=True)
    opts = dataclasses.replace(ccache_opts, source_dir=src, out_dir=tmp_path / "out")
    cell = _cell("cpu", "debian11", "debian12", "arm64")
    with pytest.raises(AbiError) as err:
        compile_recipe.compile_cell(ctx_with(run_ctx, opts), cell, io.StringIO())
    msg = err.value.render()
    assert "GLIBC_2.36" in msg and "arc4random" in msg and "debian11 provides GLIBC_2.31" in msg
    assert not (opts.work_dir / cell.id / "payload").exists()


def test_a_cross_compile_that_makes_an_amd64_binary_fails_naming_it(run_ctx, ccache_opts,
                                                                     tmp_path):
    """An arm64 layer without its toolchain (here: amd64's layer in its place) compiles
    with the build machine's own g++: the machine gate stops the stage before a payload
    exists, naming what the binary is."""
    from mxbuild.paths import DataFolders
    root = tmp_path / "project"
    for folder in ("recipes", "docker"):
        shutil.copytree(ROOT / folder, root / folder)
    compile_dir = root / "recipes/compile"
    shutil.copy(compile_dir / "arch_amd64.cmake", compile_dir / "arch_arm64.cmake")
    src = fixture_tree(tmp_path / "fixture", distro_libs=False)
    opts = dataclasses.replace(ccache_opts, source_dir=src, out_dir=tmp_path / "out")
    ctx = dataclasses.replace(ctx_with(run_ctx, opts), data=DataFolders(root))
    cell = _cell("cpu", "debian12", "debian12", "arm64")
    with pytest.raises(AbiError) as err:
        compile_recipe.compile_cell(ctx, cell, io.StringIO())
    msg = err.value.render()
    assert "libmxnet.so is built for Advanced Micro Devices X86-64, not for arm64 (AArch64" in msg
    assert "arch_arm64.cmake" in msg
    assert not (opts.work_dir / cell.id / "payload").exists()
