"""Recipe "compile" without Docker: presets vs the matrix, source resolution and its
errors (real gpg signatures, a real refused connection), the ABI gate's parsing."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile

import pytest

from mxbuild import debpack, images, options
from mxbuild.recipes.jvm import source as jvm_source
from mxbuild.context import open_run
from mxbuild.images import ImageRef
from mxbuild.recipes import compile as compile_recipe
from mxbuild import source_tree
from mxbuild.errors import AbiError, ChecksumError, ConfigError, DownloadError, SigningError
from mxbuild.matrix import Abi, load
from mxbuild.recipes.compile import SourcePin, compile_spec, source_pin, with_inputs

from ..conftest import ROOT

MATRIX = load(ROOT / "matrix.yaml")
PRESETS = ROOT / "recipes/compile"


def preset_values(name: str, arch: str = "amd64") -> dict[str, str]:
    """What `cmake -C arch_<arch>.cmake -C <name>.cmake` (build.sh) sets."""
    return source_tree.preset_values(PRESETS / f"arch_{arch}.cmake", PRESETS / f"{name}.cmake")


FEATURE_FLAGS = {"CUDA": "USE_CUDA", "CUDNN": "USE_CUDNN", "NCCL": "USE_NCCL",
                 "MKLDNN": "USE_MKLDNN", "LAPACK": "USE_LAPACK", "OPENMP": "USE_OPENMP",
                 "SIGNAL_HANDLER": "USE_SIGNAL_HANDLER"}
ALL_CELLS = MATRIX.select(arch="all")


@pytest.mark.parametrize("variant,arch", sorted({(c.variant, c.arch.name) for c in ALL_CELLS}))
def test_every_variant_has_a_preset_that_matches_its_features(variant, arch):
    """Every (variant, architecture) of the matrix: the architecture layer and the variant's
    preset together set what its cells' features say (arm64: no oneDNN)."""
    cell = MATRIX.select(variant=variant, arch=arch)[0]
    spec = compile_spec(cell)
    values = preset_values(spec.preset if spec else f"linux_{variant}", arch)
    assert values["CMAKE_BUILD_TYPE"] == "Distribution"
    features = dict(cell.features)
    for feature, flag in FEATURE_FLAGS.items():
        assert values[flag] == ("ON" if features[feature] else "OFF"), flag
    assert values["USE_BLAS"] == "open" and features["BLAS_OPEN"]
    assert values["USE_OPENCV"] == values["USE_DIST_KVSTORE"] == "ON"
    if cell.cuda:
        assert values["CMAKE_CUDA_COMPILER"] == f"/usr/local/cuda-{cell.cuda}/bin/nvcc"
        assert re.match(r"^\d\.\d(;\d\.\d)+$", values["MXNET_CUDA_ARCH"])
    else:
        assert "MXNET_CUDA_ARCH" not in values


# What common.cmake + linux_cpu.cmake set before the architecture layers existed: the amd64
# compile's cache (and so its ccache hits) must not change.
AMD64_CPU_BEFORE_LAYERS = {
    "CMAKE_BUILD_TYPE": "Distribution", "CMAKE_C_FLAGS": "-mno-avx",
    "CMAKE_CXX_FLAGS": "-mno-avx", "USE_OPENCV": "ON", "USE_OPENMP": "ON",
    "USE_MKL_IF_AVAILABLE": "OFF", "USE_MKLDNN": "ON", "USE_BLAS": "open", "USE_LAPACK": "ON",
    "USE_TVM_OP": "OFF", "USE_SSE": "ON", "USE_F16C": "OFF", "USE_DIST_KVSTORE": "ON",
    "USE_SIGNAL_HANDLER": "ON", "USE_INTGEMM": "OFF", "USE_CPP_PACKAGE": "OFF",
    "BUILD_CPP_EXAMPLES": "OFF", "BUILD_TESTING": "OFF", "USE_CUDA": "OFF",
    "USE_CUDNN": "OFF", "USE_NCCL": "OFF"}


