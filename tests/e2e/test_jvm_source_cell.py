"""Recipe "wheel-jvm" end to end on the fixture tree (tests/fixtures/scala_source.py): the
1.9.1 cpu × debian12 cell, as a user runs it with `--recipe wheel-jvm --source-dir TREE`,
ships libmxnet exactly as recipe "wheel" makes it plus libmxnet-scala (the JNI library
compiled from the tree's scala-package/native, linked against that libmxnet.so) and the
thin jar built by Maven from the tree's scala-package; both .debs lintian-clean, published
with the thin jar, and the JNI library really loads libmxnet from the installed packages.
The JVM smoke suite needs MXNet's real scala-package: run by hand (README)."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxbuild import images
from mxbuild.recipes.jvm import source as jvm_source
from mxbuild.containers import Container

from ..conftest import ROOT
from ..fixtures.scala_source import scala_source_tree
from .jvm_checks import assert_libmxnet_scala

CELL = "1.9.1-cpu-debian12"


def invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def built(tmp_path_factory, gnupg_home):
    work = tmp_path_factory.mktemp("wheel-jvm")
    tree = scala_source_tree(work / "apache-mxnet-src-1.9.1")
    out = work / "out"
    env = {**os.environ, "MXBUILD_OUT_DIR": str(out), "MXBUILD_GNUPGHOME": str(gnupg_home)}
    wheel_only = invoke("build", "--cell", CELL, "--no-smoke", "--publish", "none", env=env)
    assert wheel_only.returncode == 0, wheel_only.stdout + wheel_only.stderr
    wheel_cell = json.loads((out / "report.json").read_text())["cells"][0]
    proc = invoke("build", "--cell", CELL, "--recipe", "wheel-jvm", "--source-dir", str(tree),
                  "--no-smoke", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    return out, env, wheel_cell, cell


def test_libmxnet_stays_what_the_wheel_recipe_makes(built):
    _, _, wheel_cell, cell = built
    assert cell["recipe"] == "wheel-jvm" and cell["packages"] == ["libmxnet", "libmxnet-scala"]
    debs = {d["package"]: d for d in cell["debs"]}
    assert debs["libmxnet"]["sha256"] == wheel_cell["debs"][0]["sha256"]
    assert all(d["lintian"]["errors"] == 0 for d in debs.values())


def test_libmxnet_scala_is_the_jni_library_from_source(built):
    _, _, _, cell = built
    scala = Path(next(d["path"] for d in cell["debs"] if d["package"] == "libmxnet-scala"))
    assert_libmxnet_scala(scala, cell["version"])
    copyright_text = subprocess.run(
        f"dpkg-deb --fsys-tarfile {scala} | tar -xO ./usr/share/doc/libmxnet-scala/copyright",
        shell=True, capture_output=True, text=True, check=True).stdout
    assert "compiled by mxbuild from scala-package/native" in copyright_text
    assert cell["jvm"]["jni"]["distro"] == "debian12"


def test_the_thin_jar_is_published_and_the_repo_verifies(built):
    out, env, _, cell = built
    thin = out / "repo/maven/org/mxbuild/mxnet-thin_2.11/1.9.1/mxnet-thin_2.11-1.9.1.jar"
    assert thin.is_file() and thin.with_suffix(".pom").is_file()
    assert cell["repo"]["clients"]["jvm"] == thin.name
    verified = invoke("repo.verify", "--repo", str(out / "repo"), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_installed_jni_library_calls_into_the_packaged_libmxnet(built, run_ctx, cpu_cell):
    """Both .debs installed with dpkg in the cell's JNI image (its build image, which has
    the libraries libmxnet depends on, + g++): the fixture's JNI function calls
    MXGetVersion of the wheel's libmxnet.so, found in /usr/lib/<multiarch> (no JVM needed
    to call an exported C function)."""
    _, _, _, cell = built
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
             b'  printf("version %d\\n", f(0, 0));\n  return 0;\n}\n')
    with Container(run_ctx.docker, image.ref, label="jni-probe") as box:
        for deb in cell["debs"]:
            box.copy_into(Path(deb["path"]), "/tmp")
        box.run(["sh", "-c", "dpkg -i /tmp/*.deb"])
        box.write_file("/tmp/probe.c", probe)
        box.run(["gcc", "-o", "/tmp/probe", "/tmp/probe.c", "-ldl"])
        assert box.run(["/tmp/probe"]).output.strip() == "version 10901"
