"""The JVM half from source (mxbuild/recipes/jvm/source.py) on the fixture tree
(tests/fixtures/scala_source.py): libmxnet-scala.so compiled in the cell's distro and
linked against a stub libmxnet.so, and the thin jar built by Maven on JDK 8 (the matrix's
jvm_build image; Maven Central from the container). MXNet's own scala-package is built only
by hand (README)."""
from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import zipfile

import pytest

from mxbuild import jvm_client
from mxbuild.recipes.jvm import source as jvm_source
from mxbuild.cache import StageCache
from mxbuild.containers import Container
from mxbuild.matrix import load

from ..conftest import ROOT
from ..fixtures.scala_source import (SCALA_VERSION, STUB_FLAGS, scala_source_tree,
                                     stub_libmxnet, stub_source)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    top = scala_source_tree(tmp_path_factory.mktemp("src") / "apache-mxnet-src-1.9.1")
    return jvm_source.stage(top, True, "fixture tree", 1652745600,
                            tmp_path_factory.mktemp("staged") / "jvm-source", io.StringIO())


def _own_cache(run_ctx, tmp_path, name="cache"):
    """The run context of a machine whose stage cache is empty (its own cache dir)."""
    opts = dataclasses.replace(run_ctx.opts, cache_dir=tmp_path / name,
                               out_dir=tmp_path / "out")
    return dataclasses.replace(run_ctx, opts=opts, cache=StageCache.of(opts))


def test_stage_copies_only_the_jvm_parts_and_reads_the_version(staged):
    assert staged.version == "1.9.1"
    assert (staged.dir / jvm_source.JNI_SOURCE).is_file()
    assert (staged.dir / "include/mxnet/c_api.h").is_file()


def test_jni_library_links_libmxnet_and_exports_the_jni_functions(run_ctx, cpu_cell,
                                                                  cell_images, staged,
                                                                  tmp_path):
    ctx = _own_cache(run_ctx, tmp_path)
    stub = stub_libmxnet(tmp_path / "lib")
    log = io.StringIO()
    built = jvm_source.jni_library(ctx, cpu_cell, staged, stub, cell_images[1], log)
    assert not built.reused
    so = built.files[jvm_source.JNI_NAME]
    dynamic = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True,
                             check=True).stdout
    assert "Shared library: [libmxnet.so]" in dynamic
    for tag in ("SONAME", "RPATH", "RUNPATH"):
        assert f"({tag})" not in dynamic
    exported = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                              text=True, check=True).stdout
    assert " T Java_org_apache_mxnet_LibInfo_mxGetVersion" in exported
    sections = subprocess.run(["readelf", "-S", str(so)], capture_output=True, text=True,
                              check=True).stdout
    assert ".symtab" not in sections                     # stripped
    assert built.report["distro"] == "debian12"
    again = jvm_source.jni_library(ctx, cpu_cell, staged, stub, cell_images[1], io.StringIO())
    assert again.reused and again.files[jvm_source.JNI_NAME].read_bytes() == so.read_bytes()


def test_jni_library_is_cross_compiled_for_arm64(run_ctx, cpu_cell, cell_images, staged,
                                                 tmp_path):
    """An arm64 cell's libmxnet-scala.so: compiled in the amd64 build image plus the cross
    toolchain (no emulation), against the same JDK 8 headers, linked against an arm64
    libmxnet.so; an aarch64 ELF exporting the JNI functions."""
    arm64 = load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12-arm64", arch="arm64")[0]
    ctx = _own_cache(run_ctx, tmp_path)
    image = jvm_source.jni_image(ctx, arm64, cell_images[1], io.StringIO())
    assert image.ref.startswith("mxbuild/jni:debian12-arm64-")
    stub = tmp_path / "lib"
    stub.mkdir()
    source = stub_source(stub)
    with Container(run_ctx.docker, image.ref, label="arm64-stub") as box:   # the cross gcc
        box.copy_into(source, "/tmp")
        box.run(["aarch64-linux-gnu-gcc", *STUB_FLAGS, "-o", "/tmp/libmxnet.so",
                 "/tmp/stub.c"])
        box.copy_out("/tmp/libmxnet.so", stub)
    source.unlink()
    built = jvm_source.jni_library(ctx, arm64, staged, stub, cell_images[1], io.StringIO())
    so = built.files[jvm_source.JNI_NAME]
    header = subprocess.run(["readelf", "-h", str(so)], capture_output=True, text=True,
                            check=True).stdout
    assert "Machine:                           AArch64" in header
    dynamic = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True,
                             check=True).stdout
    assert "Shared library: [libmxnet.so]" in dynamic
    for tag in ("SONAME", "RPATH", "RUNPATH"):
        assert f"({tag})" not in dynamic
    symbols = subprocess.run(["readelf", "--dyn-syms", "--wide", str(so)],
                             capture_output=True, text=True, check=True).stdout
    assert "Java_org_apache_mxnet_LibInfo_mxGetVersion" in symbols
    assert ".symtab" not in subprocess.run(["readelf", "-S", str(so)], capture_output=True,
                                           text=True, check=True).stdout   # cross strip
    assert built.report["arch"] == "arm64" and built.report["distro"] == "debian12"
    # amd64's library of the same source is another stage-cache entry
    amd64 = jvm_source.jni_library(ctx, cpu_cell, staged, stub_libmxnet(tmp_path / "lib64"),
                                   cell_images[1], io.StringIO())
    assert not amd64.reused and amd64.report["arch"] == "amd64"


