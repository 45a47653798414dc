"""The publish protocol (design.md §6), the same for every storage backend.

1. upload pool files (existing key: same bytes skip, different bytes refuse);
2. read the suite's state: the signed InRelease and its token (S3 ETag);
3. merge new packages into the indexes of the touched components only, write those
   indexes under by-hash (new keys only);
4. commit: InRelease with compare-and-swap on the token; on conflict go back to 2;
5. finish: Release, Release.gpg and plain-path indexes derived from the committed InRelease.

Architectures: a component's entries of every architecture are read and changed together
(`read_packages`), and written back as one index per architecture (`binary-<arch>`), only
for the architectures whose entries changed: publishing arm64 packages keeps every amd64
entry and file of the suite, in the same one compare-and-swap commit. A suite made before
architectures existed (amd64 only) is upgraded in place by its next publish.

A publisher stopped anywhere leaves a repository apt reads (it only ever follows a signed
InRelease whose by-hash files were written first); re-running completes the job.
Adding one package costs O(1) writes whatever the size of the repository.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from debian.debfile import DebFile

from ..errors import PoolConflictError, RepoError, SigningError
from ..fetch import sha256_file
from ..log import log
from . import audit, contents, index, keys
from .sign import KEYRING_NAME, Signer, check_detached, verify_inrelease
from .storage import CasConflict

MAX_ATTEMPTS = 50


@dataclass
class SuiteState:
    codename: str
    token: str | None                       # None: the suite does not exist yet
    release_text: str = ""
    files: dict[str, index.IndexFile] = field(default_factory=dict)
    inrelease_sha256: str | None = None     # of the signed bytes: the audit log's key
    signers: frozenset[str] = frozenset()   # keys whose signature it carries

    def signed_by_exactly(self, fingerprints) -> bool:
        """Did exactly these keys sign it (unknown keys appear as key ids or fprs)?"""
        ours = [f.upper() for f in fingerprints]
        theirs = [s.upper() for s in self.signers]
        return (all(any(f.endswith(t) for f in ours) for t in theirs)
                and all(any(f.endswith(t) for t in theirs) for f in ours))

    @property
    def components(self) -> list[str]:
        return sorted({f.component for f in self.files.values()})

    def arches(self, component: str) -> list[str]:
        """The architectures whose Packages index of `component` the Release names."""
        return sorted({f.arch for f in self.files.values()
                       if f.component == component and f.arch})


@dataclass(frozen=True)
class Upload:
    deb: Path
    codename: str
    component: str
    cell: str | None = None          # recorded in the audit log


@dataclass
class PublishResult:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    attempts: int = 0


def inrelease_key(codename: str) -> str:
    return f"dists/{codename}/InRelease"


def packages_name(component: str, arch: str) -> str:
    return index.packages_name(component, arch)


def read_state(storage, codename: str, keyring: bytes) -> SuiteState:
    """The committed state of a suite: its verified InRelease and the files it names."""
    current = storage.get(inrelease_key(codename))
    if current is None:
        return SuiteState(codename, None)
    return state_of(codename, *current, keyring)


def state_of(codename: str, data: bytes, token: str | None, keyring: bytes) -> SuiteState:
    """The state an InRelease's bytes describe, once its signature verifies with keyring."""
    verified = verify_inrelease(data, keyring)
    return SuiteState(codename, token, verified.text,
                      index.release_files(index.parse_release(verified.text)),
                      audit.sha256(data), verified.signers)


def read_packages(storage, state: SuiteState, component: str) -> list:
    """A component's entries of every architecture, fetched by hash and checked against
    the signed Release."""
    return [e for entries in read_indexes(storage, state, component).values() for e in entries]


def read_indexes(storage, state: SuiteState, component: str) -> dict[str, list]:
    """A component's entries per architecture (its binary-<arch>/Packages)."""
    return {arch: read_index(storage, state, component, arch)
            for arch in state.arches(component)}


def read_index(storage, state: SuiteState, component: str, arch: str) -> list:
    """The entries of one binary-<arch>/Packages, checked against the signed Release."""
    named = state.files.get(packages_name(component, arch))
    if named is None:
        return []
    directory = index.packages_dir(state.codename, component, arch)
    key = index.by_hash_key(directory, "SHA256", named.sha256)
    got = storage.get(key)
    if got is None:
        raise RepoError(f"{storage.describe()}/{key}, named by the signed InRelease of "
                        f"{state.codename}, is missing",
                        "run `invoke repo.verify`; restore the file from a backup")
    if index.digest("sha256", got[0]) != named.sha256:
        raise RepoError(f"{storage.describe()}/{key} does not match its hash in InRelease",
                        "the repository was tampered with: restore it from a backup")
    return index.parse_packages(got[0].decode())