def test_amd64_layer_and_preset_set_what_the_preset_alone_set_before():
    assert preset_values("linux_cpu") == AMD64_CPU_BEFORE_LAYERS


def test_arm64_layer_cross_compiles_for_the_armv8_baseline_without_x86_flags():
    values = preset_values("linux_cpu", "arm64")
    assert values["CMAKE_C_FLAGS"] == values["CMAKE_CXX_FLAGS"] == "-march=armv8-a"
    assert not any("-mno-avx" in v or "-msse" in v for v in values.values())
    assert values["USE_SSE"] == values["USE_F16C"] == values["USE_MKLDNN"] == "OFF"
    assert values["USE_INTGEMM"] == "OFF" and values["USE_OPENMP"] == "ON"
    assert values["Protobuf_LIBRARY"] == "/usr/lib/aarch64-linux-gnu/libprotobuf.so"
    layer = (PRESETS / "arch_arm64.cmake").read_text()
    assert '"${CMAKE_CURRENT_LIST_DIR}/toolchain_arm64.cmake"' in layer
    toolchain = (PRESETS / "toolchain_arm64.cmake").read_text()
    for line in ("set(CMAKE_SYSTEM_NAME Linux)", "set(CMAKE_SYSTEM_PROCESSOR aarch64)",
                 "set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)",
                 "set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)",
                 "set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)",
                 "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)"):
        assert line in toolchain, line
    # the triplet and the cross packages are the matrix's
    arm64 = MATRIX.architectures["arm64"]
    assert arm64.triplet == "aarch64-linux-gnu" and arm64.cross.packages


def test_the_first_preset_to_set_a_value_wins(tmp_path):
    """As in CMake: `set(… CACHE …)` of a value already in the cache does nothing, so the
    architecture layer (read first) overrides what common.cmake sets."""
    (tmp_path / "common.cmake").write_text('set(A "common" CACHE STRING "")\n'
                                           'set(B "common" CACHE STRING "")\n')
    (tmp_path / "layer.cmake").write_text('set(A "layer" CACHE STRING "")\n')
    (tmp_path / "preset.cmake").write_text('include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)\n'
                                           'set(B "preset" CACHE STRING "")\n'
                                           'set(C "preset" CACHE STRING "")\n')
    assert source_tree.preset_values(tmp_path / "layer.cmake", tmp_path / "preset.cmake") == \
        {"A": "layer", "B": "common", "C": "preset"}


READELF = """\
Symbol table '.dynsym' contains 9 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     0: 0000000000000000     0 NOTYPE  LOCAL  DEFAULT  UND
     1: 0000000000000000     0 FUNC    WEAK   DEFAULT  UND __cxa_finalize@GLIBC_2.2.5 (2)
     2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND memcpy@GLIBC_2.14 (3)
     3: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND arc4random@GLIBC_2.36 (4)
     4: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND _ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE9_M_createERmm@GLIBCXX_3.4.21 (5)
     5: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND __cxa_begin_catch@CXXABI_1.3 (6)
     6: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND _ZSt28__throw_bad_array_new_lengthv@GLIBCXX_3.4.29 (7)
     7: 0000000000001139    40 FUNC    GLOBAL DEFAULT   12 MXGetRecorded
     8: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND getrandom@GLIBC_2.25 (8)
"""


def test_abi_requirements_take_the_highest_version_per_family():
    req = compile_recipe.abi_requirements(READELF)
    assert req["GLIBC"] == ("2.36", ["arc4random"])
    assert req["GLIBCXX"] == ("3.4.29", ["_ZSt28__throw_bad_array_new_lengthv"])
    assert req["CXXABI"][0] == "1.3"


def test_abi_gate_names_symbols_versions_and_the_fix():
    req = compile_recipe.abi_requirements(READELF)
    compile_recipe.abi_gate(req, Abi("2.36", "3.4.30"), "debian12")   # passes
    with pytest.raises(AbiError) as err:
        compile_recipe.abi_gate(req, Abi("2.31", "3.4.28"), "debian11")
    msg = err.value.render()
    assert "GLIBC_2.36 (for arc4random) but debian11 provides GLIBC_2.31" in msg
    assert "GLIBCXX_3.4.29" in msg and "GLIBCXX_3.4.28" in msg and "build_on" in msg
    # numeric, not string, comparison: 2.9 < 2.14
    compile_recipe.abi_gate({"GLIBC": ("2.9", ["x"])}, Abi("2.14", "3.4"), "old")


