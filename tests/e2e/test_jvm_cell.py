"""The JVM half end to end, as a user runs it: a cell built by recipe "maven" from a jar
laid out like MXNet's official mxnet-full_2.11-linux-x86_64-cpu jar (Maven Central does
not serve org.apache.mxnet to these machines, so the jar is assembled here: the stand-in
for scala-package (tests/fixtures/jvm-standin) + the real 1.9.1 libmxnet.so and its
bundled libraries, published in a Maven repository on disk with Central-style .sha1).
`invoke build` harvests it, ships libmxnet + libmxnet-scala, publishes both .debs, the
thin wheel and the thin jar, and smoke-tests Python and JVM in fresh debian12 containers."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from mxbuild.fetch import sha256_file

from ..conftest import ROOT
from ..fixtures import jvm_fixture as jf
from ..require import skip_or_fail
from .jvm_checks import assert_libmxnet_scala


def invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def jvm_cell(tmp_path_factory, gnupg_home, docker_client):
    try:
        jf.find_java_home(), jf._tool("mvn"), jf._tool("gcc")
    except jf.FixtureError as exc:
        skip_or_fail("tools", str(exc))
    work = tmp_path_factory.mktemp("jvm-cell")
    libs = jf.libmxnet_of_wheel()
    standin = jf.build_standin(work, libs, maven_repo=ROOT / ".cache/mxbuild/m2")
    natives = {n: libs / n for n in ("libmxnet.so", "libopenblas.so.0", "libgfortran.so.3")}
    jar = jf.full_jar(standin, natives, work / "full.jar", compress=False)
    repo = work / "central"
    jf.deploy(repo, jf.FULL, jar, jf.full_pom(standin))
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    cpu = doc["variants"]["cpu"]
    build = dict(cpu["builds"][0], recipe="maven", distros=["debian12"],
                 packages=["libmxnet", "libmxnet-scala"],
                 jar={"group": jf.FULL.group, "artifact": jf.FULL.artifact,
                      "version": jf.FULL.version, "sha256": sha256_file(jar),
                      "bundled": ["libgfortran.so.3", "libopenblas.so.0"],
                      "repository": repo.as_uri()})
    cpu["builds"] = [build]
    doc["variants"] = {"cpu": cpu}
    matrix = work / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(doc))
    out = work / "out"
    env = {**os.environ, "MXBUILD_MATRIX": str(matrix), "MXBUILD_OUT_DIR": str(out),
           "MXBUILD_GNUPGHOME": str(gnupg_home)}
    return out, env, jar


def test_a_jvm_cell_ships_two_packages_a_thin_jar_and_passes_both_smoke_suites(jvm_cell):
    out, env, full = jvm_cell
    proc = invoke("build", "--cell", "1.9.1-cpu-debian12", "--force", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    assert cell["recipe"] == "maven" and cell["packages"] == ["libmxnet", "libmxnet-scala"]
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "ok"), ("package", "ok"), ("publish", "ok"), ("smoke", "ok")]
    debs = {d["package"]: d for d in cell["debs"]}
    assert set(debs) == {"libmxnet", "libmxnet-scala"}
    assert all(d["lintian"]["errors"] == 0 for d in debs.values())
    scala = Path(debs["libmxnet-scala"]["path"])
    assert_libmxnet_scala(scala, cell["version"])
    # the thin jar: the official layout minus lib/native/, published next to the apt repo
    repo = out / "repo"
    thin = repo / "maven/org/mxbuild/mxnet-thin_2.11/1.9.1/mxnet-thin_2.11-1.9.1.jar"
    with zipfile.ZipFile(thin) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith("lib/native")]
    with zipfile.ZipFile(full) as zf:
        assert sorted(names) == sorted(n for n in zf.namelist()
                                       if not n.startswith("lib/native") and n != "lib/")
    pom = thin.with_suffix(".pom").read_text()
    for dep in jf.POM_DEPS:
        assert f"<artifactId>{dep.artifact}</artifactId>" in pom and dep.version in pom
    assert (thin.parent.parent / "maven-metadata.xml").is_file()
    smoke = cell["smoke"]
    junit = Path(smoke["junit"]).read_text()
    assert 'name="natives_from_packages"' in junit and 'name="batch_matches"' in junit
    assert smoke["failed"] == smoke["errors"] == 0 and smoke["passed"] >= 15
    assert cell["repo"]["clients"] == {"python": "mxnet_thin-1.9.1-py3-none-any.whl",
                                       "jvm": "mxnet-thin_2.11-1.9.1.jar"}
    verified = invoke("repo.verify", "--repo", str(repo), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = json.loads(invoke("repo.list", "--repo", str(repo), "--json", env=env).stdout)
    assert listed["bookworm"]["cpu"] == [["libmxnet", cell["version"]],
                                         ["libmxnet-scala", cell["version"]]]
    assert listed["maven"] == ["org.mxbuild:mxnet-thin_2.11:1.9.1"]


def test_rebuilding_the_jvm_cell_gives_the_same_bytes(jvm_cell):
    out, env, _ = jvm_cell
    before = json.loads((out / "report.json").read_text())["cells"][0]
    proc = invoke("build", "--cell", "1.9.1-cpu-debian12", "--force-stage", "recipe,package",
                  "--no-smoke", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = json.loads((out / "report.json").read_text())["cells"][0]
    assert [d["sha256"] for d in after["debs"]] == [d["sha256"] for d in before["debs"]]
    assert [s["status"] for s in after["stages"]][-1] == "reused"   # publish: nothing new
