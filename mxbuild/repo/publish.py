"""The publish protocol (design.md §6), the same for every storage backend.

1. upload pool files (existing key: same bytes skip, different bytes refuse);
2. read the suite's state: the signed InRelease and its token;
3. merge new packages into the indexes, write every index under by-hash (new keys only);
4. commit: InRelease with compare-and-swap on the token; on conflict go back to 2;
5. finish: Release, Release.gpg and plain-path indexes derived from the committed InRelease.
A publisher stopped anywhere leaves a repository apt reads; re-running completes it.
"""
from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from debian.debfile import DebFile

from ..errors import RepoError, SigningError
from ..fetch import sha256_file
from ..log import log
from . import index
from .sign import KEYRING_NAME, Signer, verify_clearsigned
from .storage import CasConflict

MAX_ATTEMPTS = 20


@dataclass
class SuiteState:
    codename: str
    token: str | None                      # None: the suite does not exist yet
    packages: dict[str, list] = field(default_factory=dict)  # component -> entries
    release_text: str = ""


@dataclass(frozen=True)
class Upload:
    deb: Path
    codename: str
    component: str


@dataclass
class PublishResult:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    attempts: int = 0


def inrelease_key(codename: str) -> str:
    return f"dists/{codename}/InRelease"


def read_state(storage, codename: str, keyring: bytes) -> SuiteState:
    current = storage.get(inrelease_key(codename))
    if current is None:
        return SuiteState(codename, None)
    data, token = current
    with tempfile.TemporaryDirectory() as tmp:
        text = verify_clearsigned(data, keyring, Path(tmp))
    release = index.parse_release(text)
    state = SuiteState(codename, token, release_text=text)
    for name, (digest, _size) in index.release_files(release).items():
        if not name.endswith("/Packages"):
            continue
        component = name.split("/")[0]
        key = index.by_hash_key(f"dists/{codename}/{name.rsplit('/', 1)[0]}", "SHA256", digest)
        got = storage.get(key)
        if got is None:
            raise RepoError(f"{key}, named by the signed InRelease of {codename}, is missing",
                            "run `invoke repo.verify`; restore the file from a backup")
        if index.digest('sha256', got[0]) != digest:
            raise RepoError(f"{key} does not match its hash in InRelease", "the repository "
                            "was tampered with: restore it from a backup")
        state.packages[component] = index.parse_packages(got[0].decode())
    return state


def _pool_upload(storage, up: Upload, result: PublishResult):
    control = DebFile(str(up.deb)).debcontrol()
    key = index.pool_key(up.component, control["Package"], up.deb.name)
    written = storage.put_new(key, src=up.deb, sha256=sha256_file(up.deb))
    log.debug("pool %s: %s", key, "uploaded" if written else "already present (same bytes)")
    return index.deb_entry(up.deb, up.component)


def publish(storage, signer: Signer, uploads: list[Upload],
            identity: index.RepoIdentity = index.RepoIdentity(), date: str | None = None,
            after_write=None) -> PublishResult:
    """Publish .debs; `after_write(key)` is a test hook called after every write."""
    hook = after_write or (lambda key: None)
    result = PublishResult()
    keyring = signer.public_keyring()
    _put_keyring(storage, keyring, hook)
    by_suite: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for up in uploads:                                         # 1. pool
        entry = _pool_upload(storage, up, result)
        hook("pool")
        by_suite[up.codename][up.component].append(entry)
    for codename, new_by_component in sorted(by_suite.items()):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            result.attempts += 1
            state = read_state(storage, codename, keyring)    # 2. state + token
            components = dict(state.packages)
            added_here = []
            for component, new in new_by_component.items():   # 3. merge
                merged, added = index.merge(components.get(component, []), new)
                components[component] = merged
                added_here += [f"{codename}/{component}/{'_'.join(index.entry_key(e))}"
                               for e in added]
            if not added_here and state.token is not None:
                result.skipped += [f"{codename}: nothing new"]
                break
            files = _write_indexes(storage, codename, components, hook)
            text = index.render_release(codename, list(components), files,
                                        date or index.release_date(), identity)
            try:                                              # 4. commit
                storage.put_cas(inrelease_key(codename), signer.clearsign(text), state.token)
                hook(inrelease_key(codename))
                result.added += added_here
                break
            except CasConflict:
                log.info("%s changed while publishing (attempt %d): merging again",
                         codename, attempt)
        else:
            raise RepoError(f"gave up publishing {codename} after {MAX_ATTEMPTS} conflicts",
                            "too many concurrent publishers; re-run the publish")
        finish(storage, signer, codename, keyring, hook)       # 5. legacy files
    return result


def _write_indexes(storage, codename, components, hook) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for component, entries in sorted(components.items()):
        directory = index.packages_dir(codename, component)
        for name, data in index.compressed_variants(index.render_packages(entries)).items():
            rel = f"{component}/binary-{index.ARCH}/{name}"
            files[rel] = data
            for field_name, algo in index.HASHES:
                digest = index.digest(algo, data)
                if storage.put_new(index.by_hash_key(directory, field_name, digest), data,
                                   sha256=index.digest('sha256', data)):
                    hook("by-hash")
    return files


def finish(storage, signer: Signer, codename: str, keyring: bytes, hook=lambda key: None):
    """Derive Release, Release.gpg and plain-path indexes from the committed InRelease.
    Idempotent: re-running after an interruption completes a publish."""
    state = read_state(storage, codename, keyring)
    if state.token is None:
        return
    base = f"dists/{codename}"
    release = index.parse_release(state.release_text)
    for name, (digest, _) in sorted(index.release_files(release).items()):
        directory = f"{base}/{name.rsplit('/', 1)[0]}"
        got = storage.get(index.by_hash_key(directory, "SHA256", digest))
        if got is None:
            raise RepoError(f"by-hash copy of {base}/{name} is missing", "re-run the publish")
        current = storage.get(f"{base}/{name}")
        if current is None or current[0] != got[0]:
            storage.put(f"{base}/{name}", got[0])
            hook(f"{base}/{name}")
    old = storage.get(f"{base}/Release")
    if old is None or old[0].decode() != state.release_text:
        storage.put(f"{base}/Release", state.release_text.encode())
        hook(f"{base}/Release")
        storage.put(f"{base}/Release.gpg", signer.detach_sign(state.release_text))
        hook(f"{base}/Release.gpg")


def _put_keyring(storage, keyring: bytes, hook) -> None:
    current = storage.get(KEYRING_NAME)
    if current is not None and current[0] != keyring:
        raise SigningError(f"{KEYRING_NAME} in the repository holds another key than the "
                           "signing key in use",
                           "sign with the repository's key (MXBUILD_GNUPGHOME / "
                           "MXBUILD_SIGNING_KEY), or publish to a new repository")
    if current is None:
        storage.put(KEYRING_NAME, keyring)
        hook(KEYRING_NAME)
