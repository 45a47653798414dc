"""Operations on a published repository: list, verify, remove, clean."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from debian.debian_support import Version

from ..errors import RepoError, SigningError
from ..matrix import STAGING
from . import audit, contents, index, keys, maven
from .publish import (CommitOptions, inrelease_key, packages_name, published_entries,
                      read_contents,
                      read_indexes, read_packages, read_state, update_suite)
from .sign import KEYRING_NAME, Signer, check_detached, keyring_keys

REQUIRED_RELEASE_FIELDS = ("Origin", "Label", "Suite", "Codename", "Date", "Architectures",
                           "Components", "Acquire-By-Hash", "SHA256", "SHA512")


def suites(storage) -> list[str]:
    return sorted({m.group(1) for obj in storage.list("dists/")
                   if (m := re.match(r"^dists/([^/]+)/InRelease$", obj.key))})


@dataclass
class Listing:
    # suite -> component -> (package, version), once per version whatever its architectures
    suites: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    artifacts: list[maven.Coords] = field(default_factory=list)   # Maven: what its metadata lists
    # (suite, component, package, version) -> the architectures it is published for
    arches: dict[tuple[str, str, str, str], list[str]] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [(s, c, p, v) for s, comps in sorted(self.suites.items())
                for c, pkgs in sorted(comps.items()) for p, v in pkgs]


def list_repo(storage, keyring: bytes) -> Listing:
    out = Listing()
    for codename in suites(storage):
        state = read_state(storage, codename, keyring)
        out.suites[codename] = {}
        for c in state.components:
            for e in read_packages(storage, state, c):
                row = (codename, c, e["Package"], e["Version"])
                out.arches.setdefault(row, []).append(e["Architecture"])
            out.suites[codename][c] = sorted(
                {row[2:] for row in out.arches if row[:2] == (codename, c)},
                key=lambda pv: (pv[0], Version(pv[1])))
    out.artifacts = maven.list_artifacts(storage)
    return out


def verify(storage, keyring: bytes, notes: list[str] | None = None) -> list[str]:
    """Every problem apt (or a later publish) would trip over, each named; [] if clean.
    Also: every suite is signed by exactly the keys of the repository's keyring, and its
    audit log replays to its index; and the Maven repository under maven/, if there is one
    (maven.verify_maven). `notes` collects what is worth saying but not wrong."""
    problems: list[str] = []
    notes = [] if notes is None else notes
    where = storage.describe()
    names = suites(storage)
    maven_problems = maven.verify_maven(storage)
    if not names:
        return [f"{where}: no suite (no dists/*/InRelease)"] + maven_problems
    repo_fprs = None
    ring = storage.get(KEYRING_NAME)
    if ring is None:
        problems.append(f"{where}/{KEYRING_NAME}: missing (hosts cannot get the key)")
    else:
        try:
            repo_fprs = [k.fingerprint for k in keyring_keys(ring[0], f"{where}/{KEYRING_NAME}")]
        except SigningError as exc:
            problems.append(exc.message)
    records = audit.read_records(storage)
    for codename in names:
        base = f"dists/{codename}"
        try:
            state = read_state(storage, codename, keyring)
        except (SigningError, RepoError) as exc:
            problems.append(f"{where}/{inrelease_key(codename)}: {exc.message}")
            continue
        if repo_fprs is not None and not state.signed_by_exactly(repo_fprs):
            problems.append(f"{where}/{base}/InRelease: signed by {', '.join(sorted(state.signers))}"
                            f", the repository keyring lists {', '.join(repo_fprs)} (an "
                            "unfinished repo.rotate-key: re-run it)")
        release = index.parse_release(state.release_text)
        for fname in REQUIRED_RELEASE_FIELDS:
            if fname not in release:
                problems.append(f"{where}/{base}/InRelease: no {fname} field")
        held = sorted({a for c in state.components for a in state.arches(c)})
        if "Architectures" in release and release["Architectures"].split() != held:
            problems.append(f"{where}/{base}/InRelease: Architectures is "
                            f"{release['Architectures']!r}, its indexes hold {' '.join(held)}")
        problems += _check_release_pair(storage, base, state.release_text, keyring)
        for name, named in sorted(state.files.items()):
            for field_name in ("SHA256", "SHA512"):
                key = named.by_hash_key(codename, field_name)
                got = storage.get(key)
                if got is None:
                    problems.append(f"{where}/{key}: missing (named by InRelease)")
                elif (len(got[0]) != named.size or
                      index.digest(field_name.lower(), got[0]) != named.hash(field_name)):
                    problems.append(f"{where}/{key}: content does not match InRelease")
            plain = storage.get(f"{base}/{name}")
            if plain is None:
                problems.append(f"{where}/{base}/{name}: missing")
            elif index.digest("sha256", plain[0]) != named.sha256:
                problems.append(f"{where}/{base}/{name}: differs from InRelease "
                                "(an unfinished publish: re-run it)")
        listing = []
        for component in state.components:
            try:
                by_arch = read_indexes(storage, state, component)
            except RepoError as exc:
                problems.append(exc.message)
                continue
            for arch, entries in by_arch.items():
                listing += audit.packages_of(entries, component)
                problems += _check_entries(storage, codename, component, arch, entries)
                problems += _check_contents(storage, state, component, arch, entries, notes)

        inrelease = storage.get(inrelease_key(codename))
        if inrelease is not None:
            checked = audit.check_suite(storage, codename, inrelease[0], listing, records)
            problems += checked.problems
            if checked.attempts:
                notes.append(f"{where}/{audit.LOG_DIR}/{codename}: {checked.attempts} "
                             "record(s) of commits that never became current (lost races or "
                             "stopped publishers)")
            if checked.overwritten:
                notes.append(f"{where}/{audit.LOG_DIR}/{codename}: {checked.overwritten} "
                             "commit(s) became current and were then replaced by a commit "
                             "that did not build on them: the server does not honour "
                             "conditional writes (packages they published are checked "
                             "above)")
    return problems + maven_problems


def _check_entries(storage, codename: str, component: str, arch: str,
                   entries: list) -> list[str]:
    """The pool files of one binary-<arch>/Packages: there, with the index's sha256, and
    of that architecture (its field and its file name)."""
    where, problems = storage.describe(), []
    listed_in = f"{codename}/{packages_name(component, arch)}"
    for e in entries:
        if e["Architecture"] != arch or not e["Filename"].endswith(f"_{arch}.deb"):
            problems.append(f"{where}/{e['Filename']}: Architecture {e['Architecture']} "
                            f"listed in {listed_in}")
        have = storage.sha256_of(e["Filename"])
        if have is None:
            problems.append(f"{where}/{e['Filename']}: missing (listed in {listed_in})")
        elif have != e["SHA256"]:
            problems.append(f"{where}/{e['Filename']}: sha256 {have} differs from "
                            f"the index ({e['SHA256']})")
    return problems


def _check_contents(storage, state, component: str, arch: str, entries: list,
                    notes: list[str]) -> list[str]:
    """A Contents-<arch>.gz names exactly the packages of binary-<arch>/Packages (with the
    section of their newest version); its bytes are checked against InRelease with the
    other indexes. The paths are not compared with the .debs (that reads every .deb)."""
    where = storage.describe()
    name = f"{state.codename}/{contents.contents_name(component, arch)}"
    try:
        listed = read_contents(storage, state, component, arch)
    except RepoError as exc:
        return [exc.message]
    if listed is None:
        notes.append(f"{where}/dists/{name}: none (the suite predates Contents indices; the "
                     "next publish to the component writes it)")
        return []
    problems = []
    packages = {e["Package"] for e in entries}
    for package in sorted(set(listed) - packages):
        problems.append(f"{where}/dists/{name}: lists {package}, which "
                        f"{state.codename}/{packages_name(component, arch)} does not hold")
    for package in sorted(packages - set(listed)):
        problems.append(f"{where}/dists/{name}: lists no file of {package} (held by "
                        f"{state.codename}/{packages_name(component, arch)})")
    return problems


def _check_release_pair(storage, base: str, inrelease_text: str, keyring: bytes) -> list[str]:
    where = storage.describe()
    release = storage.get(f"{base}/Release")
    signature = storage.get(f"{base}/Release.gpg")
    if release is None or signature is None:
        return [f"{where}/{base}/Release or Release.gpg: missing (an unfinished publish: "
                "re-run it)"]
    problems = []
    if release[0].decode() != inrelease_text:
        problems.append(f"{where}/{base}/Release: differs from InRelease (an unfinished "
                        "publish: re-run it)")
    if not check_detached(release[0], signature[0], keyring).ok:
        problems.append(f"{where}/{base}/Release.gpg: does not verify Release")
    return problems


# params: an index entry's key (suite, component, package, version, arch) and the signer
def remove(storage, signer: Signer, codename: str, component: str, package: str,
           version: str, arch: str | None = None) -> list[str]:
    """Drop one version from a suite's index: of one architecture, or (arch None) of
    every architecture it is published for, in one commit. The pool files stay until
    `clean`."""
    signing = keys.signing_for(storage, signer)
    signer, keyring = signing.signer, signing.keyring

    def matches(e) -> bool:
        return (e["Package"], e["Version"]) == (package, version) and \
            arch in (None, e["Architecture"])

    def drop(entries):
        return [e for e in entries if not matches(e)], [e for e in entries if matches(e)]
    if codename not in suites(storage):
        raise RepoError(f"{storage.describe()} has no suite {codename}",
                        "see `invoke repo.list` for what is published")
    removed, _ = update_suite(storage, signer, codename, {component: drop}, keyring,
                              CommitOptions(action="remove"))
    if not removed:
        raise RepoError(f"{package} {version}{f' ({arch})' if arch else ''} is not published "
                        f"in {codename}/{component}",
                        "see `invoke repo.list` for what is published (and for which "
                        "architectures)")
    return removed


def staging_suite(codename: str) -> str:
    """Where release CI publishes first: `<codename>-staging`, promoted explicitly."""
    return f"{codename}-{STAGING}"


# params: an index entry's key (suite, component, packages, version, arch) and the signer
def promote(storage, signer: Signer, codename: str, component: str,
            packages: list[str] | tuple[str, ...], version: str,
            arch: str | None = None) -> list[str]:
    """Copy one version of a cell's packages from `<codename>-staging` to `<codename>`, in
    one commit (a host never sees one package of a cell without the others): those of
    `arch` (a cell's), or of every architecture (None). The pool files are shared, so
    nothing is uploaded; same version with other bytes is refused."""
    signing = keys.signing_for(storage, signer)
    signer, keyring = signing.signer, signing.keyring
    source = staging_suite(codename)
    entries = []
    for package in packages:
        found = published_entries(storage, keyring, source, component, package, version,
                                  arch)
        if not found:
            raise RepoError(f"{package} {version}{f' ({arch})' if arch else ''} is not in "
                            f"{source}/{component} of "
                            f"{storage.describe()}",
                            "publish it to staging first (invoke publish --staging) and let "
                            "its smoke pass")
        entries += found
    for entry in entries:
        if storage.sha256_of(entry["Filename"]) != entry["SHA256"]:
            raise RepoError(f"{entry['Filename']} does not match its staging index entry",
                            "run `invoke repo.verify` before promoting")
    added, _ = update_suite(storage, signer, codename,
                            {component: lambda existing: index.merge(existing, entries)}, keyring,
                            CommitOptions(action="promote"))
    return added


def resign_all(storage, signer: Signer, keyring: bytes, action: str) -> list[str]:
    """Commit every suite again, signed by exactly the signer's keys (key rotation).
    A compare-and-swap commit like any other: a concurrent publish is merged, not lost."""
    done = []
    for codename in suites(storage):
        update_suite(storage, signer, codename, {}, keyring,
                     CommitOptions(action=action, resign=True))
        done.append(codename)
    return done


@dataclass(frozen=True)
class Garbage:
    key: str
    size: int
    age_seconds: float
    why: str
    retained_until: float | None = None    # S3 Object Lock: not deletable before then


def garbage(storage, keyring: bytes, grace_seconds: float,
            now: float | None = None) -> list[Garbage]:
    """Pool files no index references and by-hash files no Release names, unreferenced for
    longer than the grace period (a client may still hold an older InRelease within it).
    A pool file's age counts from the last commit that dropped it from an index (the audit
    log), else from its upload."""
    now = now or time.time()
    dropped = audit.removal_times(storage)
    referenced: set[str] = set()
    for codename in suites(storage):
        state = read_state(storage, codename, keyring)
        for named in state.files.values():
            referenced |= {named.by_hash_key(codename, f) for f in ("SHA256", "SHA512")}
        for component in state.components:
            referenced |= {e["Filename"] for e in read_packages(storage, state, component)}
    out = []
    for obj in storage.list("pool/") + [o for o in storage.list("dists/") if "/by-hash/" in o.key]:
        if obj.key in referenced:
            continue
        age = now - max(obj.modified, dropped.get(obj.key, 0.0))
        if age >= grace_seconds:
            why = "not in any index" if obj.key.startswith("pool/") else "not named by any Release"
            until = storage.retained_until(obj.key)
            out.append(Garbage(obj.key, obj.size, age, why,
                               until if until is not None and until > now else None))
    return sorted(out, key=lambda g: g.key)


def delete_garbage(storage, found: list[Garbage]) -> list[Garbage]:
    """Delete what `garbage` found, except objects S3 Object Lock still retains (a DELETE
    would only hide them behind a delete marker); returns what was deleted."""
    deleted = []
    for g in found:
        if g.retained_until is None:
            storage.delete(g.key)
            deleted.append(g)
    return deleted
