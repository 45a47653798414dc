"""Ordered mirrors: copy a repository to another place (S3 or a directory) in Debian's
two-stage order, so every intermediate state of the mirror is a repository apt reads.

1. pool files (create-only), 2. by-hash indexes (create-only), 3. the audit log records
   of the new commits, the keyring, the immutable files of `simple/` and `maven/`,
4. the list of deletion candidates (`project/mirror/<name>.json`, before the commit point,
   so a run killed after it still deletes them),
5. per suite: the plain-path indexes, Release.gpg, Release and InRelease LAST (InRelease is
   the commit point: apt follows it, by hash, to files written in steps 1-2),
   then the mutable files of `simple/` and `maven/` (metadata after the versions it lists),
6. deletions: a candidate goes once no index of the source names it *and* the source no
   longer holds it (its `repo.clean` removed it after the grace period), so a client that
   read the previous InRelease a moment ago still finds its files on the mirror,
7. the trace file `project/trace/<name>` (Debian's mirror trace: source, time, and the
   sha256 of each suite's InRelease it mirrors).

Incremental: what to copy is decided from the source's InRelease (verified with the
keyring first) against the mirror's: an index file whose hashes did not change is not
read, its pool files are not looked at; only the indexes that changed are read (from
by-hash, checked against the signed Release) and only their new pool files copied. No
listing of pool/ or dists/ on either side. Resumable: re-running after a stop anywhere
finishes the job (create-only writes of equal bytes are skipped).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, RepoError, SigningError
from ..fetch import sha256_file
from ..log import log
from . import audit, index
from .publish import SuiteState, inrelease_key, no_hook, read_index, state_of
from .s3 import IMMUTABLE, cache_control
from .sign import KEYRING_NAME, check_detached

TRACE_DIR = "project/trace"
PENDING_DIR = "project/mirror"
TREES = ("simple", "maven")          # PEP 503 index and the Maven repository, when present
SMALL = 8 << 20                      # pool files up to this size are copied in memory


@dataclass(frozen=True)
class MirrorOptions:
    name: str = ""                  # the trace file's name (default: this host's name)
    workers: int = 8                # parallel pool copies
    hook: Callable[[str], None] = no_hook    # test hook, called after each write

    @property
    def trace_name(self) -> str:
        name = self.name or socket.gethostname()
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"mirror name {name!r} cannot be a file name",
                              "pass --name with letters, digits, dots and dashes")
        return name


@dataclass
class MirrorResult:
    copied: list[str] = field(default_factory=list)     # keys written on the mirror
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)       # unreferenced, still on the source
    skipped: list[str] = field(default_factory=list)    # suites left at their old state, why
    suites: dict[str, str] = field(default_factory=dict)   # suite -> InRelease sha256
    bytes_copied: int = 0


@dataclass
class SuitePlan:
    codename: str
    inrelease: bytes
    state: SuiteState               # the source's, verified
    old: SuiteState | None          # the mirror's (None: none, or it does not verify)
    changed: dict[str, index.IndexFile]    # files the mirror's Release does not name alike
    release: tuple[bytes, bytes] | None = None   # the source's Release and Release.gpg
    pool: list[dict] = field(default_factory=list)      # index entries to copy
    candidates: set[str] = field(default_factory=set)   # mirror keys the new state drops
    indexes: dict[str, bytes] = field(default_factory=dict)  # changed files, checked bytes

    @property
    def current(self) -> bool:
        return self.old is not None and self.old.inrelease_sha256 == self.state.inrelease_sha256


class _Writer:
    """The mirror's writes, counted, each followed by the hook."""

    def __init__(self, dest, hook, result: MirrorResult, pool: ThreadPoolExecutor):
        self.dest, self.hook, self.result, self.pool = dest, hook, result, pool
        self._lock = threading.Lock()

    def each(self, fn, items) -> list:
        """fn over items on the worker threads (the writes of one step, in any order)."""
        return list(self.pool.map(fn, list(items)))

    def _done(self, key: str, size: int, kind: str) -> None:
        with self._lock:
            self.result.copied.append(key)
            self.result.bytes_copied += size
        self.hook(kind)

    def put_new(self, key: str, kind: str, data: bytes | None = None, src: Path | None = None,
                sha256: str | None = None) -> None:
        if self.dest.put_new(key, data=data, src=src, sha256=sha256):
            self._done(key, len(data) if data is not None else src.stat().st_size, kind)

    def put(self, key: str, data: bytes, kind: str) -> None:
        self.dest.put(key, data)
        self._done(key, len(data), kind)

    def put_if_changed(self, key: str, data: bytes, kind: str) -> None:
        if self.dest.sha256_of(key) != hashlib.sha256(data).hexdigest():
            self.put(key, data, kind)

    def delete(self, key: str) -> None:
        self.dest.delete(key)
        with self._lock:
            self.result.deleted.append(key)
        self.hook("delete")