# params: an index entry's key: suite, component, package, version, arch
def published_entries(storage, keyring: bytes, suite: str, component: str, package: str,
                      version: str, arch: str | None = None) -> list:
    """The index entries of one package version in a suite's component, of `arch` (None:
    of every architecture); none if the suite or the component does not exist."""
    state = read_state(storage, suite, keyring)
    return [e for e in read_packages(storage, state, component)
            if (e["Package"], e["Version"]) == (package, version)
            and arch in (None, e["Architecture"])]


def publish(storage, signer: Signer, uploads: list[Upload],
            identity: index.RepoIdentity = index.RepoIdentity(), date: str | None = None,
            after_write=None) -> PublishResult:
    """Publish .debs; `after_write(kind)` is a test hook called after each step's writes."""
    hook = after_write or (lambda kind: None)
    result = PublishResult()
    signing = keys.signing_for(storage, signer)       # the repository's keys (expiry checked)
    signer, keyring = signing.signer, signing.keyring
    by_suite: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    controls = [DebFile(str(up.deb)).debcontrol() for up in uploads]
    for up, control in zip(uploads, controls):     # before anything is uploaded
        if not up.deb.name.endswith(f"_{control['Architecture']}.deb"):
            # every architecture's file shares the pool directory: the name must tell them
            raise RepoError(f"{up.deb.name} does not end with _{control['Architecture']}.deb "
                            "(its Architecture)", "name it as dpkg-deb --build does: "
                            "<package>_<version>_<architecture>.deb")
    keyed = [(up, index.pool_key(up.component, control["Package"], up.deb.name),
              sha256_file(up.deb)) for up, control in zip(uploads, controls)]
    _refuse_pool_conflicts(storage, keyed)
    debs = contents.DebPaths(storage)
    entries = []
    for up, key, sha256 in keyed:                  # readable (their file lists) before writing
        entry = index.deb_entry(up.deb, up.component)
        debs.known[(entry["Filename"], entry["SHA256"])] = contents.deb_paths(up.deb)
        entries.append(entry)
    if not signing.published:
        _put_keyring(storage, keyring, hook)
    for (up, key, sha256), entry in zip(keyed, entries):           # 1. pool
        try:
            written = storage.put_new(key, src=up.deb, sha256=sha256)
        except PoolConflictError as exc:            # written meanwhile by another publisher
            raise _pool_conflict(storage, up.deb, key, None, sha256,
                                 "nothing of this publish was committed") from exc
        log.debug("pool %s: %s", key, "uploaded" if written else "present (same bytes)")
        hook("pool")
        by_suite[up.codename][up.component].append(entry)
    for codename, new_by_component in sorted(by_suite.items()):
        def adder(new):
            return lambda existing: index.merge(existing, new)
        changes = {component: adder(new) for component, new in new_by_component.items()}
        cells = tuple(sorted({u.cell for u in uploads if u.cell and u.codename == codename}))
        added, attempts = update_suite(storage, signer, codename, changes, keyring,
                                       CommitOptions(identity, date, hook, cells=cells,
                                                     debs=debs))
        result.attempts += attempts
        if added:
            result.added += added
        else:
            result.skipped.append(f"{codename}: nothing new")
    return result


def _refuse_pool_conflicts(storage, keyed: list[tuple[Upload, str, str]]) -> None:
    """A pool file never changes: refuse the whole publish, before anything is written,
    when a file name is already published (or given twice) with other bytes."""
    seen: dict[str, str] = {}
    for up, key, sha256 in keyed:
        if seen.setdefault(key, sha256) != sha256:
            raise PoolConflictError(
                f"refusing to publish {up.deb.name}: this publish gives two different files "
                f"for {storage.describe()}/{key} (sha256 {seen[key]} and {sha256}); nothing "
                "was written", "publish one build of each package version")
        have = storage.sha256_of(key)
        if have is not None and have != sha256:
            raise _pool_conflict(storage, up.deb, key, have, sha256, "nothing was written")


def _pool_conflict(storage, deb: Path, key: str, have: str | None, want: str,
                   outcome: str) -> PoolConflictError:
    have = have or storage.sha256_of(key) or "unknown"
    return PoolConflictError(
        f"refusing to publish {deb.name}: {storage.describe()}/{key} is already published "
        f"with other bytes (published sha256 {have}, this file sha256 {want}); pool files "
        f"are immutable: {outcome}")


def no_hook(kind: str) -> None:
    """The hook of a run without a test watching it (tests pass theirs: after each write)."""


