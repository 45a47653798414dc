"""The Maven repository of the thin jar (mxbuild/repo/maven.py) on a local directory: layout
and checksums, Maven's version order (checked against the ComparableVersion of the Maven
installed here), create-only versions, compare-and-swap of maven-metadata.xml under 8
concurrent publishers, a publisher stopped after every write, verify. Real Maven resolves
from it in tests/integration/test_maven_repo.py."""
import hashlib
import itertools
import re
import subprocess
import threading
from pathlib import Path

import pytest

from mxbuild.errors import MxbuildError, PoolConflictError, RepoError
from mxbuild.repo import maven, ops
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.s3 import cache_control, content_type
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import CACHE_LONG, CACHE_SHORT, copy_gnupg_home, make_deb
from ..maven_tools import (ARTIFACT, GROUP, Killed, Recording, coords, make_jar, make_pom,
                           maven_jar_with, publish_concurrently)

NOW = 1795000000.0      # lastUpdated 20261118110640 (UTC)
BASE = "maven/org/apache/mxnet/mxnet-thin_2.11"


def publish_version(storage, tmp_path, version, **kw) -> bool:
    c = coords(version)
    return maven.publish_artifact(storage, c, make_jar(tmp_path / "jars", version), make_pom(c),
                                  **kw)


def metadata(storage) -> maven.Metadata:
    return maven.parse_metadata(storage.get(f"{BASE}/maven-metadata.xml")[0], "test")