def mirror(source, dest, keyring: bytes, options: MirrorOptions = MirrorOptions()) -> MirrorResult:
    """Bring dest up to the state of source, in the order above."""
    name = options.trace_name
    if source.describe() == dest.describe():
        raise ConfigError(f"--from and --to are the same repository ({source.describe()})",
                          "mirror to another bucket, prefix or directory")
    result = MirrorResult()
    with ThreadPoolExecutor(max(1, options.workers)) as pool:
        _run(source, dest, keyring, name, _Writer(dest, options.hook, result, pool))
    return result


# params: the two repositories, the trust anchor, the trace's name and the writer
def _run(source, dest, keyring: bytes, name: str, out: _Writer) -> None:
    started = dt.datetime.now(dt.timezone.utc)
    result = out.result
    plans = []
    for codename in suite_names(source):
        plan = _plan_suite(source, dest, keyring, codename)
        if plan is None:
            result.skipped.append(f"{codename}: the source's Release/Release.gpg do not match "
                                  "its InRelease yet (a publish there is finishing)")
            continue
        plans.append(plan)
        result.suites[codename] = plan.state.inrelease_sha256
    trees = {prefix: _plan_tree(source, dest, prefix) for prefix in TREES}
    with tempfile.TemporaryDirectory(prefix="mxbuild-mirror-") as tmp:
        copy = _pool_copier(source, out, Path(tmp))
        wanted = {e["Filename"]: e for p in plans for e in p.pool}
        out.each(copy, wanted.values())                                      # 1. pool
        for plan in plans:                                                   # 2. by-hash
            _copy_by_hash(source, out, plan)
        for plan in plans:                                                   # 3. log …
            _copy_log(source, out, plan)
        got = source.get(KEYRING_NAME)
        if got is not None:
            out.put_if_changed(KEYRING_NAME, got[0], "keyring")
        for prefix, tree in trees.items():
            for key in tree.immutable:
                _copy_tree_file(source, out, key, Path(tmp), immutable=True)
        pending_key = f"{PENDING_DIR}/{name}.json"                          # 4. candidates
        pending = _read_pending(dest, pending_key)
        new = set().union(*(p.candidates for p in plans)) - pending
        if new:
            pending |= new
            out.put(pending_key, _render_pending(pending), "pending")
        for plan in plans:                                                   # 5. commit
            _commit_suite(out, plan)
            _confirm_log(source, out, plan)
        for prefix, tree in trees.items():
            for key in tree.mutable:
                _copy_tree_file(source, out, key, Path(tmp), immutable=False)
        _copy_traces(source, out, name)
    if pending:                                                              # 6. deletions
        _delete_gone(source, out, plans, pending, pending_key, result)
    for prefix, tree in trees.items():
        out.each(out.delete, tree.extra)
    out.put(f"{TRACE_DIR}/{name}", render_trace(source.describe(), started, result), "trace")
                                                                             # 7. trace


def suite_names(storage) -> list[str]:
    """Suites: the directories under dists/ that hold an InRelease (one delimited LIST)."""
    return [name for name in storage.subdirs("dists/")
            if storage.exists(inrelease_key(name))]


