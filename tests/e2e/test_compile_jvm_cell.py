"""Recipe "compile-jvm" end to end on a fixture tree: the compile recipe's CMake fixture
(tests/integration/test_compile.py: a libmxnet.so exporting MXGetVersion) with the
scala-package fixture (tests/fixtures/scala_source.py) in one source tree, as a user runs
`invoke build --cell 1.9.1-cpu-debian12 --recipe compile-jvm --source-dir TREE`: libmxnet
compiled in the cell's distro, libmxnet-scala compiled against that library, the thin jar
by Maven; both .debs lintian-clean, published with the thin jar; installed, the JNI
library calls into the compiled libmxnet. MXNet's real tree: by hand only (README)."""
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mxbuild import images
from mxbuild.recipes.jvm import source as jvm_source
from mxbuild.upstream import tree
from mxbuild.containers import Container

from ..conftest import ROOT
from ..fixtures import upstream_tests
from ..fixtures.scala_source import scala_source_tree
from ..integration.test_compile import fixture_tree
from .jvm_checks import assert_libmxnet_scala

CELL = "1.9.1-cpu-debian12"


def invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def built(tmp_path_factory, gnupg_home, docker_client):
    work = tmp_path_factory.mktemp("compile-jvm")
    # distro_libs=False: the JNI probe installs both .debs with dpkg alone (the distro
    # libraries' Depends are test_compile's)
    tree = fixture_tree(scala_source_tree(work / "apache-mxnet-src-1.9.1"), exist_ok=True,
                        distro_libs=False)
    out = work / "out"
    volume = f"mxbuild-test-ccache-{uuid.uuid4().hex[:8]}"
    # the fixture tree has the fixture's Python tests, not MXNet's
    matrix = upstream_tests.matrix_with_fixture_tests(ROOT / "matrix.yaml", work / "matrix.yaml")
    env = {**os.environ, "MXBUILD_OUT_DIR": str(out), "MXBUILD_GNUPGHOME": str(gnupg_home),
           "MXBUILD_CCACHE_VOLUME": volume, "MXBUILD_MATRIX": str(matrix)}
    try:
        proc = invoke("build", "--cell", CELL, "--recipe", "compile-jvm", "--source-dir",
                      str(tree), "--no-smoke", "--force-stage", "recipe,package", env=env)
    finally:
        try:
            docker_client.volumes.get(volume).remove(force=True)
        except Exception:   # noqa: BLE001  (not created if the run stopped early)
            pass
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    return out, env, cell


def test_both_packages_from_source_lintian_clean(built):
    _, _, cell = built
    assert cell["recipe"] == "compile-jvm" and cell["packages"] == ["libmxnet", "libmxnet-scala"]
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "ok"), ("package", "ok"), ("publish", "ok")]
    debs = {d["package"]: d for d in cell["debs"]}
    assert all(d["lintian"]["errors"] == 0 for d in debs.values())
    # libmxnet is the compiled library: its buildinfo names recipe compile, not the wheel
    info = json.loads(subprocess.run(
        f"dpkg-deb --fsys-tarfile {debs['libmxnet']['path']} | "
        "tar -xO ./usr/share/doc/libmxnet/buildinfo.json", shell=True, capture_output=True,
        text=True, check=True).stdout)
    assert info["recipe"] == "compile" and "wheel" not in info["source"].lower()
    assert cell["compile"]["abi"]
    scala = Path(debs["libmxnet-scala"]["path"])
    assert_libmxnet_scala(scala, cell["version"])
    assert cell["jvm"]["jni"]["distro"] == "debian12"
    # compile-jvm builds libmxnet.so from source: MXNet's tests (here the fixture's) come
    # with its .debs for the upstream stage (not run: --no-smoke)
    out = built[0]
    assert (out / "debs" / CELL / tree.TESTS_TAR).is_file()


def test_the_thin_jar_is_published_and_the_repo_verifies(built):
    out, env, cell = built
    thin = out / "repo/maven/org/mxbuild/mxnet-thin_2.11/1.9.1/mxnet-thin_2.11-1.9.1.jar"
    assert thin.is_file() and thin.with_suffix(".pom").is_file()
    assert cell["repo"]["clients"]["jvm"] == thin.name
    verified = invoke("repo.verify", "--repo", str(out / "repo"), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_jni_library_calls_into_the_compiled_libmxnet(built, run_ctx, cpu_cell):
    """Both .debs installed with dpkg in the cell's JNI image: the fixture's JNI function
    returns MXGetVersion of the compiled libmxnet.so (10901), found in /usr/lib/<multiarch>."""
    _, _, cell = built
    log = io.StringIO()
    build = images.ensure_build_image(run_ctx, cpu_cell,
                                      images.ensure_base(run_ctx, cpu_cell.distro, log), log)
    image = jvm_source.jni_image(run_ctx, cpu_cell, build, log)
    probe = (b'#include <dlfcn.h>\n#include <stdio.h>\n'
             b'int main(void) {\n'
             b'  void *h = dlopen("/usr/lib/x86_64-linux-gnu/jni/libmxnet-scala.so", RTLD_NOW);\n'
             b'  if (!h) { puts(dlerror()); return 1; }\n'
             b'  int (*f)(void *, void *) = (int (*)(void *, void *))dlsym(h,\n'
             b'      "Java_org_apache_mxnet_LibInfo_mxGetVersion");\n'
             b'  void *lib = dlopen("libmxnet.so", RTLD_NOW | RTLD_NOLOAD);\n'
             b'  const char *(*rec)(void) = lib ? (const char *(*)(void))dlsym(lib,\n'
             b'      "MXGetRecorded") : 0;\n'
             b'  printf("version %d %s\\n", f(0, 0), rec ? "compiled" : "other");\n'
             b'  return 0;\n}\n')
    with Container(run_ctx.docker, image.ref, label="jni-probe-compiled") as box:
        for deb in cell["debs"]:
            box.copy_into(Path(deb["path"]), "/tmp")
        box.run(["sh", "-c", "dpkg -i /tmp/*.deb"])
        box.write_file("/tmp/probe.c", probe)
        box.run(["gcc", "-o", "/tmp/probe", "/tmp/probe.c", "-ldl"])
        assert box.run(["/tmp/probe"]).output.strip() == "version 10901 compiled"