@dataclass(frozen=True)
class CommitOptions:
    """How update_suite commits a suite (beyond what changes)."""
    identity: index.RepoIdentity = index.RepoIdentity()   # Origin/Label of the Release
    date: str | None = None          # the Release's Date (None: now)
    hook: Callable[[str], None] = no_hook    # test hook, called after each step's writes
    action: str = "publish"          # what the audit log says the commit did
    cells: tuple = ()                # the cells whose packages it publishes (audit log)
    resign: bool = False             # commit (signed by the signer's keys) even if unchanged
    # the file lists of .debs known already (those being published); any other .deb
    # whose files a Contents index needs is read from the pool
    debs: contents.DebPaths | None = None


def update_suite(storage, signer: Signer, codename: str, changes: dict, keyring: bytes,
                 commit: CommitOptions = CommitOptions()) -> tuple[list[str], int]:
    """Steps 2-5 for one suite. changes: component -> f(entries) -> (entries, changed).
    Returns (descriptions of what changed, attempts)."""
    identity, date, hook = commit.identity, commit.date, commit.hook
    debs = commit.debs or contents.DebPaths(storage)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        state = read_state(storage, codename, keyring)              # 2. state + token
        if state.token is not None and not state.signed_by_exactly(signer.fingerprints):
            # a key rotation happened meanwhile: sign with the repository's keys of now
            fresh = keys.signing_for(storage, Signer(signer.home))
            signer, keyring = fresh.signer, fresh.keyring
            state = read_state(storage, codename, keyring)
        files = dict(state.files)
        done, added, removed = [], [], []
        for component, change in sorted(changes.items()):           # 3. merge, by-hash
            entries, changed = change(read_packages(storage, state, component))
            kept = {(index.entry_key(e), e["SHA256"]) for e in entries}
            for e in changed:
                now_listed = (index.entry_key(e), e["SHA256"]) in kept
                (added if now_listed else removed).append(audit.packages_of([e], component)[0])
            done += [f"{codename}/{component}/{'_'.join(index.entry_key(e))}" for e in changed]
            # one index per architecture; only those whose entries changed are rewritten
            touched = {e["Architecture"] for e in changed}
            for arch in sorted(set(state.arches(component)) | {e["Architecture"]
                                                               for e in entries}):
                of_arch = [e for e in entries if e["Architecture"] == arch]
                if arch in touched or packages_name(component, arch) not in files:
                    files.update(_write_indexes(storage, codename, component, arch, of_arch,
                                                hook))
                if arch in touched or contents.contents_name(component, arch) not in files:
                    files.update(_write_contents(
                        storage, state, component, arch, of_arch,
                        [e for e in changed if e["Architecture"] == arch], debs, hook))
        if not done and state.token is not None and not commit.resign:
            break
        components = sorted({f.component for f in files.values()})
        signed = _signed_release(storage, signer, state, components, list(files.values()),
                                 identity, date)
        _log_commit(storage, state, signed, added, removed, commit, signer)
        try:                                                        # 4. commit
            storage.put_cas(inrelease_key(codename), signed, state.token)
        except CasConflict:
            log.info("%s changed meanwhile (attempt %d): merging again", codename, attempt)
            continue
        hook("InRelease")
        audit.confirm(storage, codename, audit.sha256(signed))     # the commit happened
        hook("committed")
        break
    else:
        raise RepoError(f"gave up updating {codename} after {MAX_ATTEMPTS} conflicts",
                        "too many concurrent publishers; re-run the command")
    finish(storage, signer, codename, keyring, hook, commit.resign)   # 5. legacy files
    return done, attempt


# params: the Release's parts as update_suite has them at that step
def _signed_release(storage, signer: Signer, state: SuiteState, components, files,
                    identity: index.RepoIdentity, date: str | None) -> bytes:
    """The signed InRelease of this commit, never byte-identical to an earlier commit of
    another parent (its audit record, keyed by these bytes, would collide): when it would
    be, it is signed again in the next second (a new Date)."""
    while True:
        signed = signer.clearsign(index.render_release(
            state.codename, components, files, date or index.release_date(), identity))
        if date is not None or not audit.logged_with_another_parent(
                storage, state.codename, audit.sha256(signed), state.inrelease_sha256):
            return signed
        time.sleep(1.01 - time.time() % 1)


# params: the commit's parts as update_suite has them at that step
def _log_commit(storage, state: SuiteState, signed: bytes, added: list, removed: list,
                options: CommitOptions, signer: Signer) -> None:
    """The audit record of the commit about to happen (before it: see audit.py)."""
    baseline = None
    if state.inrelease_sha256 is not None and not storage.exists(
            audit.record_key(state.codename, state.inrelease_sha256)):
        # the first commit logged on a suite made without a log: record what it held
        baseline = [p for c in state.components
                    for p in audit.packages_of(read_packages(storage, state, c), c)]
    commit = audit.Commit(state.codename, options.action, state.inrelease_sha256,
                          audit.sha256(signed), added, removed, tuple(signer.fingerprints),
                          options.cells, baseline)
    audit.write(storage, commit)
    options.hook("log")


