"""repo.mirror (mxbuild/repo/mirror.py) between local directories: a full copy, an
incremental update that reads only what changed, deletions after the source's clean, a
mirror stopped after every write (each state readable, a re-run finishes), refusals.
Against moto and SeaweedFS (and apt in a container): tests/integration/test_repo_mirror.py."""
import shutil

import pytest

from mxbuild.errors import ConfigError, SigningError
from mxbuild.repo import maven, ops
from mxbuild.repo.mirror import MirrorOptions, mirror
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import KEYRING_NAME, Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import Stopped, WriteStop, copy_gnupg_home, make_deb, quick_key
from ..maven_tools import coords, make_jar, make_pom


@pytest.fixture(scope="module")
def signer(tmp_path_factory, signing_key):
    with Signer(copy_gnupg_home(signing_key, tmp_path_factory.mktemp("key") / "gnupg")) as s:
        yield s


class Recording(LocalStorage):
    """A directory that records what was asked of it (reads, lists, writes)."""

    def __init__(self, root):
        super().__init__(root)
        self.calls = []

    def get(self, key):
        self.calls.append(("get", key))
        return super().get(key)

    def download(self, key, dest):
        self.calls.append(("get", key))
        return super().download(key, dest)

    def list(self, prefix=""):
        self.calls.append(("list", prefix))
        return super().list(prefix)

    def _write(self, key, data=None, src=None):
        self.calls.append(("put", key))
        super()._write(key, data, src)

    def keys(self, verb):
        return [k for v, k in self.calls if v == verb]


def publish_debs(storage, signer, tmp_path, names, version="1.0-1", suite="bookworm"):
    publish(storage, signer, [Upload(make_deb(tmp_path / "debs", n, version), suite, "cpu")
                              for n in names])


def apt_readable(storage, keyring) -> list[str]:
    """What apt would trip over: verify's problems except the plain-path files and Release
    pair that an InRelease-last copy updates just before its commit (apt reads InRelease
    and fetches by hash; it never reads them while InRelease is there), and the windows a
    stopped Maven publish leaves too (a version whose jar, copied last, is not there yet;
    metadata whose checksums follow it)."""
    return [p for p in ops.verify(storage, keyring)
            if not any(window in p for window in (
                "differs from InRelease", "Release.gpg: does not verify Release"))
            and not ("/maven/" in p and "publish: re-run it" in p)]


def test_first_copy_is_a_verified_repository_with_a_trace(tmp_path, signer):
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, [f"pkg{i}" for i in range(5)])
    publish_debs(source, signer, tmp_path, ["staged"], suite="bookworm-staging")
    c = coords("1.9.1")
    maven.publish_artifact(source, c, make_jar(tmp_path / "jars", "1.9.1"), make_pom(c))
    source.put("simple/index.html", b"<html>root</html>\n")
    source.put("simple/mxnet-thin/index.html", b"<html>project</html>\n")
    dest = LocalStorage(tmp_path / "mirror")
    keyring = signer.public_keyring()
    result = mirror(source, dest, keyring, MirrorOptions(name="eu-mirror"))
    assert ops.verify(dest, keyring) == []
    assert ops.list_repo(dest, keyring) == ops.list_repo(source, keyring)
    assert sorted(result.suites) == ["bookworm", "bookworm-staging"]
    assert dest.get(KEYRING_NAME)[0] == source.get(KEYRING_NAME)[0]
    assert dest.get("simple/mxnet-thin/index.html")[0] == b"<html>project</html>\n"
    trace = dest.get("project/trace/eu-mirror")[0].decode()
    assert f"Upstream-mirror: {source.describe()}\n" in trace
    inrelease = source.get("dists/bookworm/InRelease")[0]
    import hashlib
    assert f" {hashlib.sha256(inrelease).hexdigest()} bookworm\n" in trace
    assert "Date: " in trace and trace.endswith(" bookworm-staging\n")
    # a second run copies nothing but the trace
    again = mirror(source, dest, keyring, MirrorOptions(name="eu-mirror"))
    assert again.copied == ["project/trace/eu-mirror"] and again.deleted == []


