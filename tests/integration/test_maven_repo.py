"""Real Maven (mvn 3.8, maven-dependency-plugin) resolves the thin jar from the Maven
repository mxbuild publishes: from a directory (file://) and from S3 through the anonymous
public URL (moto and SeaweedFS), with checksumPolicy fail — a tampered checksum makes it
fail; 8 concurrent publishers on S3 lose no version; a publish stopped after any of its
writes leaves a repository Maven resolves. Every resolution starts from an empty local
repository (only the plugin is cached, ~/.cache/mxbuild/maven)."""
import hashlib
import subprocess
import threading

import boto3
import pytest

from mxbuild.repo import maven
from mxbuild.repo.s3 import S3Storage, S3Target
from mxbuild.repo.storage import LocalStorage

from ..conftest import CACHE_LONG, CACHE_SHORT
from ..maven_tools import (ARTIFACT, GROUP, PROBE_CLASS, Killed, MavenClient, Recording,
                           compile_probe, coords, make_jar, make_pom, publish_concurrently)
from .loopback import LoopbackServer

BASE = "maven/org/apache/mxnet/mxnet-thin_2.11"


@pytest.fixture(scope="module")
def mvn(tmp_path_factory):
    return MavenClient.warmed(tmp_path_factory.mktemp("mvn"))


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Probe.class, compiled once (javac --release 8)."""
    return compile_probe(tmp_path_factory.mktemp("probe"))


def s3_storage(endpoint, bucket, prefix="repo") -> S3Storage:
    return S3Storage(S3Target.parse(f"s3://{bucket}/{prefix}", endpoint_url=endpoint,
                                    path_style=True))


def publish(storage, tmp_path, probe, version, **kw) -> bool:
    c = coords(version)
    return maven.publish_artifact(storage, c, make_jar(tmp_path / "jars", version, probe),
                                  make_pom(c), **kw)


def jar_name(version: str) -> str:
    return f"{ARTIFACT}-{version}.jar"


def assert_resolves_and_runs(mvn, url, tmp_path, probe, version):
    """A service's pom (repository + dependency) gets exactly the published jar, checked,
    and the class in it runs."""
    got = mvn.resolve(url, dependency=(GROUP, ARTIFACT, version))
    assert got.ok, got.output[-4000:]
    assert got.deps == {jar_name(version): make_jar(tmp_path / "jars", version, probe)
                        .read_bytes()}
    local = got.local_repo / "org/apache/mxnet/mxnet-thin_2.11" / version
    assert (local / f"{ARTIFACT}-{version}.pom").read_bytes() == make_pom(coords(version))
    assert "mxbuild" in (local / "_remote.repositories").read_text()    # from our repository
    jar = tmp_path / "resolved.jar"
    jar.write_bytes(got.deps[jar_name(version)])
    out = subprocess.run(["java", "-cp", str(jar), PROBE_CLASS], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"thin jar probe {version}"


def assert_checksum_failure(got):
    assert not got.ok, "Maven accepted a file whose checksum does not match"
    assert "Checksum validation failed" in got.output, got.output[-4000:]


def test_maven_resolves_the_thin_jar_from_a_directory(mvn, probe, tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    for version in ("1.5.1", "1.10.0", "1.9.1"):
        assert publish(storage, tmp_path, probe, version) is True
    url = maven.repository_url(storage)
    assert url.startswith("file:///")
    assert_resolves_and_runs(mvn, url, tmp_path, probe, "1.9.1")
    newest = mvn.resolve(url, dependency=(GROUP, ARTIFACT, "[1.0,)"))   # reads the metadata
    assert newest.ok, newest.output[-4000:]
    assert list(newest.deps) == [jar_name("1.10.0")]
    # tampered checksums: Maven refuses the file (checksumPolicy fail, from the snippet)
    good = storage.get(f"{BASE}/1.9.1/{ARTIFACT}-1.9.1.jar.sha1")[0]
    storage.put(f"{BASE}/1.9.1/{ARTIFACT}-1.9.1.jar.sha1", b"0" * 40)
    assert_checksum_failure(mvn.resolve(url, dependency=(GROUP, ARTIFACT, "1.9.1")))
    storage.put(f"{BASE}/1.9.1/{ARTIFACT}-1.9.1.jar.sha1", good)
    storage.put(f"{BASE}/maven-metadata.xml.sha1", b"0" * 40)
    assert_checksum_failure(mvn.resolve(url, dependency=(GROUP, ARTIFACT, "[1.0,)")))
    assert publish(storage, tmp_path, probe, "1.9.1") is True     # the re-run repairs it
    assert maven.verify_maven(storage) == []
    assert mvn.resolve(url, dependency=(GROUP, ARTIFACT, "[1.0,)")).ok


def test_maven_resolves_the_thin_jar_from_s3(mvn, probe, s3_server, server_bucket, tmp_path):
    storage = s3_storage(s3_server.endpoint, server_bucket)
    for version in ("1.5.1", "1.9.1"):
        assert publish(storage, tmp_path, probe, version) is True
    assert publish(storage, tmp_path, probe, "1.9.1") is False
    assert maven.verify_maven(storage) == []
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint)

    def head(key):
        return s3.head_object(Bucket=server_bucket, Key=f"repo/{key}")
    v = f"{BASE}/1.9.1/{ARTIFACT}-1.9.1"
    for key, kind, cache in ((f"{v}.jar", "application/java-archive", CACHE_LONG),
                             (f"{v}.pom", "text/xml", CACHE_LONG),
                             (f"{v}.jar.sha1", "text/plain", CACHE_LONG),
                             (f"{BASE}/maven-metadata.xml", "text/xml", CACHE_SHORT),
                             (f"{BASE}/maven-metadata.xml.sha1", "text/plain", CACHE_SHORT)):
        h = head(key)
        assert h["ContentType"].startswith(kind) and h["CacheControl"] == cache, (key, h)
    url = maven.repository_url(storage)
    assert url == f"{s3_server.endpoint}/{server_bucket}/repo/maven"       # anonymous reads
    assert_resolves_and_runs(mvn, url, tmp_path, probe, "1.9.1")
    newest = mvn.resolve(url, dependency=(GROUP, ARTIFACT, "[1.0,)"))
    assert newest.ok and list(newest.deps) == [jar_name("1.9.1")], newest.output[-4000:]
    s3.put_object(Bucket=server_bucket, Key=f"repo/{v}.jar.sha1", Body=b"0" * 40)
    assert_checksum_failure(mvn.resolve(url, dependency=(GROUP, ARTIFACT, "1.9.1")))
    assert any(".jar.sha1: does not match" in p for p in maven.verify_maven(storage))


def test_a_service_gets_its_other_dependencies_past_the_bucket(mvn, probe, s3_server,
                                                               server_bucket, tmp_path):
    """The service's other dependencies live in a repository listed after ours (Central, in
    life): Maven asks the bucket first — a missing key answers 403 when anonymous readers
    may not list (AWS) or 404 — and must go on to the next repository."""
    storage = s3_storage(s3_server.endpoint, server_bucket)
    publish(storage, tmp_path, probe, "1.9.1")
    other = LocalStorage(tmp_path / "other")
    dep = maven.Coords("org.example", "other-lib", "2.0")
    maven.publish_artifact(other, dep, make_jar(tmp_path / "other-jar", "2.0"), make_pom(dep))
    status = _anonymous_status(f"{maven.repository_url(storage)}/org/example/other-lib/2.0/"
                               "other-lib-2.0.pom")
    second = f"""  <repository>
    <id>second</id>
    <url>{maven.repository_url(other)}</url>
    <releases><checksumPolicy>fail</checksumPolicy></releases>
  </repository>