def test_ccache_stats_of_both_major_versions():
    v4 = "Cacheable calls:    3 / 3 (100.0%)\n  Hits:             2 / 3 (66.67%)\n" \
         "    Direct:         2 / 2\n  Misses:           1 / 3 (33.33%)\n"
    v3 = "cache hit (direct)                     4\ncache hit (preprocessed)               1\n" \
         "cache miss                             2\n"
    assert compile_recipe.ccache_counts(v4) == (2, 1)
    assert compile_recipe.ccache_counts(v3) == (5, 2)


def test_every_distro_declares_its_abi():
    for name, distro in MATRIX.distros.items():
        assert distro.abi is not None, name


# ---------------------------------------------------------------- source resolution

def _tarball(tmp_path):
    tree = tmp_path / "apache-mxnet-src-9.9.9-incubating"
    tree.mkdir()
    (tree / "CMakeLists.txt").write_text("project(x)\n")
    path = tmp_path / "dl" / "apache-mxnet-src-9.9.9-incubating.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return path


def _cell(tarball, url="http://127.0.0.1:9/apache-mxnet-src-9.9.9-incubating.tar.gz",
          sha512=None, **pin):
    cell = MATRIX.select(cell="1.9.1-cpu-debian12")[0]
    digest = sha512 or hashlib.sha512(tarball.read_bytes()).hexdigest()
    return with_inputs(cell, source=SourcePin("9.9.9", url, digest, None, **pin))


def _opts(tmp_path, **kw):
    return dataclasses.replace(options.resolve(out_dir=str(tmp_path / "out")),
                               cache_dir=tmp_path / "cache", **kw)


def test_unreachable_archive_names_both_options(tmp_path):
    tarball = _tarball(tmp_path)
    with pytest.raises(DownloadError) as err:   # port 9 on loopback: connection refused
        compile_recipe.resolve_source(_cell(tarball), _opts(tmp_path), io.StringIO())
    msg = err.value.render()
    assert "no route to the Apache archive" in msg
    assert "--source-tarball PATH" in msg and "--source-dir PATH" in msg


def test_given_tarball_is_checked_against_the_pin(tmp_path):
    tarball = _tarball(tmp_path)
    source = compile_recipe.resolve_source(
        _cell(tarball), _opts(tmp_path, source_tarball=tarball), io.StringIO())
    assert source.path.read_bytes() == tarball.read_bytes() and not source.is_dir
    assert source.epoch > 0
    with pytest.raises(ChecksumError):
        compile_recipe.resolve_source(_cell(tarball, sha512="0" * 128),
                                      _opts(tmp_path, source_tarball=tarball), io.StringIO())


def _gpg(home, *args, data=None):
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet",
                           "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          input=data, capture_output=True, check=True).stdout


def test_signature_next_to_the_tarball_is_verified_against_keys(tmp_path, gnupg_stopped):
    tarball = _tarball(tmp_path)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    _gpg(home, "--quick-gen-key", "Release Manager <rm@example.org>", "ed25519", "sign", "never")
    (tarball.parent / "KEYS").write_bytes(_gpg(home, "--armor", "--export"))
    asc = tarball.parent / (tarball.name + ".asc")
    asc.write_bytes(_gpg(home, "--armor", "--detach-sign", "--output", "-", str(tarball)))
    log = io.StringIO()
    compile_recipe.resolve_source(_cell(tarball), _opts(tmp_path, source_tarball=tarball), log)
    assert "signature verified against KEYS" in log.getvalue()
    # a signature by another key must stop the build
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    _gpg(other, "--quick-gen-key", "Mallory <m@example.org>", "ed25519", "sign", "never")
    asc.write_bytes(_gpg(other, "--armor", "--detach-sign", "--output", "-", str(tarball)))
    with pytest.raises(SigningError):
        compile_recipe.resolve_source(_cell(tarball), _opts(tmp_path, source_tarball=tarball),
                                      io.StringIO())