def test_layout_and_checksum_files_are_maven_centrals(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    assert publish_version(storage, tmp_path, "1.9.1", now=NOW) is True
    jar = make_jar(tmp_path / "jars", "1.9.1").read_bytes()
    pom = make_pom(coords("1.9.1"))
    keys = {o.key for o in storage.list("maven/")}
    names = [f"1.9.1/mxnet-thin_2.11-1.9.1.{e}{s}" for e in ("jar", "pom")
             for s in ("", ".sha1", ".md5", ".sha256", ".sha512")]
    names += [f"maven-metadata.xml{s}" for s in ("", ".sha1", ".md5", ".sha256", ".sha512")]
    assert keys == {f"{BASE}/{n}" for n in names}
    for name, data in (("1.9.1/mxnet-thin_2.11-1.9.1.jar", jar),
                       ("1.9.1/mxnet-thin_2.11-1.9.1.pom", pom)):
        assert storage.get(f"{BASE}/{name}")[0] == data
        for algo in ("sha1", "md5", "sha256", "sha512"):
            # the bare hex digest, no file name, no newline
            assert storage.get(f"{BASE}/{name}.{algo}")[0] == \
                hashlib.new(algo, data).hexdigest().encode()
    text = storage.get(f"{BASE}/maven-metadata.xml")[0]
    assert text == b"""<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>org.apache.mxnet</groupId>
  <artifactId>mxnet-thin_2.11</artifactId>
  <versioning>
    <latest>1.9.1</latest>
    <release>1.9.1</release>
    <versions>
      <version>1.9.1</version>
    </versions>
    <lastUpdated>20261118110640</lastUpdated>
  </versioning>
</metadata>
"""
    assert storage.get(f"{BASE}/maven-metadata.xml.sha1")[0] == \
        hashlib.sha1(text).hexdigest().encode()
    assert maven.verify_maven(storage) == []
    assert maven.is_published(storage, coords("1.9.1"), make_jar(tmp_path / "jars", "1.9.1"),
                              pom)


def test_versions_are_listed_in_maven_order_with_the_newest_as_release(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    for version in ("1.10.0", "1.5.1", "1.9.1", "1.9.1-rc1", "1.6.0"):
        publish_version(storage, tmp_path, version)
    meta = metadata(storage)
    assert meta.versions == ("1.5.1", "1.6.0", "1.9.1-rc1", "1.9.1", "1.10.0")
    assert meta.latest == meta.release == "1.10.0"
    assert re.fullmatch(r"20\d{12}", meta.last_updated)
    assert [str(c) for c in maven.list_artifacts(storage)] == [
        f"{GROUP}:{ARTIFACT}:{v}" for v in meta.versions]


# Simple forms we publish and the qualifier rules around them.
ORDERED = ["1.0-alpha1", "1.0-beta", "1.0-rc1", "1.0-SNAPSHOT", "1.0", "1.0-sp1", "1.0.1",
           "1.5.1", "1.6.0", "1.9.1-rc1", "1.9.1", "1.9.1-1", "1.9.1.1", "1.10.0", "2",
           "10.0"]
CORPUS = ORDERED + ["1.0.0", "1", "1.0-ga", "1.0-final", "1.0.release", "1.0-cr1", "1.0-a1",
                    "1.0-foo", "1.0.0.X1", "1.0.0-X2", "1.x", "1.9.1.post0", "1.9.1+cu112",
                    "1.9.1_2", "2.0-1", "2.0.0.RC1", "2.0.0-RC1", "1-0.1", "01.02",
                    "1.0-alpha-1.1", "123456789012", "12345678901234567890", "1..2"]


def test_version_order_follows_maven():
    assert maven.maven_sorted(reversed(ORDERED)) == ORDERED
    assert maven.compare_versions("1.10.0", "1.10") == 0        # trailing zeros drop
    assert maven.compare_versions("1.0-ga", "1") == 0


def test_version_order_matches_the_comparable_version_of_the_installed_maven():
    """Every ordered pair of the corpus, against maven-artifact's ComparableVersion main()."""
    jar = maven_jar_with("org.apache.maven.artifact.versioning.ComparableVersion")
    pairs = list(itertools.permutations(CORPUS, 2))
    out = subprocess.run(["java", "-cp", str(jar),
                          "org.apache.maven.artifact.versioning.ComparableVersion",
                          *[v for pair in pairs for v in pair]],
                         capture_output=True, text=True, check=True).stdout
    verdicts = [line.split() for line in out.splitlines() if line.startswith("   ")][0::2]
    assert len(verdicts) == len(pairs)
    wrong = [(a, b, op) for (a, b), (_, op, _) in zip(pairs, verdicts, strict=True)
             if maven.compare_versions(a, b) != {"<": -1, "==": 0, ">": 1}[op]]
    assert wrong == []


def test_republishing_the_same_artifact_writes_nothing(tmp_path):
    storage = Recording(LocalStorage(tmp_path / "repo"))
    assert publish_version(storage, tmp_path, "1.9.1") is True
    assert len(storage.writes) == 15          # 10 version files, metadata, 4 checksums
    assert storage.writes[-5].endswith("maven-metadata.xml")
    before = {o.key: storage.get(o.key)[0] for o in storage.list("maven/")}
    storage.calls.clear()
    assert publish_version(storage, tmp_path, "1.9.1") is False
    assert storage.calls == []                # not even a put_new that turns out a no-op
    assert {o.key: storage.get(o.key)[0] for o in storage.list("maven/")} == before


def test_the_version_is_written_checksums_first_and_the_jar_last(tmp_path):
    storage = Recording(LocalStorage(tmp_path / "repo"))
    publish_version(storage, tmp_path, "1.9.1")
    order = [k.rsplit("/", 1)[1].replace("mxnet-thin_2.11-1.9.1.", "") for k in storage.writes]
    assert order == ["pom.sha1", "pom.md5", "pom.sha256", "pom.sha512", "pom",
                     "jar.sha1", "jar.md5", "jar.sha256", "jar.sha512", "jar",
                     "maven-metadata.xml", "maven-metadata.xml.sha1", "maven-metadata.xml.md5",
                     "maven-metadata.xml.sha256", "maven-metadata.xml.sha512"]


@pytest.mark.parametrize("what", ["jar", "pom"])
def test_other_bytes_under_a_published_version_are_refused_before_any_write(tmp_path, what):
    storage = Recording(LocalStorage(tmp_path / "repo"))
    publish_version(storage, tmp_path, "1.9.1")
    before = {o.key: storage.get(o.key)[0] for o in storage.list("maven/")}
    storage.calls.clear()
    c = coords("1.9.1")
    jar, pom = make_jar(tmp_path / "jars", "1.9.1"), make_pom(c)
    if what == "jar":
        jar = make_jar(tmp_path / "other", "1.9.1-other")
    else:
        pom = make_pom(c, "\n  <description>rebuilt</description>")
    with pytest.raises(PoolConflictError) as err:
        maven.publish_artifact(storage, c, jar, pom)
    assert f"mxnet-thin_2.11-1.9.1.{what}" in err.value.message
    assert "already exists with different content" in err.value.message
    assert "never changes" in err.value.hint and "new version" in err.value.hint
    assert storage.calls == []
    assert {o.key: storage.get(o.key)[0] for o in storage.list("maven/")} == before


def _bad_jar(tmp_path) -> Path:
    path = tmp_path / "not-a.jar"
    path.write_bytes(b"this is not a zip archive")
    return path


BAD_INPUT = {
    # name: (coords args, jar maker, pom maker, words the message must hold, words of the fix)
    "groupId with a slash": (("org/apache", ARTIFACT, "1.9.1"), None, None,
                             ["groupId", "'org/apache'", "'/'"], ["letters, digits"]),
    "artifactId with a space": ((GROUP, "mxnet thin", "1.9.1"), None, None,
                                ["artifactId", "' '"], ["letters, digits"]),
    "groupId with empty name": (("org..apache", ARTIFACT, "1.9.1"), None, None,
                                ["groupId", "'org..apache'"], ["single dots"]),
    "version with a colon": ((GROUP, ARTIFACT, "1.9:1"), None, None,
                             ["version", "':'"], ["e.g. 1.9.1"]),
    "version escaping the directory": ((GROUP, ARTIFACT, "../1.9.1"), None, None,
                                       ["version", "'/'"], ["starts with a letter or digit"]),
    "snapshot version": ((GROUP, ARTIFACT, "1.9.1-SNAPSHOT"), None, None,
                         ["SNAPSHOT"], ["releases only"]),
    "jar that is not a zip": ((GROUP, ARTIFACT, "1.9.1"), _bad_jar, None,
                              ["not-a.jar", "not a jar"], ["thin jar"]),
    "pom of another version": ((GROUP, ARTIFACT, "1.9.1"), None,
                               lambda: make_pom(coords("1.9.0")),
                               ["disagrees", "version '1.9.0' (expected '1.9.1')"],
                               ["coordinates the pom declares"]),
    "pom of another artifact": ((GROUP, ARTIFACT, "1.9.1"), None,
                                lambda: make_pom(coords("1.9.1", artifact="mxnet-full_2.11")),
                                ["artifactId 'mxnet-full_2.11' (expected 'mxnet-thin_2.11')"],
                                ["fix the pom"]),
    "pom of another group": ((GROUP, ARTIFACT, "1.9.1"), None,
                             lambda: make_pom(coords("1.9.1", group="org.example")),
                             ["groupId 'org.example' (expected 'org.apache.mxnet')"],
                             ["fix the pom"]),
    "pom with a parent": ((GROUP, ARTIFACT, "1.9.1"), None,
                          lambda: make_pom(coords("1.9.1"), "\n  <parent><groupId>org.apache.mxnet"
                                           "</groupId><artifactId>mxnet-parent</artifactId>"
                                           "<version>1.9.1</version></parent>"),
                          ["<parent>"], ["flattened pom"]),
    "pom that is not XML": ((GROUP, ARTIFACT, "1.9.1"), None, lambda: b"<project>",
                            ["not well-formed XML"], ["Maven 4.0.0"]),
    "pom of a pom packaging": ((GROUP, ARTIFACT, "1.9.1"), None,
                               lambda: make_pom(coords("1.9.1")).replace(
                                   b"<packaging>jar</packaging>", b"<packaging>pom</packaging>"),
                               ["packaging 'pom'"], ["packaging jar"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_naming_the_problem_and_nothing_is_written(tmp_path, case):
    args, jar_maker, pom_maker, words, fix_words = BAD_INPUT[case]
    storage = Recording(LocalStorage(tmp_path / "repo"))
    with pytest.raises(MxbuildError) as err:
        c = maven.Coords(*args)
        jar = jar_maker(tmp_path) if jar_maker else make_jar(tmp_path / "jars", "1.9.1")
        pom = pom_maker() if pom_maker else make_pom(c)
        maven.publish_artifact(storage, c, jar, pom)
    assert isinstance(err.value, RepoError)
    for word in words:
        assert word in err.value.message, (word, err.value.message)
    for word in fix_words:
        assert word in err.value.hint, (word, err.value.hint)
    assert storage.calls == [] and storage.list("") == []


def test_coordinates_parse_from_text():
    assert maven.Coords.parse("org.apache.mxnet:mxnet-thin_2.11:1.9.1") == coords("1.9.1")
    with pytest.raises(RepoError, match="not groupId:artifactId:version"):
        maven.Coords.parse("org.apache.mxnet:mxnet-thin_2.11")


def test_eight_concurrent_publishers_lose_no_version(tmp_path):
    """All eight read the same (missing) metadata and list before any commits (a barrier
    in front of each one's first put_cas): seven lose the race, merge again, and every
    version ends up listed."""
    storage = Recording(LocalStorage(tmp_path / "repo"), barrier=threading.Barrier(8))
    versions = [f"1.9.{i}" for i in range(8)]
    jars = {v: make_jar(tmp_path / "jars", v) for v in versions}
    assert publish_concurrently(storage, jars, 120) == []
    assert storage.conflicts >= 7, "the publishers never collided: the test proves nothing"
    assert metadata(storage).versions == tuple(versions)
    assert metadata(storage).release == "1.9.7"
    assert maven.verify_maven(storage) == []


def _state(storage) -> dict[str, bytes]:
    return {o.key: storage.get(o.key)[0] for o in storage.list("maven/")}


def test_a_publisher_stopped_after_any_write_leaves_old_or_new_state_and_a_rerun_completes(
        tmp_path):
    jars = tmp_path / "jars"
    old, new = coords("1.5.1"), coords("1.9.1")
    positions = 0
    for kill_after in range(1, 40):
        storage = LocalStorage(tmp_path / f"repo{kill_after}")
        publish_version(storage, tmp_path, "1.5.1")
        old_state = _state(storage)
        killing = Recording(storage, kill_after=kill_after)
        try:
            publish_version(killing, tmp_path, "1.9.1")
            break                                  # fewer writes than kill_after: all done
        except Killed:
            positions += 1
        state = _state(storage)
        # the old version and its files are untouched, whatever happened
        assert {k: v for k, v in state.items() if "/1.5.1/" in k} == \
            {k: v for k, v in old_state.items() if "/1.5.1/" in k}
        meta = metadata(storage)
        assert meta.versions in (("1.5.1",), ("1.5.1", "1.9.1")), kill_after
        # a reader that finds the new jar finds its pom and every checksum (old or new)
        if storage.exists(new.key("jar")):
            assert all(storage.exists(new.key(e + s)) for e in ("jar", "pom")
                       for s in ("", ".sha1", ".md5", ".sha256", ".sha512"))
        else:
            assert meta.versions == ("1.5.1",)
        problems = maven.verify_maven(storage)
        assert all("re-run" in p for p in problems), problems
        # the re-run writes exactly when something was left to do
        assert publish_version(storage, tmp_path, "1.9.1") is bool(problems), kill_after
        assert maven.verify_maven(storage) == [], kill_after
        assert metadata(storage).versions == ("1.5.1", "1.9.1")
        rerun = Recording(storage)
        assert publish_version(rerun, tmp_path, "1.9.1") is False and rerun.calls == []
        assert maven.is_published(storage, new, make_jar(jars, "1.9.1"), make_pom(new))
        assert maven.is_published(storage, old, make_jar(jars, "1.5.1"), make_pom(old))
    assert positions == 15


def test_stale_metadata_checksums_are_reported_and_repaired_by_a_rerun(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    publish_version(storage, tmp_path, "1.9.1")
    storage.put(f"{BASE}/maven-metadata.xml.sha1", b"0" * 40)
    storage.delete(f"{BASE}/maven-metadata.xml.md5")
    c = coords("1.9.1")
    assert not maven.is_published(storage, c, make_jar(tmp_path / "jars", "1.9.1"), make_pom(c))
    problems = maven.verify_maven(storage)
    assert problems == [
        f"{storage.describe()}/{BASE}/maven-metadata.xml.sha1: does not match "
        "maven-metadata.xml (an unfinished publish: re-run it)",
        f"{storage.describe()}/{BASE}/maven-metadata.xml.md5: missing (an unfinished publish: "
        "re-run it)"]
    assert publish_version(storage, tmp_path, "1.9.1") is True
    assert maven.verify_maven(storage) == []


def test_verify_names_every_problem(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    for version in ("1.5.1", "1.9.1", "1.10.0"):
        publish_version(storage, tmp_path, version)
    where = storage.describe()
    storage.put(f"{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.jar.sha1", b"f" * 40)     # tampered
    storage.delete(f"{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.pom.sha512")           # lost
    storage.delete(f"{BASE}/1.10.0/mxnet-thin_2.11-1.10.0.jar")                # listed, gone
    unlisted = coords("2.0.0")                                                # not listed
    for ext in ("pom", "jar"):
        data = make_pom(unlisted) if ext == "pom" else \
            make_jar(tmp_path / "jars", "2.0.0").read_bytes()
        storage.put(unlisted.key(ext), data)
        for algo in ("sha1", "md5", "sha256", "sha512"):
            storage.put(unlisted.key(f"{ext}.{algo}"), hashlib.new(algo, data).hexdigest().encode())
    problems = maven.verify_maven(storage)
    assert sorted(problems) == sorted([
        f"{where}/{BASE}/maven-metadata.xml: lists 1.10.0, whose jar or pom is missing "
        "(restore it, or re-run its publish)",
        f"{where}/{BASE}/1.10.0/mxnet-thin_2.11-1.10.0.jar: missing (an interrupted publish: "
        "re-run it)",
        f"{where}/{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.jar.sha1: does not match "
        "mxnet-thin_2.11-1.9.1.jar (restore them from the published file's build)",
        f"{where}/{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.pom.sha512: missing (restore them from "
        "the published file's build)",
        f"{where}/{BASE}/2.0.0: not listed by {BASE}/maven-metadata.xml (an interrupted "
        "publish: re-run it)"])
    storage.put(f"{BASE}/maven-metadata.xml", b"<metadata><versioning>")
    assert any("maven-metadata.xml: not well-formed XML" in p
               for p in maven.verify_maven(storage))


@pytest.fixture(scope="module")
def signer(tmp_path_factory, signing_key):
    with Signer(copy_gnupg_home(signing_key, tmp_path_factory.mktemp("key") / "gnupg")) as s:
        yield s


def test_repo_verify_and_list_include_the_maven_repository(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.9.1-1"), "bookworm",
                                     "cpu")])
    keyring = signer.public_keyring()
    assert ops.verify(storage, keyring) == []            # no maven/: as before
    assert ops.list_repo(storage, keyring).artifacts == []
    publish_version(storage, tmp_path, "1.9.1")
    assert ops.verify(storage, keyring) == []
    assert ops.list_repo(storage, keyring).artifacts == [coords("1.9.1")]
    storage.put(f"{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.jar.md5", b"0" * 32)
    assert ops.verify(storage, keyring) == [
        f"{storage.describe()}/{BASE}/1.9.1/mxnet-thin_2.11-1.9.1.jar.md5: does not match "
        "mxnet-thin_2.11-1.9.1.jar (restore them from the published file's build)"]


def test_s3_content_type_and_cache_control_of_maven_files():
    v = f"{BASE}/1.9.1/mxnet-thin_2.11-1.9.1"
    assert content_type(f"{v}.jar", None) == "application/java-archive"
    assert content_type(f"{v}.pom", None) == "text/xml"
    assert content_type(f"{BASE}/maven-metadata.xml", None) == "text/xml"
    for key in (f"{v}.jar.sha1", f"{v}.pom.sha512", f"{BASE}/maven-metadata.xml.md5"):
        assert content_type(key, b"0123abcd").startswith("text/plain")
    for key in (f"{v}.jar", f"{v}.pom", f"{v}.jar.sha1", f"{v}.pom.sha256"):
        assert cache_control(key) == CACHE_LONG, key
    for key in (f"{BASE}/maven-metadata.xml", f"{BASE}/maven-metadata.xml.sha1"):
        assert cache_control(key) == CACHE_SHORT, key


def test_the_repository_url_consumers_use(tmp_path):
    from mxbuild.repo.s3 import S3Storage, S3Target
    local = LocalStorage(tmp_path / "repo")
    assert maven.repository_url(local) == (tmp_path / "repo").resolve().as_uri() + "/maven"
    s3 = S3Storage(S3Target.parse("s3://bucket/apt"), client=object())
    assert maven.repository_url(s3) == "https://bucket.s3.amazonaws.com/apt/maven"