"""
    got = mvn.resolve(maven.repository_url(storage), items=[coords("1.9.1"), dep],
                      more_repositories=second)
    print(f"{s3_server.name}: a missing key answers {status}; Maven went on: {got.ok}")
    assert got.ok, got.output[-4000:]
    assert set(got.items) == {jar_name("1.9.1"), f"{ARTIFACT}-1.9.1.pom", "other-lib-2.0.jar",
                              "other-lib-2.0.pom"}


class ForbiddingServer(LoopbackServer):
    """A directory over http that answers 403 for a missing file, as AWS S3 does for
    anonymous readers without s3:ListBucket (moto and SeaweedFS answer 404)."""

    def __init__(self, root):
        import functools
        import http.server
        answered = self.answered = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def send_error(self, code, message=None, explain=None):
                super().send_error(403 if code == 404 else code, message, explain)

            def log_request(self, code="-", size="-"):
                answered.append((self.path, int(code)))

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_403_for_a_missing_key_does_not_stop_maven(mvn, probe, tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, tmp_path, probe, "1.9.1")
    other = LocalStorage(tmp_path / "other")
    dep = maven.Coords("org.example", "other-lib", "2.0")
    maven.publish_artifact(other, dep, make_jar(tmp_path / "other-jar", "2.0"), make_pom(dep))
    second = f"""  <repository>
    <id>second</id>
    <url>{maven.repository_url(other)}</url>
    <releases><checksumPolicy>fail</checksumPolicy></releases>
  </repository>