def test_source_dir_needs_a_cmake_project_and_no_pin(tmp_path):
    tarball = _tarball(tmp_path)
    with pytest.raises(ConfigError, match="no CMakeLists.txt"):
        compile_recipe.resolve_source(_cell(tarball), _opts(tmp_path, source_dir=tmp_path),
                                      io.StringIO())
    tree = tmp_path / "apache-mxnet-src-9.9.9-incubating"
    cell = with_inputs(_cell(tarball), source=None)
    source = compile_recipe.resolve_source(cell, _opts(tmp_path, source_dir=tree), io.StringIO())
    assert source.is_dir and source.path == tree


def test_no_pin_and_no_source_option_is_a_clear_error(tmp_path):
    cell = with_inputs(MATRIX.select(cell="1.9.1-cpu-debian12")[0], source=None)
    with pytest.raises(ConfigError, match="pins no source release"):
        compile_recipe.resolve_source(cell, _opts(tmp_path), io.StringIO())


def test_both_source_options_are_refused():
    with pytest.raises(ConfigError, match="both given"):
        options.resolve(source_tarball="a.tar.gz", source_dir="b")


def _mxnet_tree(top, version="1.9.1", *, skip=()):
    """The files the source check reads, as an Apache release ships them."""
    markers = [*source_tree.ALWAYS, *source_tree.BY_FLAG.values(), source_tree.CUB]
    major, minor, patch = version.split(".")
    (top / "include/mxnet").mkdir(parents=True)
    (top / source_tree.VERSION_H).write_text(
        f"#define MXNET_MAJOR {major}\n#define MXNET_MINOR {minor}\n#define MXNET_PATCH {patch}\n")
    for marker in markers:
        if not any(marker.path.startswith(s) for s in skip):
            (top / marker.path).parent.mkdir(parents=True, exist_ok=True)
            (top / marker.path).write_text("x")
    return top


def _cpu_need():
    return source_tree.required(preset_values("linux_cpu"), None)


def test_source_check_accepts_a_complete_tree_and_names_what_it_checked(tmp_path):
    need = _cpu_need()
    source_tree.check_dir(_mxnet_tree(tmp_path / "src"), "1.9.1", need)
    parts = {m.path.split("/")[1] for m in need}
    # the preset turns intgemm off (see common.cmake), MKLDNN and the dist kvstore on
    assert {"googletest", "tvm", "dmlc-core", "mkldnn", "ps-lite"} <= parts
    assert "intgemm" not in parts and "nvidia_cub" not in parts
    assert "nvidia_cub" in {m.path.split("/")[1]
                            for m in source_tree.required(preset_values("linux_cu102"), "10.2")}


def test_source_check_names_every_missing_submodule_and_the_fix(tmp_path):
    # a git clone without --recursive: the submodule directories exist, empty
    tree = _mxnet_tree(tmp_path / "src", skip=("3rdparty/googletest", "3rdparty/tvm"))
    (tree / "3rdparty/googletest").mkdir()
    with pytest.raises(ConfigError) as err:
        source_tree.check_dir(tree, "1.9.1", _cpu_need())
    msg = err.value.render()
    assert "3rdparty/googletest (google/googletest) is missing or empty" in msg
    assert "3rdparty/tvm (apache/tvm) is missing or empty" in msg
    assert "git submodule update --init --recursive" in msg


def test_source_check_refuses_another_release_or_no_mxnet_tree(tmp_path):
    with pytest.raises(ConfigError) as err:
        source_tree.check_dir(_mxnet_tree(tmp_path / "a", "1.8.0"), "1.9.1", _cpu_need())
    assert "it is MXNet 1.8.0, the cell builds 1.9.1" in err.value.render()
    assert "select the 1.8.0 cell" in err.value.render()
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="this is not an MXNet source tree"):
        source_tree.check_dir(tmp_path / "b", "1.9.1", _cpu_need())


