"""The JVM smoke suite: in a fresh runtime container of the cell's distro with that
distro's own JRE (matrix.yaml `smoke.jdk`), `apt-get install libmxnet-scala` from the
published repository (signed-by), then run the example program examples/jvm-predictor —
built on the host as an ordinary Maven project against the published Maven repository
(the thin jar) and Maven Central (its dependencies, checksums enforced). The program
predicts the smoke model (single input and batch, rtol 1e-5 against the host's
reference), and proves the natives came from the packages (/proc/self/maps: the jni and
multiarch directories) and that nothing was extracted to java.io.tmpdir; it writes JUnit."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

from .. import images, jvm_client
from ..containers import Container
from ..errors import MxbuildError
from ..images import ImageRef
from ..matrix import Cell
from ..repo.sign import KEYRING_NAME
from ..thin import ThinClient
from . import (SmokeCounts, SmokeRun, Suite, apt_source_line, apt_update, finished, gpu_checks_skipped_junit,
               install, jvm_max_diff, model_fixtures)

JVM_REPO = "mxbuild/smoke-jvm"
WORK = "/srv/jvm"
SUITE = "jvm_predictor"
# the example's checks (its JUnit cases): reported as skipped where the library cannot load
CHECKS = ("jvm_info", "thin_jar_has_no_native", "natives_from_packages", "nothing_extracted",
          "single_matches", "batch_matches")


def ensure_image(ctx, cell: Cell, runtime: ImageRef, logf: IO[str]) -> ImageRef:
    text = ctx.data.render("docker/jvm-client.Dockerfile.j2", runtime=runtime,
                           distro=cell.distro)
    return images.build_from_template(ctx, JVM_REPO, cell.distro.name, text, logf,
                                      images.foreign(cell))


def java_home() -> Path:
    """The host JDK Maven builds the example with (JAVA_HOME, else the one `javac` is)."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    javac = shutil.which("javac")
    if not javac:
        raise MxbuildError("no JDK on this host to build the JVM smoke program",
                           "run ./setup.sh (it installs default-jdk-headless and maven)")
    return Path(os.path.realpath(javac)).parent.parent


def build_example(ctx, client: ThinClient, repo_url: str, work: Path,
                  logf: IO[str]) -> Path:
    """`mvn package` of examples/jvm-predictor against the published repository; returns
    target/ (jvm-predictor.jar + lib/)."""
    if not shutil.which("mvn"):
        raise MxbuildError("Maven (mvn) is not on this host", "run ./setup.sh")
    coords = jvm_client.coords(client.version)
    local = ctx.opts.cache_dir / "m2"
    # Maven never downloads a release it has cached: the thin jar must come from the
    # repository under test, so this version's cached copy goes first.
    shutil.rmtree(local.joinpath(*coords.group_id.split("."), coords.artifact_id,
                                 coords.version), ignore_errors=True)
    project = work / "jvm-predictor"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(ctx.data.examples / "jvm-predictor", project,
                    ignore=shutil.ignore_patterns("target"))
    cmd = ["mvn", "-B", "-q", "--strict-checksums", f"-Dmaven.repo.local={local}",
           f"-Dmxnet.repo.url={repo_url}", f"-Dmxnet.groupId={coords.group_id}",
           f"-Dmxnet.artifactId={coords.artifact_id}", f"-Dmxnet.version={coords.version}",
           "package"]
    logf.write("$ " + " ".join(cmd) + "\n")
    logf.flush()
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True,
                          env={**os.environ, "JAVA_HOME": str(java_home())})
    logf.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise MxbuildError(f"building the JVM smoke program against {repo_url} failed "
                           f"(mvn exit {proc.returncode}): {proc.stdout[-800:]}",
                           "check that the thin jar and its POM are in the repository "
                           "(invoke repo.verify) and that Maven Central is reachable")
    target = project / "target"
    thin = target / "lib" / jvm_client.jar_name(client.version)
    if not thin.is_file() or jvm_client.native_members(thin):
        raise MxbuildError(f"the program's classpath has no native-free {thin.name}",
                           "the repository serves another jar under the thin jar's name")
    return target


def run(ctx, cell: Cell, image: ImageRef, client: ThinClient, given: SmokeRun) -> SmokeCounts:
    """Install libmxnet-scala from the repository at `given.url` and run the program."""
    url, keyring, logf, work = given.url, given.keyring, given.logf, given.work
    fixtures = model_fixtures(ctx)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    target = build_example(ctx, client, f"{url}/{jvm_client.maven.PREFIX}", work, logf)
    shutil.copytree(fixtures, work / "model")
    (work / KEYRING_NAME).write_bytes(keyring)
    package = next(p.name for p in cell.packages if p.client == "jvm")
    libdir = f"/usr/lib/{cell.multiarch}"
    with Container(ctx.docker, image.ref, label=f"smoke-jvm-{cell.id}", network="host",
                   log_file=logf, gpus=ctx.gpu and cell.cuda is not None) as box:
        box.copy_into(work / KEYRING_NAME, "/usr/share/keyrings")
        box.write_file("/etc/apt/sources.list.d/mxbuild.list", apt_source_line(
            url, cell, staging=ctx.opts.staging) + "\n")
        apt_update(box)
        missing = install(box, cell, ctx.gpu, package)
        box.run(["mkdir", "-p", WORK])
        box.copy_into(target / "jvm-predictor.jar", WORK)
        box.copy_into(target / "lib", WORK)
        box.copy_into(work / "model", WORK)
        junit = work / "junit.xml"
        if missing:
            # no GPU here: the libraries cannot load; check the closure, skip the rest
            ldd = box.run(["ldd", f"{libdir}/jni/libmxnet-scala.so"], check=False).output
            not_found = {ln.split()[0] for ln in ldd.splitlines() if "not found" in ln}
            junit.write_text(gpu_checks_skipped_junit(SUITE, CHECKS, not_found,
                                                      set(missing)))
            return finished(junit, 0, missing, ctx.gpu if cell.cuda else None, "JVM")
        java = box.run(["sh", "-c", "readlink -f $(command -v java)"]).output.strip()
        tolerance = cell.smoke_tolerance
        result = box.run(["java", "-jar", f"{WORK}/jvm-predictor.jar", f"{WORK}/model",
                          "--expect-lib-dir", libdir, "--forbid-tmp-natives",
                          "--rtol", repr(tolerance.rtol), "--atol", repr(tolerance.atol),
                          "--junit", f"{WORK}/junit.xml"], check=False)
        logf.write(f"java: {java}; exit {result.exit_code}\n")
        if box.run(["test", "-f", f"{WORK}/junit.xml"], check=False).exit_code != 0:
            raise MxbuildError(f"the JVM smoke program wrote no JUnit report (exit "
                               f"{result.exit_code}): {result.output[-1500:]}",
                               "read the smoke log")
        box.copy_out(f"{WORK}/junit.xml", work)
    max_abs = jvm_max_diff(junit)
    if max_abs is not None:
        logf.write(f"JVM suite: largest |got - want| {max_abs:.3g} (rtol {tolerance.rtol}, "
                   f"atol {tolerance.atol})\n")
    counts = finished(junit, result.exit_code, {}, ctx.gpu if cell.cuda else None, "JVM")
    return dataclasses.replace(counts, max_abs_diff=max_abs)


# the "jvm" kind's suite: examples/jvm-predictor with the thin jar, in the distro's JRE image
SMOKE_SUITE = Suite(ensure_image, run)