def _plan_suite(source, dest, keyring: bytes, codename: str) -> SuitePlan | None:
    got = source.get(inrelease_key(codename))
    if got is None:
        raise RepoError(f"{source.describe()}/{inrelease_key(codename)} vanished while "
                        "mirroring", "re-run the mirror")
    try:
        state = state_of(codename, got[0], got[1], keyring)
    except SigningError as exc:
        raise SigningError(f"refusing to mirror {source.describe()}/{inrelease_key(codename)}: "
                           f"{exc.message}", "pass --keyring with the source repository's "
                           "public keyring (mxbuild-archive-keyring.gpg, from a trusted copy)")
    old = _mirror_state(dest, keyring, codename)
    changed = {n: f for n, f in state.files.items() if old is None or old.files.get(n) != f}
    plan = SuitePlan(codename, got[0], state, old, changed)
    if plan.current:
        return plan
    plan.release = _release_pair(source, codename, state, keyring)
    if plan.release is None:
        return None
    for name, named in changed.items():
        if named.arch is None or not name.endswith("/Packages"):
            continue
        component, arch = named.component, named.arch
        entries = read_index(source, state, component, arch)    # checked against the Release
        before = _old_entries(dest, old, component, arch)
        have = {(e["Filename"], e["SHA256"]) for e in before}
        plan.pool += [e for e in entries if (e["Filename"], e["SHA256"]) not in have]
        plan.candidates |= {e["Filename"] for e in before} - {e["Filename"] for e in entries}
    if old is not None:
        keep = {f.by_hash_key(codename, h) for f in state.files.values()
                for h in ("SHA256", "SHA512")}
        plan.candidates |= {f.by_hash_key(codename, h) for f in old.files.values()
                            for h in ("SHA256", "SHA512")} - keep
    return plan


def _mirror_state(dest, keyring: bytes, codename: str) -> SuiteState | None:
    """The mirror's committed state of a suite; None if it has none or it does not
    verify (then everything is checked by key: equal bytes are not copied again)."""
    got = dest.get(inrelease_key(codename))
    if got is None:
        return None
    try:
        return state_of(codename, got[0], got[1], keyring)
    except (SigningError, RepoError) as exc:
        log.warning("%s/%s does not verify (%s): checking every file of the suite",
                    dest.describe(), inrelease_key(codename), exc.message)
        return None


def _old_entries(dest, old: SuiteState | None, component: str, arch: str) -> list:
    if old is None:
        return []
    try:
        return read_index(dest, old, component, arch)
    except RepoError as exc:
        log.warning("%s: %s: checking every pool file of %s/%s", dest.describe(),
                    exc.message, component, arch)
        return []


def _release_pair(source, codename: str, state: SuiteState,
                  keyring: bytes) -> tuple[bytes, bytes] | None:
    """Release and Release.gpg on the source derive from its InRelease (publish writes them
    after the commit): copied only when they match it (None: they do not yet)."""
    base = f"dists/{codename}"
    release, signature = source.get(f"{base}/Release"), source.get(f"{base}/Release.gpg")
    if (release is not None and signature is not None
            and release[0] == state.release_text.encode()
            and check_detached(release[0], signature[0], keyring).ok):
        return release[0], signature[0]
    return None


def _pool_copier(source, out: _Writer, tmp: Path):
    def copy(entry: dict) -> None:
        key, want = entry["Filename"], entry["SHA256"]
        if int(entry.get("Size", 0)) <= SMALL:
            # one GET; the create-only write checks for a copy of an earlier run itself
            got = source.get(key)
            _check_pool_file(source, key, want, got and hashlib.sha256(got[0]).hexdigest())
            out.put_new(key, "pool", data=got[0], sha256=want)
            return
        if out.dest.sha256_of(key) == want:
            return                        # there already (an earlier run): not downloaded
        with _downloaded(source, key, tmp) as (path, there):
            _check_pool_file(source, key, want, sha256_file(path) if there else None)
            out.put_new(key, "pool", src=path, sha256=want)
    return copy


@contextmanager
def _downloaded(source, key: str, tmp: Path):
    """(path, whether the source had it): `key` downloaded into the run's temp dir under a
    name of its own (copies run in parallel), removed afterwards."""
    path = tmp / hashlib.sha256(key.encode()).hexdigest()
    try:
        yield path, source.download(key, path)
    finally:
        path.unlink(missing_ok=True)


def _check_pool_file(source, key: str, want: str, have: str | None) -> None:
    if have is None:
        raise RepoError(f"{source.describe()}/{key}, named by the signed index, is "
                        "missing", "run `invoke repo.verify` on the source")
    if have != want:
        raise RepoError(f"{source.describe()}/{key} has sha256 {have}, its signed "
                        f"index says {want}", "run `invoke repo.verify` on the source")


