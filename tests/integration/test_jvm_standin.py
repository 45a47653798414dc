"""The JVM client path, end to end, without MXNet's JVM jars or sources: the stand-in for
scala-package (tests/fixtures/jvm-standin, real inference through libmxnet.so's C predict
API) built on the host against the mxnet wheel's libmxnet.so and published into a Maven 2
repository; examples/jvm-predictor built against it with Maven; then run in a fresh
debian12 runtime container with the natives where the packages put them — the distro's
default JRE, no -Djava.library.path, no LD_LIBRARY_PATH.

Host tools: a JDK, Maven (Central reachable or a warm .cache/mxbuild/m2) and gcc; without
them the module skips, unless MXBUILD_REQUIRE_TOOLS=1 (CI) makes that a failure."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from mxbuild.containers import Container
from mxbuild.smoke import junit_counts, model_fixtures

from ..fixtures import jvm_fixture as jf
from ..require import skip_or_fail

MA = "/usr/lib/x86_64-linux-gnu"
CHECKS = {"jvm_info", "natives_from_packages", "nothing_extracted", "thin_jar_has_no_native",
          "single_matches", "batch_matches"}
BUNDLED = ("libmxnet.so", "libopenblas.so.0", "libgfortran.so.3")   # the wheel's natives
RUN = (f"cd /tmp && env -u LD_LIBRARY_PATH java -jar /srv/app/jvm-predictor.jar /srv/model "
       f"--expect-lib-dir {MA} --forbid-tmp-natives --junit /srv/junit.xml")


@pytest.fixture(scope="module")
def jvm_build(tmp_path_factory, test_opts):
    """Stand-in (jar + JNI library), its Maven repository and the example built against it."""
    try:
        missing = [t for t in ("mvn", "javac", "gcc", "strip") if not shutil.which(t)]
        if missing:
            raise jf.FixtureError(f"missing host tools: {', '.join(missing)} "
                                  "(apt-get install default-jdk-headless maven gcc binutils)")
        java_home = jf.find_java_home()
    except jf.FixtureError as exc:
        skip_or_fail("tools", str(exc))
    work = tmp_path_factory.mktemp("jvm")
    m2 = test_opts.cache_dir / "m2"           # Maven's local repository, kept between runs
    libdir = jf.libmxnet_of_wheel()
    standin = jf.build_standin(work, libdir, java_home, maven_repo=m2)
    repo = work / "maven"
    jf.deploy(repo, jf.THIN, standin.jar,
              jf.pom_text(jf.THIN, standin.pom_deps, "mxbuild's stand-in for MXNet's thin jar"))
    example = jf.build_example(work, repo.as_uri(), jf.THIN, java_home, maven_repo=m2)
    return standin, example, libdir, work


def test_standin_has_mxnet_1_9_1s_api(jvm_build):
    """Every public member is MXNet 1.9.1's (api-1.9.1.txt was checked against its jar)."""
    standin = jvm_build[0]
    want = {line for line in jf.API_FILE.read_text().splitlines()
            if line and not line.startswith("#")}
    got = jf.public_api(standin.jar, standin.java_home)
    assert got == want, f"not in api-1.9.1.txt: {sorted(got - want)}; " \
                        f"missing: {sorted(want - got)}"


def test_standin_jni_library_is_a_plain_plugin(jvm_build):
    dyn = subprocess.run(["readelf", "-dW", str(jvm_build[0].jni)], capture_output=True,
                         text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    assert needed == ["libmxnet.so", "libc.so.6"]
    for tag in ("(SONAME)", "(RPATH)", "(RUNPATH)"):
        assert tag not in dyn
    sections = subprocess.run(["readelf", "-SW", str(jvm_build[0].jni)], capture_output=True,
                              text=True, check=True).stdout
    assert ".symtab" not in sections and ".comment" not in sections     # stripped


def test_example_in_debian12_runtime(jvm_build, docker_client, cell_images, run_ctx, tmp_path):
    standin, example, libdir, work = jvm_build
    model = model_fixtures(run_ctx)
    with Container(docker_client, cell_images[2].ref, label="jvm-standin",
                   network="host") as box:
        box.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                "default-jre-headless libgomp1 libquadmath0 > /dev/null",
                env={"DEBIAN_FRONTEND": "noninteractive"})
        # as the packages lay them out (bundled libs beside libmxnet.so for this test)
        for name in BUNDLED:
            box.copy_into(libdir / name, MA)
        box.run(f"mkdir -p {MA}/jni /srv/app && ldconfig")
        box.copy_into(standin.jni, f"{MA}/jni")
        box.copy_into(example.jar, "/srv/app")
        box.copy_into(example.lib, "/srv/app")
        box.copy_into(model, "/srv", arcname="model")

        ok = box.run(RUN, check=False)
        box.copy_out("/srv/junit.xml", tmp_path / "ok")

        # Without the packaged JNI library, and with a full jar (lib/native/…) as the MXNet
        # jar: the stand-in must not extract anything, so the smoke fails.
        full = jf.full_jar(standin, {n: libdir / n for n in BUNDLED}, work / "full.jar",
                           compress=False)
        box.run(f"rm {MA}/jni/libmxnet-scala.so /srv/app/lib/mxnet-thin_2.11-1.9.1.jar")
        box.copy_into(full, "/srv/app/lib", arcname="mxnet-thin_2.11-1.9.1.jar")
        bad = box.run(RUN, check=False)
        box.copy_out("/srv/junit.xml", tmp_path / "bad")
        leftovers = box.run("ls /tmp").output.split()

    assert ok.exit_code == 0, ok.output
    counts = junit_counts(tmp_path / "ok" / "junit.xml")
    assert (counts.tests, counts.passed) == (6, 6), ok.output
    assert f"loaded [{MA}/libmxnet.so, {MA}/jni/libmxnet-scala.so]" in ok.output
    assert "Java 17." in ok.output            # bookworm's default JRE
    assert _case_names(tmp_path / "ok" / "junit.xml") == CHECKS

    assert bad.exit_code == 1, bad.output
    assert "Couldn't find native library mxnet-scala" in bad.output
    counts = junit_counts(tmp_path / "bad" / "junit.xml")
    assert (counts.failed, counts.errors) == (2, 2), bad.output  # natives + thin jar; predictions
    assert not [e for e in leftovers if e.startswith("mxnet")]


def _case_names(path) -> set[str]:
    import xml.etree.ElementTree as ET
    return {c.get("name") for c in ET.parse(path).getroot().iter("testcase")}