def test_source_check_reads_a_release_tarball_without_unpacking_it(tmp_path):
    tree = _mxnet_tree(tmp_path / "apache-mxnet-src-1.9.1-incubating", skip=("3rdparty/ps-lite",))
    tarball = tmp_path / "src.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    with pytest.raises(ConfigError, match=r"tarball src.tar.gz .*\n.*3rdparty/ps-lite"):
        source_tree.check_tarball(tarball, "1.9.1", _cpu_need())
    source_tree.check_tarball(tarball, "1.9.1",
                              [m for m in _cpu_need() if "ps-lite" not in m.path])


def test_source_check_on_the_preset_in_use_happens_before_any_image(tmp_path):
    """compile_cell refuses an incomplete tree before it asks Docker for anything."""
    tree = _mxnet_tree(tmp_path / "src", skip=("3rdparty/dmlc-core",))
    (tree / "CMakeLists.txt").write_text("project(mxnet)\n")
    cell = dataclasses.replace(MATRIX.select(cell="1.9.1-cpu-debian12")[0], recipe="compile")
    ctx = open_run(_opts(tmp_path, source_dir=tree), gpu=False)     # docker: None
    with pytest.raises(ConfigError, match="3rdparty/dmlc-core"):
        compile_recipe.compile_cell(ctx, cell, io.StringIO())


def test_compiled_payload_is_keyed_by_the_tree_and_the_preset(tmp_path):
    """The compile's stage-cache key: an unchanged tree gives the same key (wherever it
    lies), any edit in it or another preset a new one; no source, no key."""
    tree = _mxnet_tree(tmp_path / "a" / "src")
    (tree / "CMakeLists.txt").write_text("project(mxnet)\n")
    cell = dataclasses.replace(MATRIX.select(cell="1.9.1-cpu-debian12")[0], recipe="compile")
    recipe = compile_recipe.CompileRecipe()

    def key(path, c=cell):
        return recipe.cache_inputs(open_run(_opts(tmp_path, source_dir=path), gpu=False), c,
                                   "mxbuild/build:debian12-x")
    first = key(tree)
    copy = tmp_path / "b" / "src"
    shutil.copytree(tree, copy, symlinks=True)
    assert key(copy) == first
    (copy / "src").mkdir()
    (copy / "src/operator.cc").write_text("// patched\n")
    assert key(copy)["source"] != first["source"]
    other = with_inputs(cell, spec=dataclasses.replace(compile_spec(cell),
                                                       preset="linux_cu112"))
    assert key(tree, other)["preset"] == "linux_cu112" != first["preset"]
    no_source = with_inputs(cell, source=None)
    assert recipe.cache_inputs(open_run(_opts(tmp_path), gpu=False), no_source, "b") is None
    pinned = recipe.cache_inputs(open_run(_opts(tmp_path), gpu=False), cell, "b")
    assert pinned["source"] == dict([compile_recipe.pin_digest(source_pin(cell))])


# ---------------------------------------------------------------- architectures

ARM64 = MATRIX.select(cell="1.9.1-cpu-debian12-arm64", arch="arm64")[0]
AMD64 = dataclasses.replace(MATRIX.select(cell="1.9.1-cpu-debian12")[0], recipe="compile")
FAKE_BUILD = ImageRef("mxbuild/build:debian12-0123456789ab", "sha256:" + "0" * 64)


def _compile_dockerfile(ctx, cell):
    return ctx.data.render("docker/compile.Dockerfile.j2", build=FAKE_BUILD,
                           distro=cell.distro, toolkit_image=None, toolkit_package=None,
                           cross_arch=cell.arch.name if cell.arch.cross else None,
                           packages=images.compile_packages(ctx, cell))