"""
    with ForbiddingServer(tmp_path / "repo") as server:
        got = mvn.resolve(f"{server.url}/maven", items=[coords("1.9.1")],
                          dependency=("org.example", "other-lib", "2.0"),
                          more_repositories=second)
    assert got.ok, got.output[-4000:]
    assert ("/maven/org/example/other-lib/2.0/other-lib-2.0.pom", 403) in server.answered
    assert set(got.items) == {jar_name("1.9.1"), f"{ARTIFACT}-1.9.1.pom"}
    assert set(got.deps) == {"other-lib-2.0.jar"}


def _anonymous_status(url: str) -> int:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_eight_concurrent_publishers_on_s3_lose_no_version(mvn, probe, s3_server,
                                                           server_bucket, tmp_path):
    storage = Recording(s3_storage(s3_server.endpoint, server_bucket),
                        barrier=threading.Barrier(8))
    versions = [f"1.9.{i}" for i in range(8)]
    jars = {v: make_jar(tmp_path / "jars", v, probe) for v in versions}
    assert publish_concurrently(storage, jars, 300) == []
    print(f"{s3_server.name}: 8 publishers, {storage.conflicts} lost races")
    assert storage.conflicts >= 7, "the publishers never collided: the test proves nothing"
    meta = maven.parse_metadata(storage.get(f"{BASE}/maven-metadata.xml")[0], "test")
    assert meta.versions == tuple(versions) and meta.release == "1.9.7"
    assert maven.verify_maven(storage) == []
    newest = mvn.resolve(maven.repository_url(storage), dependency=(GROUP, ARTIFACT, "[1.0,)"))
    assert newest.ok and list(newest.deps) == [jar_name("1.9.7")], newest.output[-4000:]


def test_a_publish_stopped_after_any_write_leaves_a_repository_maven_resolves(
        mvn, probe, moto_endpoint, s3_bucket, tmp_path):
    """On S3 (moto; ~2-3 min: one mvn run per write), after each of the 15 writes of
    publishing 1.9.1 next to 1.5.1: Maven resolves 1.5.1, and 1.9.1 as soon as its jar is
    there; the newest of a range is 1.5.1 or 1.9.1 — except right after the metadata
    commit, before its .sha1 is rewritten, where a range fails its checksum (the window
    the re-run closes). The re-run leaves verify_maven clean. (The same stops on a
    directory, without Maven: tests/unit/test_maven_repo.py.)"""
    old, new = coords("1.5.1"), coords("1.9.1")
    positions, window = 0, []
    for kill_after in range(1, 40):
        storage = s3_storage(moto_endpoint, s3_bucket, f"kill{kill_after}")
        publish(storage, tmp_path, probe, "1.5.1")
        try:
            publish(Recording(storage, kill_after=kill_after), tmp_path, probe, "1.9.1")
            break                                   # fewer writes than kill_after: all done
        except Killed:
            positions += 1
        url = maven.repository_url(storage)
        has_new = storage.exists(new.key("jar"))
        meta_bytes = storage.get(f"{BASE}/maven-metadata.xml")[0]
        listed = maven.parse_metadata(meta_bytes, "test").versions
        stale = storage.get(f"{BASE}/maven-metadata.xml.sha1")[0] != \
            hashlib.sha1(meta_bytes).hexdigest().encode()
        items = [old, new] if has_new else [old]
        got = mvn.resolve(url, items=items, dependency=(GROUP, ARTIFACT, "[1.0,)"))
        if stale:
            window.append(kill_after)
            assert_checksum_failure(got)
            got = mvn.resolve(url, items=items)          # fixed versions still resolve
            assert got.ok, (kill_after, got.output[-4000:])
        else:
            assert got.ok, (kill_after, got.output[-4000:])
            assert list(got.deps) == [jar_name(listed[-1])], kill_after
        assert set(got.items) == {f"{ARTIFACT}-{c.version}.{e}" for c in items
                                  for e in ("jar", "pom")}, kill_after
        publish(storage, tmp_path, probe, "1.9.1")                          # the re-run
        assert maven.verify_maven(storage) == [], kill_after
    assert positions == 15
    assert window == [11], "the metadata's .sha1 is written right after its commit"
    newest = mvn.resolve(maven.repository_url(storage), dependency=(GROUP, ARTIFACT, "[1.0,)"))
    assert newest.ok and list(newest.deps) == [jar_name("1.9.1")], newest.output[-4000:]