def _write_indexes(storage, codename, component, arch, entries,
                   hook) -> dict[str, index.IndexFile]:
    directory = index.packages_dir(codename, component, arch)
    files = {}
    for name, data in index.compressed_variants(index.render_packages(entries)).items():
        described = index.IndexFile.of(index.packages_name(component, arch, name), data)
        files[described.name] = described
        for field_name, _ in index.HASHES:
            storage.put_new(index.by_hash_key(directory, field_name, described.hash(field_name)),
                            data, sha256=described.sha256)
    hook("by-hash")
    return files


# params: one index's place, its entries, what changed, the .debs' file lists and the hook
def _write_contents(storage, state: SuiteState, component: str, arch: str, entries: list,
                    changed: list, debs: contents.DebPaths,
                    hook) -> dict[str, index.IndexFile]:
    """The Contents-<arch>.gz of a component after this commit, under by-hash (new keys
    only, like the Packages indexes); empty for an architecture with no entries left."""
    previous = read_contents(storage, state, component, arch)
    paths = contents.updated(previous, entries, changed, debs)
    files = {}
    for name, data in contents.variants(component, arch, contents.render(
            paths, contents.sections(entries))).items():
        described = files[name] = index.IndexFile.of(name, data)
        for field_name, _ in index.HASHES:
            storage.put_new(described.by_hash_key(state.codename, field_name), data,
                            sha256=described.sha256)
    hook("by-hash")
    return files


def read_contents(storage, state: SuiteState, component: str,
                  arch: str) -> dict[str, set[str]] | None:
    """package -> paths of a committed Contents-<arch>.gz, checked against the signed
    Release (None: the Release names none)."""
    named = state.files.get(contents.contents_name(component, arch))
    if named is None:
        return None
    key = named.by_hash_key(state.codename, "SHA256")
    got = storage.get(key)
    if got is None or index.digest("sha256", got[0]) != named.sha256:
        raise RepoError(f"{storage.describe()}/{key}, named by the signed InRelease of "
                        f"{state.codename}, is {'missing' if got is None else 'altered'}",
                        "run `invoke repo.verify`; restore the file from a backup")
    return contents.parse(got[0])


def finish(storage, signer: Signer, codename: str, keyring: bytes, hook=lambda kind: None,
           resign: bool = False):
    """Make Release, Release.gpg and the plain-path indexes match the committed InRelease
    (resign: Release.gpg also carries exactly the signer's signatures).

    Idempotent, and it converges under concurrency: after writing, it checks that
    InRelease did not move meanwhile, and starts over if it did.
    """
    base = f"dists/{codename}"
    for _ in range(MAX_ATTEMPTS):
        state = read_state(storage, codename, keyring)
        if state.token is None:
            return
        for name, named in sorted(state.files.items()):
            plain = f"{base}/{name}"
            if storage.sha256_of(plain) == named.sha256:
                continue
            got = storage.get(named.by_hash_key(codename, "SHA256"))
            if got is None:
                raise RepoError(f"by-hash copy of {base}/{name} is missing", "re-run the publish")
            storage.put(plain, got[0])
            hook("plain")
        release = state.release_text.encode()
        if storage.sha256_of(f"{base}/Release") != index.digest("sha256", release) or \
                (resign and not _detached_signed_by(storage, base, release, keyring,
                                                    signer.fingerprints)):
            storage.put(f"{base}/Release.gpg", signer.detach_sign(state.release_text))
            hook("Release.gpg")
            storage.put(f"{base}/Release", release)
            hook("Release")
        after = storage.get(inrelease_key(codename))
        if after is not None and after[1] == state.token:
            return
    raise RepoError(f"{codename}: Release kept moving while finishing", "re-run the publish")


def _detached_signed_by(storage, base: str, release: bytes, keyring: bytes, fprs) -> bool:
    got = storage.get(f"{base}/Release.gpg")
    if got is None:
        return False
    verified = check_detached(release, got[0], keyring)
    return SuiteState("", None, signers=verified.signers).signed_by_exactly(fprs)


def _put_keyring(storage, keyring: bytes, hook) -> None:
    """A new repository's keyring (create-only: a concurrent first publish with the same
    key writes the same bytes; with another key it is refused)."""
    try:
        written = storage.put_new(KEYRING_NAME, keyring)
    except PoolConflictError:
        raise SigningError(f"{KEYRING_NAME} in {storage.describe()} holds another key than "
                           "the signing key in use",
                           "sign with the repository's key (MXBUILD_GNUPGHOME / "
                           "MXBUILD_SIGNING_KEY), or publish to a new repository")
    if written:
        hook("keyring")