def test_jni_library_links_a_gpu_libmxnet_without_the_cuda_runtime(run_ctx, cpu_cell,
                                                                    cell_images, staged,
                                                                    tmp_path):
    """A GPU cell's libmxnet.so NEEDs the CUDA runtime, which is never in the JNI image:
    the JNI library links all the same (a shared object may leave its dependencies'
    dependencies unresolved) and NEEDs only libmxnet.so."""
    ctx = _own_cache(run_ctx, tmp_path)
    cuda, lib = tmp_path / "cuda", tmp_path / "lib"
    cuda.mkdir()
    lib.mkdir()
    (cuda / "cudart.c").write_text("int cudaGetDeviceCount(int *n) { *n = 0; return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcudart.so.11.0", "-o",
                    str(cuda / "libcudart.so.11.0"), str(cuda / "cudart.c")], check=True)
    (lib / "stub.c").write_text("int cudaGetDeviceCount(int *n);\n"
                                "int MXGetVersion(int *out) { int n; cudaGetDeviceCount(&n);"
                                " *out = 10901; return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libmxnet.so", "-o",
                    str(lib / "libmxnet.so"), str(lib / "stub.c"), f"-L{cuda}",
                    "-l:libcudart.so.11.0"], check=True)
    (lib / "stub.c").unlink()
    needed = subprocess.run(["readelf", "-d", str(lib / "libmxnet.so")], capture_output=True,
                            text=True, check=True).stdout
    assert "[libcudart.so.11.0]" in needed
    shutil.rmtree(cuda)                       # not there at link time, as in the JNI image
    log = io.StringIO()
    built = jvm_source.jni_library(ctx, cpu_cell, staged, lib, cell_images[1], log)
    dynamic = subprocess.run(["readelf", "-d", str(built.files[jvm_source.JNI_NAME])],
                             capture_output=True, text=True, check=True).stdout
    assert [line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
            if "(NEEDED)" in line][0] == "libmxnet.so"
    assert "libcudart" not in dynamic


def test_thin_jar_is_core_and_infer_without_natives_and_reproducible(run_ctx, cpu_cell,
                                                                     staged, tmp_path):
    first = jvm_source.thin_jar(_own_cache(run_ctx, tmp_path, "a"), cpu_cell, staged,
                                io.StringIO())
    jar = first.files[jvm_client.jar_name("1.9.1")]
    with zipfile.ZipFile(jar) as zf:
        names = zf.namelist()
        manifest = zf.read("META-INF/MANIFEST.MF").decode()
    assert "org/apache/mxnet/LibInfo.class" in names
    assert "org/apache/mxnet/infer/Predictor.class" in names
    assert "META-INF/LICENSE" in names and "META-INF/NOTICE" in names
    assert not jvm_client.native_members(jar) and not any(n.startswith("lib/") for n in names)
    assert "Implementation-Version: 1.9.1" in manifest
    pom = first.files[jvm_client.pom_name("1.9.1")].read_bytes()
    deps = [(d.group_id, d.artifact_id, d.version)
            for d in jvm_client.runtime_dependencies(pom, "thin pom")]
    assert deps == [("org.scala-lang", "scala-library", SCALA_VERSION),
                    ("org.scala-lang.modules", "scala-parser-combinators_2.11", "1.0.5"),
                    ("commons-codec", "commons-codec", "1.10"),
                    ("commons-io", "commons-io", "2.1"), ("org.slf4j", "slf4j-api", "1.7.5"),
                    ("args4j", "args4j", "2.0.29")]
    # built again from nothing (another machine's empty stage cache): the same bytes
    second = jvm_source.thin_jar(_own_cache(run_ctx, tmp_path, "b"), cpu_cell, staged,
                                 io.StringIO())
    assert not second.reused
    assert second.files[jar.name].read_bytes() == jar.read_bytes()
