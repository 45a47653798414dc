"""Key rotation, expiry, retention and the audit log on a local repository, with real
.debs (host dpkg-deb) and real signatures (gpg/gpgv). apt itself reads these in
tests/integration/test_repo_trust_apt.py."""
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import time

import pytest

from mxbuild.errors import ConfigError, SigningError
from mxbuild.log import log
from mxbuild.repo import audit, index, keys, ops, retention
from mxbuild.repo.publish import Upload, publish, read_state, update_suite
from mxbuild.repo.sign import (KEY_UID, KEYRING_NAME, Signer, check_clearsigned,
                               check_detached, keyring_keys)
from mxbuild.repo.storage import LocalStorage

from ..conftest import Stopped, WriteStop, make_deb, stop_gnupg
from ..require import skip_or_fail

# every GnuPG home of these tests lies under tmp_path: its agents stop after each test
pytestmark = pytest.mark.usefixtures("gnupg_stopped")


def gen_key(home, uid, expire="never", faked_time=None) -> str:
    """A quick key for tests: Ed25519 is made at once, RSA takes the agent a second or more
    (the product makes RSA 4096: test_signer_makes_an_rsa_4096_key_…)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home), "--passphrase", ""]
    if faked_time:
        gpg += ["--faked-system-time", faked_time]
    before = set(Signer(home)._secret_fprs())
    subprocess.run([*gpg, "--quick-gen-key", uid, "ed25519", "sign", expire], check=True,
                   capture_output=True)
    return (set(Signer(home)._secret_fprs()) - before).pop()


def export(home, *fprs) -> bytes:
    return Signer(home).with_keys(fprs).own_keyring()


@pytest.fixture(scope="module")
def two_keys_made(tmp_path_factory):
    """A GnuPG home with an old and a new key, made once: the old key's creation time is
    injected (2024-01-01), so the new one is the newest (the default signer) without
    waiting for the clock."""
    home = tmp_path_factory.mktemp("two-keys") / "gnupg"
    old = gen_key(home, "old <old@example.org>", faked_time="20240101T000000")
    new = gen_key(home, "new <new@example.org>")
    stop_gnupg(home)
    return home, old, new


@pytest.fixture
def two_keys(tmp_path, two_keys_made):
    """A copy of that home for one test (tests add keys and sign)."""
    made, old, new = two_keys_made
    home = tmp_path / "gnupg"
    shutil.copytree(made, home, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#lk*"))
    return home, old, new


def suite_signers(storage, keyring: bytes, codename="bookworm"):
    inrelease = storage.get(f"dists/{codename}/InRelease")[0]
    release = storage.get(f"dists/{codename}/Release")[0]
    signature = storage.get(f"dists/{codename}/Release.gpg")[0]
    return check_clearsigned(inrelease, keyring), check_detached(release, signature, keyring)


def test_rotation_overlap_then_retire(tmp_path, two_keys):
    home, old, new = two_keys
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, Signer(home, old), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                "bookworm", "cpu")])
    assert [k.fingerprint for k in keyring_keys(storage.get(KEYRING_NAME)[0])] == [old]
    ring_old, ring_new = export(home, old), export(home, new)

    added, suites = keys.rotate(storage, Signer(home), new)
    assert (added, suites) == (new, ["bookworm"])
    assert {k.fingerprint for k in keyring_keys(storage.get(KEYRING_NAME)[0])} == {old, new}
    for ring, fpr in ((ring_old, old), (ring_new, new)):
        inrelease, release_gpg = suite_signers(storage, ring)
        assert inrelease.ok and inrelease.good == {fpr}, inrelease
        assert release_gpg.ok and release_gpg.good == {fpr}, release_gpg
    # a publish during the overlap signs with both (the default signer is the new key)
    publish(storage, Signer(home), [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"),
                                           "bookworm", "cpu")])
    assert suite_signers(storage, ring_old)[0].good == {old}
    assert suite_signers(storage, ring_new)[0].good == {new}
    assert ops.verify(storage, storage.get(KEYRING_NAME)[0]) == []

    assert keys.retire(storage, Signer(home), old) == ["bookworm"]
    assert [k.fingerprint for k in keyring_keys(storage.get(KEYRING_NAME)[0])] == [new]
    inrelease, release_gpg = suite_signers(storage, ring_old)
    assert not inrelease.ok and not release_gpg.ok
    assert suite_signers(storage, ring_new)[0].good == {new}
    assert ops.verify(storage, ring_new) == []
    rows = ops.list_repo(storage, ring_new).rows()
    assert [r[3] for r in rows] == ["1.0-1", "2.0-1"]
    actions = [d["action"] for d in audit.read_records(storage, "bookworm").values()]
    assert sorted(actions) == ["publish", "publish", "retire-key", "rotate-key"]


def test_a_publisher_that_read_the_old_keyring_signs_with_the_new_set(tmp_path, two_keys):
    home, old, new = two_keys
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, Signer(home, old), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                "bookworm", "cpu")])
    stale = keys.signing_for(storage, Signer(home, old))      # before the rotation
    keys.rotate(storage, Signer(home), new)
    deb = make_deb(tmp_path, "libmxnet", "3.0-1")
    entry = index.deb_entry(deb, "cpu")
    storage.put_new(entry["Filename"], src=deb)
    update_suite(storage, stale.signer, "bookworm",
                 {"cpu": lambda existing: index.merge(existing, [entry])}, stale.keyring)
    assert suite_signers(storage, export(home, new))[0].good == {new}
    assert suite_signers(storage, export(home, old))[0].good == {old}
    assert ops.verify(storage, storage.get(KEYRING_NAME)[0]) == []


def test_rotation_bad_input_changes_nothing(tmp_path, two_keys):
    home, old, new = two_keys
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, Signer(home, old), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                "bookworm", "cpu")])
    before = {o.key: storage.get(o.key)[0] for o in storage.list()}
    with pytest.raises(ConfigError, match="only signing key") as info:
        keys.retire(storage, Signer(home), old)
    assert "repo.rotate-key" in info.value.hint
    with pytest.raises(ConfigError, match="not a key of"):
        keys.retire(storage, Signer(home), new)
    with pytest.raises(ConfigError, match="already signs"):
        keys.rotate(storage, Signer(home), old)
    with pytest.raises(SigningError, match="no such secret key"):
        keys.rotate(storage, Signer(home), "0" * 40)
    with pytest.raises(ConfigError, match="nothing is published"):
        keys.rotate(LocalStorage(tmp_path / "empty"), Signer(home), new)
    assert {o.key: storage.get(o.key)[0] for o in storage.list()} == before


def test_a_keyring_that_is_not_a_keyring_is_named(tmp_path):
    with pytest.raises(SigningError) as info:
        keyring_keys(b"this is not a keyring\n", "junk.gpg")
    assert "junk.gpg is not an OpenPGP keyring" in info.value.message
    assert "gpg --export" in info.value.hint


def test_the_secret_key_listing_follows_every_change_another_process_makes(tmp_path):
    """Signer lists a home's secret keys again only when its key files changed: a key
    made, given a new expiry or deleted by another gpg process is seen at once."""
    home = tmp_path / "gnupg"
    signer = Signer(home)
    first = gen_key(home, "first <first@example.org>")
    assert signer._secret_fprs() == [first]
    second = gen_key(home, "second <second@example.org>")
    assert signer._secret_fprs() == [first, second]
    assert signer.key_info(second).expires is None              # gen_key: never expires
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home), "--yes"]
    subprocess.run([*gpg, "--quick-set-expire", second, "2d"], check=True, capture_output=True)
    now = dt.datetime.now(dt.timezone.utc)
    expires = signer.key_info(second).expires
    assert expires is not None and \
        now + dt.timedelta(days=2, minutes=-5) < expires <= now + dt.timedelta(days=2, minutes=5)
    subprocess.run([*gpg, "--delete-secret-and-public-keys", first], check=True,
                   capture_output=True)
    assert signer._secret_fprs() == [second]
    assert signer.key_info(first) is None


@pytest.mark.seconds
def test_signer_makes_an_rsa_4096_key_that_never_expires_on_first_use(short_tmp):
    # RSA: xenial's gpgv 1.4 verifies no Ed25519 signature (the tests' quick keys are)
    with Signer(short_tmp / "gnupg") as signer:
        fingerprint = signer.fingerprint
        listing = subprocess.run(["gpg", "--homedir", str(signer.home), "--with-colons",
                                  "--list-secret-keys"], capture_output=True, text=True,
                                 check=True).stdout
        (key,) = signer.secret_keys()
    sec = next(line.split(":") for line in listing.splitlines() if line.startswith("sec:"))
    assert (sec[2], sec[3]) == ("4096", "1")              # length, algorithm 1 = RSA
    assert key.fingerprint == fingerprint and key.expires is None and key.uid == KEY_UID


def test_a_gnupg_home_too_deep_for_the_agent_socket_is_named_with_the_fix(short_tmp):
    home = short_tmp / ("deep-workspace-" * 6) / "gnupg"    # a long Jenkins workspace, say
    home.mkdir(parents=True, mode=0o700)
    socket_path = subprocess.run(["gpgconf", "--homedir", str(home), "--list-dirs",
                                  "agent-socket"], capture_output=True, text=True).stdout
    if not socket_path.startswith(str(home)):
        skip_or_fail("tools", f"gpg puts this home's sockets elsewhere ({socket_path.strip()}): "
                     "no socket path to overflow")
    with Signer(home) as signer, pytest.raises(SigningError) as info:
        signer.fingerprint                                   # makes a key: needs the agent
    assert f"gpg-agent cannot start for the GnuPG home {home}" in info.value.message
    assert "more than a Unix socket allows (107)" in info.value.message
    assert "MXBUILD_GNUPGHOME" in info.value.hint


def test_missing_secret_of_a_repository_key_is_refused(tmp_path, two_keys):
    home, old, new = two_keys
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, Signer(home, old), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                "bookworm", "cpu")])
    keys.rotate(storage, Signer(home), new)
    other = tmp_path / "only-old"
    other.mkdir(mode=0o700)
    secret = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--export-secret-keys",
                             old], check=True, capture_output=True).stdout
    subprocess.run(["gpg", "--batch", "--homedir", str(other), "--import"], input=secret,
                   check=True, capture_output=True)
    before = storage.get("dists/bookworm/InRelease")[0]
    with pytest.raises(SigningError, match="secret key is not in") as info:
        publish(storage, Signer(other), [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"),
                                                "bookworm", "cpu")])
    assert "both keys are needed" in info.value.hint
    assert storage.get("dists/bookworm/InRelease")[0] == before


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_expiring_key_warns_and_expired_key_is_refused(tmp_path):
    home = tmp_path / "gnupg"
    soon = gen_key(home, "soon <soon@example.org>", expire="30d")
    storage = LocalStorage(tmp_path / "repo")
    captured = Captured()
    log.addHandler(captured)
    try:
        publish(storage, Signer(home, soon), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                     "bookworm", "cpu")])
    finally:
        log.removeHandler(captured)
    assert any(soon in line and "expires on" in line and "rotate" in line
               for line in captured.lines), captured.lines

    home2 = tmp_path / "gnupg2"
    dead = gen_key(home2, "dead <dead@example.org>", expire="1y", faked_time="20200101T000000")
    storage2 = LocalStorage(tmp_path / "repo2")
    with pytest.raises(SigningError, match="expired on 2020-12-31") as info:
        publish(storage2, Signer(home2, dead), [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                                       "bookworm", "cpu")])
    assert "repo.rotate-key" in info.value.hint and "--quick-set-expire" in info.value.hint
    assert storage2.list() == []                   # nothing written at all


# ------------------------------------------------------------------ retention

def test_retention_keeps_the_newest_and_never_what_another_suite_lists(tmp_path, two_keys):
    home, old, _ = two_keys
    signer = Signer(home, old)
    storage = LocalStorage(tmp_path / "repo")
    versions = ["1.0-1", "1.1-1", "1.10-1", "1.2-1"]          # 1.10 sorts after 1.2
    for v in versions:
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", v), "bookworm-staging",
                                         "cpu")])
    publish(storage, signer, [Upload(make_deb(tmp_path, "other", "9-1"), "bookworm-staging",
                                     "cpu")])
    ops.promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "1.0-1")
    keyring = storage.get(KEYRING_NAME)[0]
    with pytest.raises(ConfigError, match="--keep 0 would drop every version") as info:
        retention.parse_keep("0")
    assert "--keep 1 or more" in info.value.hint
    with pytest.raises(ConfigError, match="not a number"):
        retention.parse_keep("all")
    drops = retention.plan(storage, keyring, 2)
    assert [(d.suite, d.version) for d in drops] == [("bookworm-staging", "1.0-1"),
                                                     ("bookworm-staging", "1.1-1")]
    assert retention.plan(storage, keyring, 2) == drops      # planning changes nothing
    dropped = retention.apply(storage, signer, 2)
    assert sorted(dropped) == ["bookworm-staging/cpu/libmxnet_1.0-1_amd64",
                               "bookworm-staging/cpu/libmxnet_1.1-1_amd64"]
    listing = ops.list_repo(storage, keyring)
    assert listing.suites["bookworm-staging"]["cpu"] == [
        ("libmxnet", "1.2-1"), ("libmxnet", "1.10-1"), ("other", "9-1")]
    assert listing.suites["bookworm"]["cpu"] == [("libmxnet", "1.0-1")]
    assert ops.verify(storage, keyring) == []
    # the pool files were uploaded long ago; the grace counts from the drop (just now)
    pool = storage.root / "pool/cpu/libm/libmxnet"
    for f in pool.iterdir():
        os.utime(f, (time.time() - 3 * 86400,) * 2)
    assert [g.key for g in ops.garbage(storage, keyring, 3600) if g.key.startswith("pool/")] == []
    later = time.time() + 2 * 3600
    pools = [g.key for g in ops.garbage(storage, keyring, 3600, now=later)
             if g.key.startswith("pool/")]
    # 1.0-1 is gone from staging but the stable suite lists it: never deleted
    assert pools == ["pool/cpu/libm/libmxnet/libmxnet_1.1-1_amd64.deb"]


# ------------------------------------------------------------------ audit log

def test_audit_log_records_every_commit_and_verify_replays_it(tmp_path, two_keys, monkeypatch):
    home, old, _ = two_keys
    monkeypatch.setenv("MXBUILD_AUDIT_WHO", "ci-job-42")
    signer = Signer(home, old)
    storage = LocalStorage(tmp_path / "repo")
    deb = make_deb(tmp_path, "libmxnet", "1.0-1")
    publish(storage, signer, [Upload(deb, "bookworm", "cpu", "1.0-cpu-debian12")])
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"), "bookworm", "cpu")])
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    keyring = storage.get(KEYRING_NAME)[0]
    assert ops.verify(storage, keyring) == []
    records = audit.read_records(storage, "bookworm")
    head = audit.sha256(storage.get("dists/bookworm/InRelease")[0])
    chain, gap = audit.chain(records, "bookworm", head)
    assert gap is None and [d["action"] for d in chain] == ["publish", "publish", "remove"]
    first = chain[0]
    assert first["who"] == "ci-job-42" and first["cells"] == ["1.0-cpu-debian12"]
    assert first["signers"] == [old] and first["mxbuild"] == audit.mxbuild_version()
    assert first["parent"] is None
    assert first["added"][0]["sha256"] == audit.sha256(deb.read_bytes())
    assert chain[2]["removed"][0]["version"] == "1.0-1"
    assert chain[1]["parent"] == chain[0]["inrelease"]

    # the head record deleted: the current InRelease is unaccounted for
    head_key = audit.record_key("bookworm", head)
    saved = storage.get(head_key)[0]
    storage.delete(head_key)
    assert any("has no log record" in p for p in ops.verify(storage, keyring))
    storage.put(head_key, saved)
    # a record rewritten to claim another sha256: log and index disagree
    doc = json.loads(storage.get(chain[1]["_key"])[0])
    doc["added"][0]["sha256"] = "f" * 64
    storage.put(chain[1]["_key"], json.dumps(doc).encode())
    problems = ops.verify(storage, keyring)
    assert any("in the index" in p and "f" * 16 in p for p in problems), problems


def test_audit_log_starts_from_a_baseline_on_a_repository_without_one(tmp_path, two_keys):
    home, old, _ = two_keys
    signer = Signer(home, old)
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    for obj in storage.list("log/"):          # as if published by an mxbuild without a log
        storage.delete(obj.key)
    keyring = storage.get(KEYRING_NAME)[0]
    assert any("has no log record" in p for p in ops.verify(storage, keyring))
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"), "bookworm", "cpu")])
    assert ops.verify(storage, keyring) == []
    (doc,) = audit.read_records(storage, "bookworm").values()
    assert [p["version"] for p in doc["baseline"]] == ["1.0-1"]


def test_lost_race_leaves_an_attempt_record_that_verify_tells_apart(tmp_path, two_keys):
    home, old, _ = two_keys
    signer = Signer(home, old)
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    keyring = storage.get(KEYRING_NAME)[0]
    state = read_state(storage, "bookworm", keyring)
    real_put_cas = storage.put_cas
    raced = []

    def racing_put_cas(key, data, token):           # another publisher commits first
        if not raced:
            raced.append(True)
            publish(storage, signer, [Upload(make_deb(tmp_path, "other", "1-1"), "bookworm",
                                             "cpu")])
        return real_put_cas(key, data, token)
    storage.put_cas = racing_put_cas
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"), "bookworm", "cpu")])
    storage.put_cas = real_put_cas
    assert state.token != read_state(storage, "bookworm", keyring).token
    notes = []
    assert ops.verify(storage, keyring, notes) == []
    assert any("1 record(s) of commits that never became current" in n for n in notes), notes
    assert len(ops.list_repo(storage, keyring).rows()) == 3


class IgnoresPreconditions(LocalStorage):
    """A directory whose compare-and-swap always succeeds, whatever the token: what a
    server that ignores If-Match (Ceph RGW's dbstore backend) does to a publisher."""

    def put_cas(self, key, data, expected_token):
        self._write(key, data)
        return self.token_of(data)


def test_verify_names_a_package_lost_to_an_overwritten_commit(tmp_path, two_keys):
    """Publisher A reads the suite, B commits meanwhile, A's compare-and-swap is let
    through: both report success, B's package is gone, and verify names it, the commit
    that published it and when; a later recorded removal is no loss."""
    home, old, _ = two_keys
    signer = Signer(home, old)
    storage = IgnoresPreconditions(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "base", "1.0-1"), "bookworm", "cpu")])
    keyring = storage.get(KEYRING_NAME)[0]
    raced = []

    def race(kind):
        if kind == "by-hash" and not raced:       # B commits between A's read and A's commit
            raced.append(True)
            publish(storage, signer, [Upload(make_deb(tmp_path, "libother", "2.0-1"),
                                             "bookworm", "cpu")])
    result = publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                              "bookworm", "cpu")], after_write=race)
    assert result.attempts == 1                                  # A never saw a conflict
    rows = ops.list_repo(storage, keyring).rows()
    assert ("bookworm", "cpu", "libother", "2.0-1") not in rows   # lost
    notes = []
    problems = ops.verify(storage, keyring, notes)
    (lost,) = [p for p in problems if "was LOST" in p]
    assert "cpu/libother/2.0-1/amd64 was LOST from bookworm: the commit of 20" in lost
    assert "(publish by " in lost and "/log/bookworm/" in lost
    assert any("1 commit(s) became current and were then replaced" in n for n in notes)
    # published again: nothing is missing any more (the overwritten commit is still noted)
    publish(storage, signer, [Upload(tmp_path / "libother_2.0-1_amd64.deb", "bookworm",
                                     "cpu")])
    assert not [p for p in ops.verify(storage, keyring) if "was LOST" in p]
    # removed by a later recorded commit: not a loss either
    ops.remove(storage, signer, "bookworm", "cpu", "libother", "2.0-1")
    assert ops.verify(storage, keyring) == []