def test_amd64_compile_image_is_what_it_was_before_arm64(tmp_path, golden):
    """Same packages, same Dockerfile, so the same content-hash tag: the amd64 compile
    images already built (and the compiles cached against them) stay valid."""
    ctx = open_run(_opts(tmp_path), gpu=False)
    assert images.compile_packages(ctx, AMD64) == [
        "cmake", "ninja-build", "ccache", "g++", "make", "pkg-config", "patch", "python3",
        "libopenblas-dev", "liblapack-dev", "libopencv-dev", "libzmq3-dev", "libprotobuf-dev",
        "protobuf-compiler"]
    golden("compile-amd64.Dockerfile", _compile_dockerfile(ctx, AMD64))


def test_arm64_compile_image_adds_the_cross_toolchain_and_arm64_libraries(tmp_path):
    ctx = open_run(_opts(tmp_path), gpu=False)
    packages = images.compile_packages(ctx, ARM64)
    assert "libopenblas-dev:arm64" in packages and "libopencv-dev:arm64" in packages
    assert "libprotobuf-dev:arm64" in packages and "libzmq3-dev:arm64" in packages
    # the tools run on the build machine: amd64 (protoc too)
    assert "protobuf-compiler" in packages and "cmake" in packages
    assert not any(p.endswith(":host") for p in packages)
    assert packages[-1:] == list(ARM64.arch.cross.packages)
    text = _compile_dockerfile(ctx, ARM64)
    assert "RUN dpkg --add-architecture arm64 \\\n && apt-get update" in text
    assert f"FROM {FAKE_BUILD.ref}\n" in text          # the amd64 build image


def test_jni_image_of_amd64_unchanged_and_of_arm64_with_the_cross_toolchain(tmp_path, golden):
    ctx = open_run(_opts(tmp_path), gpu=False)
    golden("jni-amd64.Dockerfile", ctx.data.render(
        "docker/jni.Dockerfile.j2", build=FAKE_BUILD, distro=AMD64.distro, cross_arch=None,
        packages=["g++"]))
    assert jvm_source.cross_tools(AMD64) == {"ARCH": "amd64"}
    assert jvm_source.cross_tools(ARM64) == {
        "ARCH": "arm64", "CXX": "aarch64-linux-gnu-g++", "STRIP": "aarch64-linux-gnu-strip",
        "NM": "aarch64-linux-gnu-nm"}


def test_compile_cross_compiles_cpu_cells_but_no_cuda():
    recipe = compile_recipe.CompileRecipe()
    assert recipe.unfit(ARM64) is None
    cuda = dataclasses.replace(ARM64, cuda="11.2", variant="cu112")
    problem, fix = recipe.unfit(cuda)
    assert "cannot build arm64" in problem and "CUDA" in problem


def test_compiled_payload_key_names_the_architecture(tmp_path):
    tree = _mxnet_tree(tmp_path / "src")
    (tree / "CMakeLists.txt").write_text("project(mxnet)\n")
    ctx = open_run(_opts(tmp_path, source_dir=tree), gpu=False)
    recipe = compile_recipe.CompileRecipe()
    # the same source, preset and (amd64) build image: only the architecture differs
    amd64 = recipe.cache_inputs(ctx, AMD64, "mxbuild/build:debian12-x")
    arm64 = recipe.cache_inputs(ctx, ARM64, "mxbuild/build:debian12-x")
    assert amd64["arch"] == "amd64" and arm64["arch"] == "arm64"
    assert {k: v for k, v in amd64.items() if k != "arch"} == \
        {k: v for k, v in arm64.items() if k != "arch"}


def test_thin_clients_are_shared_by_both_architectures(tmp_path):
    """The thin jar's and the thin wheel's keys do not name the architecture: built once,
    the same bytes published for amd64 and arm64."""
    ctx = open_run(_opts(tmp_path), gpu=False)
    assert jvm_source.thin_inputs(ctx, AMD64, "src") == jvm_source.thin_inputs(ctx, ARM64, "src")
    assert (ARM64.client_wheel or ARM64.official_wheel) == \
        (AMD64.client_wheel or AMD64.official_wheel)


