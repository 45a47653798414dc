"""The audit log: one JSON record per commit of a suite, next to the repository.

`log/<suite>/<sha256 of the committed InRelease>.json`, written (create-only, never
overwritten) *before* the compare-and-swap that commits that InRelease: a committed state
always has its record, and a publisher killed after the write or beaten by another one
leaves a record of an InRelease that never became current (an attempt, which `verify`
tells apart: it is not on the chain). Each record names its parent (the InRelease it
replaced), so the records of a suite form a chain from its first commit to its current
InRelease; replaying the chain's added/removed entries must give the current index.

After the compare-and-swap succeeded, the publisher writes `<sha256>.committed` next to the
record: that commit became current, so the packages it added were published. A server
that honours conditional writes keeps every such commit on the chain; one that does not
lets a later commit replace it without building on it, and its packages vanish from the
index with nothing in the chain to show it. `check_suite` therefore also holds the index
to every committed record off the chain: what it added is listed now, or a later commit
removed it.

A record: who (MXBUILD_AUDIT_WHO, else user@host), what (action, cells, added and removed
packages with version and sha256), when (UTC), the mxbuild version and the fingerprints of
the keys that signed.
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from importlib import metadata

from ..errors import PoolConflictError, RepoError
from ..log import log

LOG_DIR = "log"
FORMAT = 1
COMMITTED = ".committed"        # suffix of the mark written after a successful commit


def record_key(suite: str, inrelease_sha256: str) -> str:
    return f"{LOG_DIR}/{suite}/{inrelease_sha256}.json"


def who() -> str:
    explicit = os.environ.get("MXBUILD_AUDIT_WHO")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except Exception:   # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def mxbuild_version() -> str:
    try:
        return metadata.version("mxbuild")
    except metadata.PackageNotFoundError:
        return "unknown"


def _package(entry, component: str) -> dict:
    return {"component": component, "package": entry["Package"], "version": entry["Version"],
            "architecture": entry["Architecture"], "sha256": entry["SHA256"],
            "filename": entry["Filename"]}


@dataclass(frozen=True)
class Commit:
    """What update_suite is about to commit, in the terms of the log."""
    suite: str
    action: str
    parent: str | None                 # sha256 of the InRelease it replaces
    inrelease: str                     # sha256 of the signed InRelease being committed
    added: list[dict]
    removed: list[dict]
    signers: tuple[str, ...]
    cells: tuple[str, ...] = ()
    baseline: list[dict] | None = None  # the whole listing of an unlogged parent

    def render(self, when: dt.datetime | None = None) -> bytes:
        when = when or dt.datetime.now(dt.timezone.utc)
        doc = {"format": FORMAT, "suite": self.suite,
               "time": when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "who": who(), "action": self.action, "cells": list(self.cells),
               "mxbuild": mxbuild_version(), "signers": list(self.signers),
               "parent": self.parent, "inrelease": self.inrelease,
               "added": self.added, "removed": self.removed}
        if self.baseline is not None:
            doc["baseline"] = self.baseline
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def packages_of(entries, component: str) -> list[dict]:
    return [_package(e, component) for e in entries]


def write(storage, commit: Commit) -> str:
    key = record_key(commit.suite, commit.inrelease)
    try:
        storage.put_new(key, commit.render())
    except PoolConflictError:
        # the same InRelease bytes were logged before (a re-run within the same second of
        # a stopped attempt signs identically): that record describes this commit
        log.debug("%s exists already", key)
    return key


def logged_with_another_parent(storage, suite: str, inrelease_sha256: str,
                               parent: str | None) -> bool:
    """True when these InRelease bytes were logged before as the commit of another parent:
    the suite returned to an earlier state within the same second (same Date, a
    deterministic signature), and the record of this commit would be lost under that one."""
    got = storage.get(record_key(suite, inrelease_sha256))
    return got is not None and json.loads(got[0]).get("parent") != parent


def confirm(storage, suite: str, inrelease_sha256: str) -> str:
    """Mark the record of `inrelease_sha256` as committed (after its compare-and-swap)."""
    key = f"{LOG_DIR}/{suite}/{inrelease_sha256}{COMMITTED}"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        storage.put_new(key, (json.dumps({"suite": suite, "inrelease": inrelease_sha256,
                                          "committed": when}) + "\n").encode())
    except PoolConflictError:
        log.debug("%s exists already", key)     # the same InRelease committed again
    return key


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


def read_records(storage, suite: str | None = None) -> dict[str, dict]:
    """Every record (of one suite, or all), keyed by the InRelease sha256 they commit."""
    out = {}
    objects = storage.list(f"{LOG_DIR}/{suite}/" if suite else f"{LOG_DIR}/")
    marks = {o.key[:-len(COMMITTED)] + ".json" for o in objects if o.key.endswith(COMMITTED)}
    for obj in objects:
        if not obj.key.endswith(".json"):
            continue
        got = storage.get(obj.key)
        if got is None:
            continue
        try:
            doc = json.loads(got[0])
        except ValueError:
            raise RepoError(f"{storage.describe()}/{obj.key} is not JSON",
                            "restore the log record from a backup")
        out[f"{doc.get('suite')}/{doc.get('inrelease')}"] = doc | {
            "_key": obj.key, "_committed": obj.key in marks}
    return out


def chain(records: dict[str, dict], suite: str, head: str) -> tuple[list[dict], str | None]:
    """The records from the suite's first logged commit to `head` (oldest first), and the
    sha256 of the first parent that has no record (None: the chain starts at the suite's
    creation)."""
    out, seen, current = [], set(), head
    while current is not None and current not in seen:
        seen.add(current)
        doc = records.get(f"{suite}/{current}")
        if doc is None:
            return list(reversed(out)), current
        out.append(doc)
        current = doc.get("parent")
    return list(reversed(out)), None


def _ident(p: dict) -> tuple[str, str, str, str]:
    return p["component"], p["package"], p["version"], p.get("architecture", "amd64")


def check_suite(storage, suite: str, inrelease: bytes, listing: list[dict],
                records: dict[str, dict]) -> "SuiteCheck":
    """Where the log and the index disagree: the chain's replay, and the packages of
    commits that became current but are off the chain (`lost`)."""
    where = f"{storage.describe()}/{LOG_DIR}/{suite}"
    head = sha256(inrelease)
    docs, gap = chain(records, suite, head)
    ours = [d for k, d in records.items() if k.startswith(f"{suite}/")]
    on_chain = {d.get("inrelease") for d in docs}
    overwritten = [d for d in ours if d.get("_committed") and d.get("inrelease") not in on_chain]
    attempts = len(ours) - len(docs) - len(overwritten)
    lost = lost_packages(storage, suite, listing, ours, on_chain, overwritten)
    if not docs:
        return SuiteCheck([f"{where}: the current InRelease (sha256 {head[:16]}…) has no log "
                           "record (committed by an mxbuild without an audit log, or the "
                           "record was deleted)"] + lost, attempts, len(overwritten))
    problems = []
    state: dict[tuple, str] = {}
    if gap is not None:
        first = docs[0]
        if first.get("baseline") is None:
            problems.append(f"{where}: the log misses the record of InRelease {gap[:16]}… "
                            f"(parent of {first['_key']})")
            return SuiteCheck(problems + lost, attempts, len(overwritten))
        state = {_ident(p): p["sha256"] for p in first["baseline"]}
    for doc in docs:
        for p in doc.get("removed", []):
            if state.pop(_ident(p), None) is None:
                problems.append(f"{storage.describe()}/{doc['_key']}: removes "
                                f"{'/'.join(_ident(p))}, which the log never added")
        for p in doc.get("added", []):
            state[_ident(p)] = p["sha256"]
    current = {_ident(p): p["sha256"] for p in listing}
    for ident in sorted(set(state) | set(current)):
        name = "/".join(ident)
        if ident not in current:
            problems.append(f"{where}: the log lists {name}, the index of {suite} does not")
        elif ident not in state:
            problems.append(f"{where}: the index of {suite} lists {name}, the log never "
                            "added it")
        elif state[ident] != current[ident]:
            problems.append(f"{where}: {name} has sha256 {current[ident]} in the index, "
                            f"{state[ident]} in the log")
    return SuiteCheck(problems + lost, attempts, len(overwritten))


@dataclass(frozen=True)
class SuiteCheck:
    problems: list[str]
    attempts: int        # records of commits that never became current
    overwritten: int     # commits that became current, then were replaced off the chain


def lost_packages(storage, suite: str, listing: list[dict], ours: list[dict],
                  on_chain: set, overwritten: list[dict]) -> list[str]:
    """Packages a commit off the chain published (added) and the index does not list,
    although no later commit removed them; and removals such a commit made that the
    index undid, although no later commit added the package again."""
    current = {_ident(p) for p in listing}
    committed = [d for d in ours if d.get("_committed") or d.get("inrelease") in on_chain]

    def later(doc: dict, field: str, ident) -> bool:
        when = parse_time(doc["time"])
        return any(parse_time(d["time"]) >= when and ident in {_ident(p) for p in d.get(field, [])}
                   for d in committed if d is not doc)
    out = []
    for doc in sorted(overwritten, key=lambda d: d["time"]):
        commit = (f"the commit of {doc['time']} ({doc.get('action')} by {doc.get('who')}, "
                  f"{storage.describe()}/{doc['_key']})")
        for p in doc.get("added", []):
            ident = _ident(p)
            if ident not in current and not later(doc, "removed", ident):
                out.append(f"{storage.describe()}: {'/'.join(ident)} was LOST from {suite}: "
                           f"{commit} published it, the index does not list it and no later "
                           "recorded commit removed it (a later commit replaced that one "
                           "without building on it: the server let a stale compare-and-swap "
                           "through) — publish it again, and check the server "
                           "(mxbuild.repo.probe)")
        for p in doc.get("removed", []):
            ident = _ident(p)
            if ident in current and not later(doc, "added", ident):
                out.append(f"{storage.describe()}: {'/'.join(ident)} is listed in {suite} "
                           f"again although {commit} removed it and no later recorded commit "
                           "added it (that removal was overwritten) — remove it again")
    return out


def removal_times(storage) -> dict[str, float]:
    """Pool file -> the latest time a log record removed it from an index (retention's
    grace period counts from there, not from the upload)."""
    out: dict[str, float] = {}
    try:
        records = read_records(storage)
    except RepoError as exc:
        log.warning("%s: ignoring the audit log for grace periods", exc.message)
        return out
    for doc in records.values():
        when = parse_time(doc["time"])
        for p in doc.get("removed", []):
            out[p["filename"]] = max(out.get(p["filename"], 0.0), when)
    return out