def test_a_healthy_race_and_a_stopped_publisher_are_no_loss(tmp_path, two_keys):
    """Off-chain records without a committed mark (a lost race merged again, a publisher
    stopped before its commit) are attempts, never losses."""
    home, old, _ = two_keys
    signer = Signer(home, old)
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "base", "1.0-1"), "bookworm", "cpu")])
    keyring = storage.get(KEYRING_NAME)[0]
    with pytest.raises(Stopped):
        publish(storage, signer, [Upload(make_deb(tmp_path, "never", "1.0-1"), "bookworm",
                                         "cpu")],
                after_write=WriteStop(when=lambda kind: kind == "log"))
    notes = []
    assert ops.verify(storage, keyring, notes) == []
    assert any("1 record(s) of commits that never became current" in n for n in notes), notes
    assert not any("replaced" in n for n in notes)
    marks = [o.key for o in storage.list("log/") if o.key.endswith(audit.COMMITTED)]
    assert len(marks) == 1                                   # the one real commit


def test_a_suite_back_in_an_earlier_state_within_a_second_keeps_every_record(tmp_path,
                                                                            two_keys):
    """Publish, remove, publish again and remove again, all within one second: the second
    removal's InRelease would be byte-identical to the first one's (same Date, the same
    deterministic signature) while its parent differs; it is signed in the next second,
    so every commit keeps its own record and verify replays the whole chain."""
    home, old, _ = two_keys
    with Signer(home, old) as signer:
        storage = LocalStorage(tmp_path / "repo")
        publish(storage, signer, [Upload(make_deb(tmp_path, "base", "1.0-1"), "bookworm", "cpu")])
        keyring = storage.get(KEYRING_NAME)[0]
        deb = make_deb(tmp_path, "libother", "2.0-1")
        for _ in range(2):
            publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
            ops.remove(storage, signer, "bookworm", "cpu", "libother", "2.0-1")
        records = [json.loads(storage.get(o.key)[0]) for o in storage.list("log/bookworm/")
                   if o.key.endswith(".json")]
        assert sorted(r["action"] for r in records) == ["publish"] * 3 + ["remove"] * 2
        assert len({r["inrelease"] for r in records}) == 5
        assert ops.verify(storage, keyring) == []