def test_incremental_update_reads_and_copies_only_what_changed(tmp_path, signer):
    source = Recording(tmp_path / "source")
    publish_debs(source, signer, tmp_path, [f"pkg{i}" for i in range(30)])
    dest = Recording(tmp_path / "mirror")
    keyring = signer.public_keyring()
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    publish_debs(source, signer, tmp_path, ["newpkg"])
    source.calls.clear()
    dest.calls.clear()
    result = mirror(source, dest, keyring, MirrorOptions(name="m"))
    pool = [k for k in result.copied if k.startswith("pool/")]
    assert pool == ["pool/cpu/n/newpkg/newpkg_1.0-1_amd64.deb"]
    # no pool file was read but the new one; nothing under pool/ or dists/ was listed
    assert [k for k in source.keys("get") if k.startswith("pool/")] == pool
    assert not [p for p in source.keys("list") + dest.keys("list")
                if p.startswith(("pool", "dists"))]
    # what a publish of one package changes: 1 pool file, 2 × 5 by-hash (Packages{,.gz,.xz},
    # Contents-amd64{,.gz}), 5 plain paths, Release.gpg, Release, InRelease, the audit
    # record and its mark; the list of deletion candidates (the old by-hash files) and the trace
    kinds = {}
    for key in result.copied:
        kind = ("by-hash" if "/by-hash/" in key else key.split("/")[0])
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"pool": 1, "by-hash": 10, "dists": 8, "log": 2, "project": 2}, kinds
    puts = dest.keys("put")       # InRelease, then its commit mark, then the trace
    assert puts[-3] == "dists/bookworm/InRelease" and puts[-2].endswith(".committed")
    assert ops.verify(dest, keyring) == []


def test_deletions_follow_the_sources_clean_and_survive_a_stop(tmp_path, signer):
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["keep", "gone"])
    dest = LocalStorage(tmp_path / "mirror")
    keyring = signer.public_keyring()
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    ops.remove(source, signer, "bookworm", "cpu", "gone", "1.0-1")
    pool_key = "pool/cpu/g/gone/gone_1.0-1_amd64.deb"
    result = mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert result.deleted == [] and pool_key in result.kept   # the source still holds it
    assert dest.exists(pool_key) and ops.verify(dest, keyring) == []
    ops.delete_garbage(source, ops.garbage(source, keyring, grace_seconds=0))
    assert not source.exists(pool_key)
    with pytest.raises(Stopped):
        mirror(source, dest, keyring,
               MirrorOptions(name="m", hook=WriteStop(when=lambda kind: kind == "delete")))
    result = mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert not dest.exists(pool_key) and result.kept == []
    assert ops.verify(dest, keyring) == []
    old_by_hash = {o.key for o in dest.list("dists/") if "/by-hash/" in o.key}
    new_by_hash = {o.key for o in source.list("dists/") if "/by-hash/" in o.key}
    assert old_by_hash == new_by_hash


@pytest.fixture
def gpgv_once(monkeypatch):
    """gpgv run once per distinct input: its verdict is a function of the keyring and the
    signed bytes, and the sweep below asks for the same few verdicts hundreds of times
    (600 gpgv processes; what the sweep tests is the mirror's order of writes)."""
    from mxbuild.repo import sign
    real, seen = sign._gpgv, {}

    def once(keyring, args, data=None, files=None):
        key = (keyring, tuple(args), data, tuple(sorted((files or {}).items())))
        if key not in seen:
            seen[key] = real(keyring, args, data, files)
        return seen[key]
    monkeypatch.setattr(sign, "_gpgv", once)
    return seen