def _copy_by_hash(source, out: _Writer, plan: SuitePlan) -> None:
    if plan.current:
        return

    def copy(item) -> None:
        name, named = item
        key = named.by_hash_key(plan.codename, "SHA256")
        got = source.get(key)
        if got is None or index.IndexFile.of(name, got[0]) != named:
            raise RepoError(f"{source.describe()}/{key}, named by the signed InRelease of "
                            f"{plan.codename}, is {'missing' if got is None else 'altered'}",
                            "run `invoke repo.verify` on the source")
        for field_name in ("SHA256", "SHA512"):
            out.put_new(named.by_hash_key(plan.codename, field_name), "by-hash", data=got[0],
                        sha256=named.sha256)
        plan.indexes[name] = got[0]
    out.each(copy, sorted(plan.changed.items()))


def _copy_log(source, out: _Writer, plan: SuitePlan) -> None:
    """The audit records from the new InRelease back to the first one the mirror has,
    written oldest first, so a stopped run leaves a contiguous chain the next run
    completes. Their commit marks follow the commit (`_confirm_log`), as in a publish."""
    if plan.current:
        return
    chain = _missing_chain(source, out.dest, plan, audit.record_key)
    for key, data in reversed(chain):
        out.put_new(key, "log", data=data)


def _confirm_log(source, out: _Writer, plan: SuitePlan) -> None:
    """After the InRelease: the commit marks of the records copied (one HEAD when none is
    missing)."""
    for key, data in reversed(_missing_chain(source, out.dest, plan, _mark_key)):
        out.put_new(key, "log", data=data)


def _mark_key(suite: str, inrelease_sha256: str) -> str:
    return audit.record_key(suite, inrelease_sha256)[:-len(".json")] + audit.COMMITTED


def _missing_chain(source, dest, plan: SuitePlan, key_of) -> list[tuple[str, bytes]]:
    """(key, bytes) of key_of(suite, commit) for the commits of the source's chain from its
    InRelease back to the first whose key the mirror has, newest first."""
    chain, current, seen = [], plan.state.inrelease_sha256, set()
    while current and current not in seen:
        seen.add(current)
        key = key_of(plan.codename, current)
        if dest.exists(key):
            break
        got = source.get(key)
        record = source.get(audit.record_key(plan.codename, current))
        if got is None or record is None:
            break                               # a suite made without an audit log
        chain.append((key, got[0]))
        current = json.loads(record[0]).get("parent")
    return chain


def _commit_suite(out: _Writer, plan: SuitePlan) -> None:
    """Plain-path indexes, Release.gpg, Release, then InRelease (the commit point)."""
    if plan.current:
        return
    base = f"dists/{plan.codename}"

    def write_plain(name: str) -> None:
        out.put(f"{base}/{name}", plan.indexes[name], "plain")     # checked in 2.
    out.each(write_plain, sorted(plan.changed))
    release, signature = plan.release
    out.put(f"{base}/Release.gpg", signature, "Release.gpg")
    out.put(f"{base}/Release", release, "Release")
    out.put(inrelease_key(plan.codename), plan.inrelease, "InRelease")


@dataclass(frozen=True)
class TreePlan:
    immutable: list[str]            # to copy first (versions, wheels), create-only
    mutable: list[str]              # to copy after (indexes, metadata), overwritten
    extra: list[str]                # on the mirror only: deleted last


def _plan_tree(source, dest, prefix: str) -> TreePlan:
    """simple/ and maven/ are small trees: listed on both sides and compared (by size for
    files that never change, by sha256 for the others)."""
    src = {o.key: o for o in source.list(f"{prefix}/") if not o.key.endswith("/")}
    dst = {o.key: o for o in dest.list(f"{prefix}/")}
    immutable = [k for k in src if cache_control(k) == IMMUTABLE and
                 (k not in dst or dst[k].size != src[k].size)]
    mutable = [k for k in src if cache_control(k) != IMMUTABLE and
               (k not in dst or source.sha256_of(k) != dest.sha256_of(k) or
                _alias_missing(dest, k, dst))]
    extra = [k for k in dst if k not in src and not (
        k.endswith("/") and f"{k}index.html" in src)]

    def rank(key: str) -> tuple:
        # Maven: checksums, then the pom, then the jar; metadata before its checksums;
        # PEP 503: a project's page before the root page that links to it
        name = key.rsplit("/", 1)[-1]
        return (name.endswith(".jar") or name.endswith(".whl"), name.endswith(".pom"),
                -key.count("/"), key)
    return TreePlan(sorted(immutable, key=rank), sorted(mutable, key=rank),
                    sorted(extra, key=rank, reverse=True))


