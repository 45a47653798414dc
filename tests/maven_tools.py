"""Helpers of the Maven repository tests: tiny real jars and poms, storage wrappers that
count or stop writes, and a real Maven client (mvn) resolving from a repository URL."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mxbuild.repo import maven
from mxbuild.repo.storage import CasConflict

from .require import need_tools, skip_or_fail

GROUP, ARTIFACT = "org.apache.mxnet", "mxnet-thin_2.11"
PROBE_CLASS = "org.mxbuild.probe.Probe"
PROBE_SOURCE = """package org.mxbuild.probe;
public final class Probe {
    public static void main(String[] args) {
        System.out.println("thin jar probe " + Probe.class.getPackage().getImplementationVersion());
    }
}
"""
# the Maven plugin that resolves for the tests; its own downloads are cached across runs
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
PLUGIN_CACHE = Path.home() / ".cache/mxbuild/maven/dependency-plugin-3.6.1"


def coords(version: str, group: str = GROUP, artifact: str = ARTIFACT) -> maven.Coords:
    return maven.Coords(group, artifact, version)


def make_pom(c: maven.Coords, extra: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>{c.group_id}</groupId>
  <artifactId>{c.artifact_id}</artifactId>
  <version>{c.version}</version>
  <packaging>jar</packaging>
  <name>MXNet thin client (test)</name>{extra}
</project>
""".encode()


def make_jar(directory: Path, version: str, probe_class: Path | None = None) -> Path:
    """A small real jar: a manifest naming the version and the compiled probe class (when
    given) or a text resource. Same version, same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"thin-{version}.jar"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        def add(name: str, data: bytes) -> None:
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data)
        add("META-INF/MANIFEST.MF", ("Manifest-Version: 1.0\nImplementation-Title: mxnet-thin\n"
                                     f"Implementation-Version: {version}\n\n").encode())
        if probe_class is not None:
            add("org/mxbuild/probe/Probe.class", probe_class.read_bytes())
        else:
            add("org/mxbuild/probe/version.txt", version.encode())
    return out


def compile_probe(directory: Path) -> Path:
    src = directory / "src/org/mxbuild/probe/Probe.java"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(PROBE_SOURCE)
    subprocess.run(["javac", "--release", "8", "-d", str(directory / "classes"), str(src)],
                   check=True, capture_output=True)
    return directory / "classes/org/mxbuild/probe/Probe.class"


class Killed(BaseException):
    """The publisher "died" (a BaseException: no `except Exception` in the code under test
    can swallow it, as nothing can catch a SIGKILL)."""


class Recording:
    """The real storage; counts its writes (calls to put_new, put_cas, put), and can stop
    the publisher right after its Nth completed write, or make every first put_cas of a
    thread wait at a barrier (so concurrent publishers all read the same token)."""

    def __init__(self, inner, kill_after: int = 0, barrier: threading.Barrier | None = None):
        self.inner, self.kill_after, self.barrier = inner, kill_after, barrier
        self.calls: list[str] = []        # every call of a writing method
        self.writes: list[str] = []       # the calls that changed something
        self.conflicts = 0
        self._lock = threading.Lock()
        self._waited: set[int] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _wrote(self, key: str) -> None:
        with self._lock:
            self.writes.append(key)
            n = len(self.writes)
        if n == self.kill_after:
            raise Killed(key)

    def put_new(self, key, *args, **kwargs):
        self.calls.append(key)
        written = self.inner.put_new(key, *args, **kwargs)
        if written:
            self._wrote(key)
        return written

    def put_cas(self, key, *args, **kwargs):
        self.calls.append(key)
        if self.barrier is not None and threading.get_ident() not in self._waited:
            self._waited.add(threading.get_ident())
            self.barrier.wait(60)
        try:
            token = self.inner.put_cas(key, *args, **kwargs)
        except CasConflict:
            with self._lock:
                self.conflicts += 1
            raise
        self._wrote(key)
        return token

    def put(self, key, *args, **kwargs):
        self.calls.append(key)
        self.inner.put(key, *args, **kwargs)
        self._wrote(key)


def publish_concurrently(storage, jars: dict[str, Path], timeout: float) -> list[BaseException]:
    """Publish each version's jar (+ POM) from its own thread at once; what they raised."""
    errors: list[BaseException] = []

    def run(version):
        try:
            maven.publish_artifact(storage, coords(version), jars[version],
                                   make_pom(coords(version)))
        except BaseException as exc:        # noqa: BLE001 — reported by the test
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(v,)) for v in jars]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def require_tools(*names: str) -> None:
    """Skip without the tools; with MXBUILD_REQUIRE_TOOLS=1 (CI) fail instead."""
    need_tools(*names, hint="apt-get install maven default-jdk-headless")