@pytest.mark.seconds
def test_a_mirror_stopped_after_any_write_is_readable_and_a_rerun_finishes(tmp_path, signer,
                                                                           gpgv_once):
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["a", "b"])
    keyring = signer.public_keyring()
    base = LocalStorage(tmp_path / "base")
    mirror(source, base, keyring, MirrorOptions(name="m"))
    # the next state: one package added, one removed and cleaned, a Maven version
    publish_debs(source, signer, tmp_path, ["c"])
    ops.remove(source, signer, "bookworm", "cpu", "b", "1.0-1")
    ops.delete_garbage(source, ops.garbage(source, keyring, grace_seconds=0))
    c = coords("1.9.1")
    maven.publish_artifact(source, c, make_jar(tmp_path / "jars", "1.9.1"), make_pom(c))
    want = ops.list_repo(source, keyring)
    before_or_after = (ops.list_repo(base, keyring).rows(), want.rows())
    kinds = []
    for stop_after in range(1, 200):
        dest = LocalStorage(tmp_path / f"stop{stop_after}")
        shutil.copytree(base.root, dest.root, dirs_exist_ok=True)
        stop = WriteStop(at=stop_after)
        try:
            mirror(source, dest, keyring, MirrorOptions(name="m", workers=1, hook=stop))
            break
        except Stopped:
            kinds.append(stop.writes[-1])
        assert apt_readable(dest, keyring) == [], (stop_after, stop.writes[-1])
        assert ops.list_repo(dest, keyring).rows() in before_or_after, stop_after
        mirror(source, dest, keyring, MirrorOptions(name="m"))
        assert ops.verify(dest, keyring) == [], stop_after
        assert ops.list_repo(dest, keyring) == want
        shutil.rmtree(dest.root)
    assert kinds.index("pool") < kinds.index("by-hash") < kinds.index("log") \
        < kinds.index("InRelease") < kinds.index("delete") < len(kinds), kinds
    assert len(kinds) >= 25, kinds


def test_a_source_signed_by_another_key_is_refused_before_any_write(tmp_path, signer,
                                                                    short_tmp):
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["a"])
    with Signer(quick_key(short_tmp / "other-gnupg")) as other:
        with pytest.raises(SigningError) as info:
            mirror(source, LocalStorage(tmp_path / "mirror"), other.public_keyring())
    assert "refusing to mirror" in info.value.message and "--keyring" in info.value.hint
    assert not any((tmp_path / "mirror").iterdir())


def test_mirroring_a_repository_onto_itself_is_refused(tmp_path, signer):
    source = LocalStorage(tmp_path / "source")
    with pytest.raises(ConfigError):
        mirror(source, LocalStorage(tmp_path / "source"), signer.public_keyring())


def test_large_pool_files_are_streamed_and_not_downloaded_again(tmp_path, signer, monkeypatch):
    from mxbuild.repo import mirror as mirror_mod
    monkeypatch.setattr(mirror_mod, "SMALL", 0)       # every .deb takes the streamed path
    source = Recording(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["a", "b"])
    dest = LocalStorage(tmp_path / "mirror")
    keyring = signer.public_keyring()
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert ops.verify(dest, keyring) == []
    (dest.root / "dists/bookworm/InRelease").unlink()     # the mirror forgets its state
    source.calls.clear()
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert [k for k in source.keys("get") if k.startswith("pool/")] == []
    assert ops.verify(dest, keyring) == []


def test_a_suite_whose_source_is_mid_publish_keeps_its_old_state(tmp_path, signer):
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["a"])
    dest = LocalStorage(tmp_path / "mirror")
    keyring = signer.public_keyring()
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    publish_debs(source, signer, tmp_path, ["b"])
    release = source.get("dists/bookworm/Release")[0]
    source.put("dists/bookworm/Release", b"Origin: stale\n")   # finish() has not run yet
    result = mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert result.skipped and result.skipped[0].startswith("bookworm: ")
    assert [r[2] for r in ops.list_repo(dest, keyring).rows()] == ["a"]
    assert ops.verify(dest, keyring) == []
    source.put("dists/bookworm/Release", release)
    assert mirror(source, dest, keyring, MirrorOptions(name="m")).skipped == []
    assert [r[2] for r in ops.list_repo(dest, keyring).rows()] == ["a", "b"]


def test_the_task_mirrors_and_says_what_it_did(tmp_path, signer):
    from ..conftest import run_cli      # the task in this process (a CLI start costs a second)
    source = LocalStorage(tmp_path / "source")
    publish_debs(source, signer, tmp_path, ["a"])
    ring = tmp_path / "keyring.gpg"
    ring.write_bytes(signer.public_keyring())

    def run(*args):
        return run_cli("repo.mirror", *args)
    proc = run("--from", str(source.root), "--to", str(tmp_path / "mirror"), "--keyring",
               str(ring), "--name", "eu")
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr            # the console writes to stderr
    assert "bookworm: InRelease sha256" in said and "0 deleted" in said
    assert (tmp_path / "mirror/project/trace/eu").is_file()
    proc = run("--from", str(source.root), "--to", str(source.root), "--keyring", str(ring))
    assert proc.returncode != 0 and "are the same repository" in proc.stderr
    assert "fix: " in proc.stderr