def _alias_missing(dest, key: str, dst: dict) -> bool:
    return (not dest.serves_directory_index and key.endswith("/index.html")
            and key[:-len("index.html")] not in dst)


def _copy_tree_file(source, out: _Writer, key: str, tmp: Path, immutable: bool) -> None:
    with _downloaded(source, key, tmp) as (path, there):
        if not there:
            raise RepoError(f"{source.describe()}/{key} vanished while mirroring",
                            "re-run the mirror")
        if immutable:
            out.put_new(key, key.split("/", 1)[0], src=path)
            return
        data = path.read_bytes()
        out.put_if_changed(key, data, key.split("/", 1)[0])
        if not out.dest.serves_directory_index and key.endswith("/index.html"):
            out.put_if_changed(key[:-len("index.html")], data, key.split("/", 1)[0])


def _copy_traces(source, out: _Writer, name: str) -> None:
    """The source's own trace files (a mirror of a mirror tells where it came from)."""
    for obj in source.list(f"{TRACE_DIR}/"):
        if obj.key != f"{TRACE_DIR}/{name}":
            got = source.get(obj.key)
            if got is not None:
                out.put_if_changed(obj.key, got[0], "trace")


def _read_pending(dest, key: str) -> set[str]:
    got = dest.get(key)
    if got is None:
        return set()
    try:
        return set(json.loads(got[0])["delete-when-gone"])
    except (ValueError, KeyError, TypeError):
        log.warning("%s/%s is not a mirror's pending list: starting a new one",
                    dest.describe(), key)
        return set()


def _render_pending(keys: set[str]) -> bytes:
    return (json.dumps({"delete-when-gone": sorted(keys)}, indent=1) + "\n").encode()


# params: the state of the run at its deletion step
def _delete_gone(source, out: _Writer, plans: list[SuitePlan], pending: set[str],
                 pending_key: str, result: MirrorResult) -> None:
    """Delete the candidates the source no longer holds (one HEAD each, in parallel); the
    others stay on the list for the next run. The source's indexes are read only when
    something is to be deleted: a safety net (what a source index names is never deleted)."""
    named = {f.by_hash_key(p.codename, h) for p in plans for f in p.state.files.values()
             for h in ("SHA256", "SHA512")}
    keys = sorted(pending - named)
    held = out.each(source.exists, keys)
    kept = {key for key, there in zip(keys, held) if there}
    gone = [key for key, there in zip(keys, held) if not there]
    if gone:
        referenced = set()
        for plan in plans:
            st = plan.state
            for component in st.components:
                for arch in st.arches(component):
                    referenced |= {e["Filename"] for e in read_index(source, st, component, arch)}
        out.each(out.delete, [key for key in gone if key not in referenced])
    result.kept = sorted(kept)
    if kept != pending:
        out.put(pending_key, _render_pending(kept), "pending")


def render_trace(source: str, started: dt.datetime, result: MirrorResult) -> bytes:
    """Debian's trace file fields (Date, Date-Started, Creator, Running on host,
    Upstream-mirror), plus the InRelease each suite mirrors."""
    def rfc2822(when: dt.datetime) -> str:
        return when.strftime("%a, %d %b %Y %H:%M:%S +0000")
    lines = [f"Date: {rfc2822(dt.datetime.now(dt.timezone.utc))}",
             f"Date-Started: {rfc2822(started)}",
             f"Creator: mxbuild {audit.mxbuild_version()} repo.mirror",
             f"Running on host: {socket.gethostname()}",
             f"Upstream-mirror: {source}",
             f"Objects-copied: {len(result.copied)}",
             f"Bytes-copied: {result.bytes_copied}",
             f"Objects-deleted: {len(result.deleted)}",
             "InRelease-SHA256:"]
    lines += [f" {sha} {suite}" for suite, sha in sorted(result.suites.items())]
    return ("\n".join(lines) + "\n").encode()
