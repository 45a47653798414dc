"""Recipe "compile" for real: the compile image, CMake + Ninja with the variant's preset,
ccache in a Docker volume, strip, ABI gate. The source is a fixture CMake project made
here (MXNet's source is not reachable from this machine): it records the cache variables
it was given into the library it builds."""
from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import textwrap
import uuid

import pytest

from mxbuild.recipes import compile as compile_recipe
from mxbuild import source_tree
from mxbuild.errors import AbiError
from mxbuild.matrix import CompileSpec, load

from ..conftest import ROOT, ctx_with

RECORDED = ["CMAKE_BUILD_TYPE", "USE_CUDA", "USE_CUDNN", "USE_NCCL", "MXNET_CUDA_ARCH",
            "USE_MKLDNN", "USE_BLAS", "USE_LAPACK", "USE_OPENMP", "USE_OPENCV",
            "USE_DIST_KVSTORE", "USE_SIGNAL_HANDLER", "CMAKE_CXX_COMPILER_LAUNCHER",
            "USE_SSE", "USE_F16C", "CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS",
            "CMAKE_SYSTEM_PROCESSOR", "CMAKE_CROSSCOMPILING", "CMAKE_LIBRARY_ARCHITECTURE",
            "OPENBLAS", "ZMQ_LINK_LIBRARIES"]


def fixture_tree(path, *, newer_glibc: bool = False):
    """A CMake project that builds an unstripped libmxnet.so embedding what it was given
    and linking two of the distro's libraries as MXNet does: OpenBLAS (find_library) and
    ZeroMQ (pkg-config), so its Depends come from the sysroot it was compiled against.
    newer_glibc: also call arc4random (GLIBC_2.36), which bullseye's glibc 2.31 lacks."""
    path.mkdir(parents=True)
    keys = " ".join(RECORDED)
    (path / "CMakeLists.txt").write_text(textwrap.dedent(f"""\
        cmake_minimum_required(VERSION 3.13)
        project(fixture_mxnet CXX)
        find_library(OPENBLAS openblas REQUIRED)
        find_package(PkgConfig REQUIRED)
        pkg_check_modules(ZMQ REQUIRED libzmq)
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
        #include <zmq.h>
        extern "C" float cblas_sdot(int n, const float *x, int incx, const float *y, int incy);
        extern "C" const char *MXGetRecorded() { static std::string s(RECORDED); return s.c_str(); }
        extern "C" float MXFixtureDot() { float a[2] = {1, 2}; return cblas_sdot(2, a, 1, a, 1); }
        extern "C" int MXFixtureZmq() { int a, b, c; zmq_version(&a, &b, &c); return a; }
        """) + extra)
    # what the recipe's source check looks for in an MXNet 1.9.1 tree
    (path / source_tree.VERSION_H).parent.mkdir(parents=True)
    (path / source_tree.VERSION_H).write_text(
        "#define MXNET_MAJOR 1\n#define MXNET_MINOR 9\n#define MXNET_PATCH 1\n")
    for marker in (*source_tree.ALWAYS, *source_tree.BY_FLAG.values(), source_tree.CUB):
        (path / marker.path).parent.mkdir(parents=True, exist_ok=True)
        (path / marker.path).write_text("")
    return path


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
    spec = CompileSpec(cell.compile.preset if cell.compile else f"linux_{variant}",
                       m.distros[build_on])
    return dataclasses.replace(cell, distro=m.distros[target], compile=spec, recipe="compile")


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
    # the same values as the recipe read back from CMakeCache.txt
    assert report.cache["USE_MKLDNN"] == "ON" and report.cache["CMAKE_BUILD_TYPE"] == "Distribution"


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
    src = fixture_tree(tmp_path / "fixture")
    opts = dataclasses.replace(ccache_opts, source_dir=src)
    cell = _cell("cpu", "debian12", "debian12")
    ctx = ctx_with(run_ctx, opts)
    payload, _ = compile_recipe.compile_cell(ctx, cell, io.StringIO())
    (result,) = deb.build(ctx, cell, payload, cell_images[1].ref, io.StringIO(),
                          tmp_path / "debs")
    assert result.lintian_errors == 0, result.lintian_path.read_text()
    listing = subprocess.run(["dpkg-deb", "-c", str(result.path)], capture_output=True,
                             text=True, check=True).stdout
    assert "x86_64-linux-gnu/libmxnet/" not in listing
    assert "x86_64-linux-gnu/libmxnet.so" in listing
    info = subprocess.run(["dpkg-deb", "-I", str(result.path)], capture_output=True,
                          text=True, check=True).stdout
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    assert "libc6" in depends and "libstdc++6" in depends
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(result.path), str(unpacked)], check=True)
    copyright = (unpacked / "usr/share/doc/libmxnet/copyright").read_text()
    assert "compiled by mxbuild from the Apache MXNet source" in copyright
    assert "source tree fixture" in copyright and "linux_cpu.cmake" in copyright


def test_a_second_machine_gets_the_compiled_payload_from_the_artifact_cache(
        run_ctx, ccache_opts, docker_client, tmp_path, cell_images):
    """A compile is a once-per-release cost: machine A compiles and stores the payload in
    the artifact cache (a shared directory here; S3 goes through the same stage cache);
    machine B, with empty local caches and no ccache volume, gets the same payload without
    compiling. An edit of the tree is a new compile."""
    from mxbuild import pipeline
    from mxbuild.context import open_run
    from mxbuild.recipes.registry import CellImages
    from mxbuild.report import Report

    src = fixture_tree(tmp_path / "fixture")
    cell = _cell("cpu", "debian12", "debian12")

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
    (src / "mxnet.cc").write_text((src / "mxnet.cc").read_text() + "// edited\n")
    _, status_c, _ = machine("c", ccache_opts.ccache_volume)
    assert status_c == "ok"