def maven_homes() -> Iterator[Path]:
    """Where the installed Maven may live: the directory above the real `mvn` script (an
    Apache binary distribution, Debian's /usr/share/maven, SDKMAN, Homebrew), then what
    `mvn -v` says (a wrapper script elsewhere; asked only if needed: it starts a JVM)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        return
    yield Path(mvn).resolve().parent.parent
    out = subprocess.run([mvn, "-v", "-B"], capture_output=True, text=True).stdout
    said = re.search(r"^Maven home: (.+)$", out, re.M)
    if said:
        yield Path(said.group(1).strip()).resolve()


def maven_jar_with(class_name: str) -> Path:
    """The jar of the installed Maven that holds `class_name` (found by its content, not
    by a file name: distributions name and link their jars differently), or
    skip_or_fail('tools')."""
    need_tools("mvn", "java", hint="apt-get install maven default-jdk-headless")
    entry = class_name.replace(".", "/") + ".class"
    searched = []
    for home in maven_homes():
        searched.append(str(home))
        for jar in sorted((home / "lib").glob("*.jar")):
            try:
                with zipfile.ZipFile(jar) as zf:
                    if entry in zf.namelist():
                        return jar.resolve()
            except (OSError, zipfile.BadZipFile):
                continue
    skip_or_fail("tools", f"no jar of the installed Maven ({', '.join(searched) or 'no mvn'}) "
                          f"holds {class_name}")


# ------------------------------------------------------------------ a real Maven client

@dataclass(frozen=True)
class Resolved:
    ok: bool
    output: str
    items: dict[str, bytes]           # what dependency:copy fetched: file name -> bytes
    deps: dict[str, bytes]            # what dependency:copy-dependencies fetched
    local_repo: Path


def _run_mvn(project: Path, local_repo: Path, goals: list[str], timeout: int = 300):
    return subprocess.run(
        ["nice", "-n", "10", "mvn", "-B", "-e", f"-Dmaven.repo.local={local_repo}",
         *[f"{DEPENDENCY_PLUGIN}:{g}" for g in goals]],
        cwd=project, capture_output=True, text=True, timeout=timeout)


def _project_pom(body: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>test.consumer</groupId>
  <artifactId>consumer</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
{body}
</project>
"""


# Dependencies may come from the repositories under test only (the tests are hermetic and
# prove where an artifact came from); plugins still come from Maven Central.
CENTRAL_OFF = """  <repository>
    <id>central</id>
    <url>https://repo.maven.apache.org/maven2</url>
    <releases><enabled>false</enabled></releases>
    <snapshots><enabled>false</enabled></snapshots>
  </repository>
</repositories>"""


def _items_xml(versions) -> str:
    return "".join(
        f"<artifactItem><groupId>{c.group_id}</groupId><artifactId>{c.artifact_id}"
        f"</artifactId><version>{c.version}</version><type>{t}</type></artifactItem>"
        for c in versions for t in ("pom", "jar"))


class MavenClient:
    """mvn with a fresh local repository per resolution (seeded with the cached plugin),
    so every artifact, checksum and metadata file comes from the repository under test."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.runs = 0

    @classmethod
    def warmed(cls, workdir: Path) -> "MavenClient":
        """Download the dependency plugin into PLUGIN_CACHE once (from Maven Central)."""
        require_tools("mvn", "java", "javac")
        if not (PLUGIN_CACHE / ".complete").exists():
            project = workdir / "warm"
            project.mkdir(parents=True)
            (project / "pom.xml").write_text(_project_pom(""))
            tmp = PLUGIN_CACHE.with_name(PLUGIN_CACHE.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            proc = _run_mvn(project, tmp, ["copy-dependencies"], timeout=900)
            if proc.returncode != 0:
                skip_or_fail("tools", f"could not fetch {DEPENDENCY_PLUGIN} from Maven "
                                      f"Central:\n{proc.stdout[-3000:]}")
            (tmp / ".complete").touch()
            shutil.rmtree(PLUGIN_CACHE, ignore_errors=True)
            tmp.rename(PLUGIN_CACHE)
        return cls(workdir)

    def resolve(self, url: str, items=(), dependency=None, more_repositories: str = "",
                ) -> Resolved:
        """One mvn run against the repository at url: `items` (Coords: pom and jar of each
        fixed version, dependency:copy) and/or `dependency` ((group, artifact, version or
        range) in a service's pom made of exactly maven.pom_snippet, resolved by
        dependency:copy-dependencies like a build does: pom, jar, checksums, and for a
        range the metadata). `more_repositories`: <repository> elements listed after ours."""
        self.runs += 1
        run = self.workdir / f"run{self.runs}"
        project, local, out = run / "project", run / "m2", run / "out"
        project.mkdir(parents=True)
        shutil.copytree(PLUGIN_CACHE, local)
        body = (maven.pom_snippet(url, _RawCoords(*dependency)) if dependency
                else maven.repository_xml(url))
        body = body.replace("</repositories>", more_repositories + CENTRAL_OFF)
        body += f"""
<build><plugins><plugin>
  <groupId>org.apache.maven.plugins</groupId>
  <artifactId>maven-dependency-plugin</artifactId>
  <version>{DEPENDENCY_PLUGIN.rsplit(':', 1)[1]}</version>
  <executions>
    <execution><id>items</id><configuration><outputDirectory>{out}/items</outputDirectory>
      <artifactItems>{_items_xml(items)}</artifactItems></configuration></execution>
    <execution><id>deps</id><configuration><outputDirectory>{out}/deps</outputDirectory>
      </configuration></execution>
  </executions>
</plugin></plugins></build>"""
        (project / "pom.xml").write_text(_project_pom(body))
        goals = (["copy@items"] if items else []) + (["copy-dependencies@deps"] if dependency
                                                     else [])
        proc = _run_mvn(project, local, goals)

        def files(d: Path) -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in d.iterdir()} if d.exists() else {}
        return Resolved(proc.returncode == 0, proc.stdout + proc.stderr, files(out / "items"),
                        files(out / "deps"), local)


@dataclass(frozen=True)
class _RawCoords:          # a version range is not a valid Coords
    group_id: str
    artifact_id: str
    version: str