NINJA_LOG = """\
# ninja log v5
0\t1500\t0\tCMakeFiles/a.o\t1a
10\t2010\t0\tCMakeFiles/b.o\t2b
2100\t2600\t0\tpslite/meta.pb.cc\t3c
2100\t2600\t0\tpslite/meta.pb.h\t3c
2700\t5200\t0\tlibmxnet.so\t4d
"""


def test_ninja_steps_sum_every_step_once():
    steps = compile_recipe.ninja_steps(NINJA_LOG)
    # protoc's one step wrote two outputs: counted once
    assert steps == {"count": 4, "seconds": 6.5, "wall_seconds": 5.2}
    assert compile_recipe.ninja_steps("# ninja log v5\n")["count"] == 0


def _readelf_h(machine: str) -> str:
    return ("ELF Header:\n  Class:                             ELF64\n"
            f"  Type:                              DYN (Shared object file)\n"
            f"  Machine:                           {machine}\n  Version: 0x1\n")


def test_machine_gate_refuses_a_binary_of_another_architecture():
    arm64, amd64 = MATRIX.architectures["arm64"], MATRIX.architectures["amd64"]
    compile_recipe.machine_gate(_readelf_h("AArch64"), arm64, "libmxnet.so", "fix")
    compile_recipe.machine_gate(_readelf_h("Advanced Micro Devices X86-64"), amd64,
                                "libmxnet.so", "fix")
    with pytest.raises(AbiError) as err:
        compile_recipe.machine_gate(_readelf_h("Advanced Micro Devices X86-64"), arm64,
                                    "libmxnet.so", "check the toolchain")
    msg = err.value.render()
    assert "libmxnet.so is built for Advanced Micro Devices X86-64, not for arm64 (AArch64" in msg
    assert "fix: check the toolchain" in msg
    with pytest.raises(AbiError, match="an unknown machine"):
        compile_recipe.machine_gate("not readelf output", arm64, "x.so", "")


def test_arm64_data_member_gets_no_x86_filter():
    arm64 = debpack.choose("1.21.22", "debian12", 184_000_000, "aarch64")
    assert not arm64.x86_filter and arm64.describe()["data"]["filters"][0] != "x86"
    assert debpack.choose("1.21.22", "debian12", 184_000_000).x86_filter   # amd64: as before


def test_the_deconvolution_source_alone_is_compiled_without_stack_slot_reuse(tmp_path):
    """Issue 27: the presets make MXNet's project (named `mxnet`, sources in its top
    directory) compile src/operator/nn/mkldnn/mkldnn_deconvolution.cc, and only it, with
    -fstack-reuse=none; another project's sources are untouched. Real CMake + Ninja."""
    from ..require import need_tools
    need_tools("cmake", "ninja", "g++")
    deconv = "src/operator/nn/mkldnn/mkldnn_deconvolution.cc"

    def configure(project: str) -> dict[str, str]:
        src, build = tmp_path / project, tmp_path / f"{project}-build"
        for rel in (deconv, "src/operator/nn/convolution.cc"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text("int f() { return 0; }\n")
        (src / "CMakeLists.txt").write_text(
            # MXNet's CMakeLists.txt calls project(mxnet) twice (the include runs twice)
            f"cmake_minimum_required(VERSION 3.13)\nproject({project} C CXX)\n"
            f"project({project} C CXX)\n"
            f"add_library(mxnet SHARED {deconv} src/operator/nn/convolution.cc)\n")
        subprocess.run(["cmake", "-S", src, "-B", build, "-G", "Ninja",
                        "-C", PRESETS / "arch_amd64.cmake", "-C", PRESETS / "linux_cpu.cmake",
                        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                       check=True, capture_output=True, text=True)
        commands = json.loads((build / "compile_commands.json").read_text())
        return {c["file"].split(f"{project}/", 1)[1]: c["command"] for c in commands}

    commands = configure("mxnet")
    assert commands[deconv].count("-fstack-reuse=none") == 1
    assert "-fstack-reuse=none" not in commands["src/operator/nn/convolution.cc"]
    assert "-mno-avx" in commands[deconv]          # the layer's flags stay
    assert all("-fstack-reuse=none" not in c for c in configure("fixture").values())
