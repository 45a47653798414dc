"""The thin jar as a Maven 2 repository next to the apt repository (`<repo>/maven/`), so a
Java/Scala service adds one repository and one dependency; the host's .debs bring the
native library.

Layout (Maven 2, as Maven Central serves it):

    maven/<group path>/<artifactId>/maven-metadata.xml{,.sha1,.md5,.sha256,.sha512}
    maven/<group path>/<artifactId>/<version>/<artifactId>-<version>.{pom,jar}{,.sha1,…}

Checksum files hold the bare hex digest (no file name, no newline), like Central's.

Protocol (the apt protocol's shape, publish.py):

1. per version, create-only: the pom's checksum files, the pom, the jar's checksum files,
   the jar last. A reader that finds the jar finds everything (Maven fetches the pom, then
   the jar, each with its .sha1); a version whose jar is missing is "not there yet". A
   published version never changes: same bytes are skipped, other bytes refused.
2. commit maven-metadata.xml with compare-and-swap: read its token, then list the complete
   versions (all ten files), render, put_cas; a lost race reads and lists again, so no
   concurrent publisher loses a version.
3. finish: the metadata's checksum files, derived from the committed metadata (a re-run
   repairs them; until then a reader resolving a version range or RELEASE sees a stale
   .sha1 and, with checksumPolicy fail, fails — fixed versions never read the metadata).

A publisher stopped after any write leaves a repository Maven resolves (old or new state);
re-running the same publish completes it and writes nothing when nothing is missing.
"""
from __future__ import annotations

import functools
import hashlib
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from ..errors import PoolConflictError, RepoError
from ..fetch import sha256_file
from ..log import log
from .storage import CasConflict

PREFIX = "maven"
METADATA = "maven-metadata.xml"
# Maven Central's checksum files. Maven 3.8 checks .sha1 (else .md5); newer resolvers
# can be told to check .sha256/.sha512 (aether.checksums.algorithms).
DIGESTS = ("sha1", "md5", "sha256", "sha512")
MAX_ATTEMPTS = 50
POM_NS = "{http://maven.apache.org/POM/4.0.0}"

# Maven's model validator: ids are [A-Za-z0-9_.-]+; versions may not hold \/:"<>|?* or
# whitespace. Stricter here: a version starts with a letter or digit and holds only
# [A-Za-z0-9_.+-] (it becomes a path segment and a file name).
ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _immutable_hint() -> str:
    return ("a published Maven version never changes: publish the new jar under a new "
            "version (e.g. 1.9.1-2 or 1.9.1.1)")


@dataclass(frozen=True)
class Coords:
    """groupId:artifactId:version of a published artifact; refused at construction when
    Maven (or a path) would not accept it."""
    group_id: str
    artifact_id: str
    version: str

    def __post_init__(self) -> None:
        for what, value in (("groupId", self.group_id), ("artifactId", self.artifact_id)):
            if not ID_RE.match(value or "") or ".." in value or value.startswith(".") \
                    or value.endswith("."):
                bad = sorted(set(re.sub(r"[A-Za-z0-9_.-]", "", value or "")))
                raise RepoError(
                    f"Maven {what} {value!r} is not valid"
                    + (f" (characters {''.join(bad)!r} are not allowed)" if bad else ""),
                    f"a {what} holds only letters, digits, '_', '-' and single dots between "
                    "names (e.g. org.apache.mxnet, mxnet-thin_2.11)")
        if not VERSION_RE.match(self.version or ""):
            bad = sorted(set(re.sub(r"[A-Za-z0-9_.+-]", "", self.version or "")))
            raise RepoError(
                f"Maven version {self.version!r} is not valid"
                + (f" (characters {''.join(bad)!r} are not allowed)" if bad else ""),
                "a version starts with a letter or digit and holds only letters, digits and "
                "'.', '-', '_', '+' (e.g. 1.9.1)")
        if self.version.upper().endswith("SNAPSHOT"):
            raise RepoError(f"Maven version {self.version!r} is a SNAPSHOT",
                            "this repository holds releases only (a published version never "
                            "changes): publish a release version")

    @classmethod
    def parse(cls, text: str) -> "Coords":
        parts = text.split(":")
        if len(parts) != 3:
            raise RepoError(f"{text!r} is not groupId:artifactId:version",
                            "write e.g. org.apache.mxnet:mxnet-thin_2.11:1.9.1")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}"

    @property
    def artifact_dir(self) -> str:
        return artifact_dir(self.group_id, self.artifact_id)

    @property
    def version_dir(self) -> str:
        return f"{self.artifact_dir}/{self.version}"

    def key(self, ext: str) -> str:
        """The key of this version's file with extension ext ("jar", "pom", "jar.sha1")."""
        return f"{self.version_dir}/{self.artifact_id}-{self.version}.{ext}"


def artifact_dir(group_id: str, artifact_id: str) -> str:
    return f"{PREFIX}/{group_id.replace('.', '/')}/{artifact_id}"


def metadata_key(group_id: str, artifact_id: str) -> str:
    return f"{artifact_dir(group_id, artifact_id)}/{METADATA}"


# ------------------------------------------------------------------ version order

# A port of maven-artifact 3.8's ComparableVersion: versions split at '.', '-' and
# digit/letter changes into numbers and qualifiers; '-' (and a change) opens a sub-list;
# trailing zeros and empty qualifiers are dropped (1.10.0 == 1.10); qualifiers order
# alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp < others
# (alphabetically); a1/b1/m1 mean alpha-1/beta-1/milestone-1; a qualifier after a dot
# counts as after a hyphen (MNG-7644). Checked pair by pair against the ComparableVersion
# of Maven 3.8.7 (tests). Limits: later Maven releases changed how some mixtures of letters
# and digits compare (e.g. "1.0RC1"); dotted numbers with an optional -qualifier (1.9.1,
# 1.9.1-rc1, 1.9.1-2), the forms we publish, order the same in all of them.
_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_RELEASE = str(_QUALIFIERS.index(""))
_INT, _STR, _LIST = "int", "str", "list"


def _qualifier_rank(q: str) -> str:
    return str(_QUALIFIERS.index(q)) if q in _QUALIFIERS else f"{len(_QUALIFIERS)}-{q}"


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


def _is_null(item) -> bool:
    kind, value = item
    if kind == _INT:
        return value == 0
    if kind == _STR:
        return _qualifier_rank(value) == _RELEASE
    return not value


def _compare(item, other) -> int:
    """item vs other (other None: nothing there), as ComparableVersion's Item.compareTo."""
    kind, value = item
    if kind == _INT:
        if other is None:
            return 0 if value == 0 else 1
        return _cmp(value, other[1]) if other[0] == _INT else 1
    if kind == _STR:
        if other is None:
            return _cmp(_qualifier_rank(value), _RELEASE)
        if other[0] == _STR:
            return _cmp(_qualifier_rank(value), _qualifier_rank(other[1]))
        return -1
    if other is None:                  # every item against nothing (MNG-6964)
        return next((r for r in (_compare(i, None) for i in value) if r), 0)
    if other[0] == _INT:
        return -1
    if other[0] == _STR:
        return 1
    right = other[1]
    for i in range(max(len(value), len(right))):
        left_item = value[i] if i < len(value) else None
        right_item = right[i] if i < len(right) else None
        if left_item is None:
            result = 0 if right_item is None else -_compare(right_item, None)
        else:
            result = _compare(left_item, right_item)
        if result:
            return result
    return 0


def _parse_version(version: str):
    def item(is_digit: bool, text: str):
        return (_INT, int(text)) if is_digit else (_STR, _ALIASES.get(text, text))

    def qualifier(text: str):          # a qualifier followed by a digit: a1 = alpha-1
        text = {"a": "alpha", "b": "beta", "m": "milestone"}.get(text, text)
        return (_STR, _ALIASES.get(text, text))

    version = version.lower()
    root: list = []
    current = root
    stack = [root]
    is_digit, start = False, 0

    def open_list():
        nonlocal current
        new: list = []
        current.append((_LIST, new))
        current = new
        stack.append(new)
    for i, c in enumerate(version):
        if c in ".-":
            current.append((_INT, 0) if i == start else item(is_digit, version[start:i]))
            start = i + 1
            if c == "-":
                open_list()
        elif "0" <= c <= "9":
            if not is_digit and i > start:
                if current:            # .X as -X for a qualifier X (MNG-7644)
                    open_list()
                current.append(qualifier(version[start:i]))
                start = i
                open_list()
            is_digit = True
        else:
            if is_digit and i > start:
                current.append(item(True, version[start:i]))
                start = i
                open_list()
            is_digit = False
    if len(version) > start:
        if not is_digit and current:   # .X as -X (MNG-7644)
            open_list()
        current.append(item(is_digit, version[start:]))
    for lst in reversed(stack):        # normalize: drop trailing nulls
        for i in range(len(lst) - 1, -1, -1):
            if _is_null(lst[i]):
                del lst[i]
            elif lst[i][0] != _LIST:
                break
    return (_LIST, root)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Maven orders versions a and b (1.5.1 < 1.9.1 < 1.10.0)."""
    return _compare(_parse_version(a), _parse_version(b))


def maven_sorted(versions) -> list[str]:
    return sorted(versions, key=functools.cmp_to_key(compare_versions))


# ------------------------------------------------------------------ files

def digests_of(data: bytes | None = None, path: Path | None = None) -> dict[str, str]:
    """Hex digests of bytes or of a file (streamed), one per checksum file."""
    hashes = {name: hashlib.new(name) for name in DIGESTS}
    if path is not None:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                for h in hashes.values():
                    h.update(chunk)
    else:
        for h in hashes.values():
            h.update(data)
    return {name: hashes[name].hexdigest() for name in DIGESTS}


@dataclass(frozen=True)
class Metadata:
    group_id: str
    artifact_id: str
    versions: tuple[str, ...]           # Maven order
    latest: str | None
    release: str | None
    last_updated: str | None

    def same_listing(self, other: "Metadata") -> bool:
        """Equal but for lastUpdated (which alone is no reason to write)."""
        return (self.group_id, self.artifact_id, self.versions, self.latest, self.release) == \
            (other.group_id, other.artifact_id, other.versions, other.latest, other.release)


def metadata_for(group_id: str, artifact_id: str, versions, now: float | None = None) -> Metadata:
    ordered = tuple(maven_sorted(set(versions)))
    newest = ordered[-1] if ordered else None
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() if now is None else now))
    return Metadata(group_id, artifact_id, ordered, newest, newest, stamp)


def render_metadata(meta: Metadata) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<metadata>",
             f"  <groupId>{escape(meta.group_id)}</groupId>",
             f"  <artifactId>{escape(meta.artifact_id)}</artifactId>", "  <versioning>"]
    if meta.latest:
        lines.append(f"    <latest>{escape(meta.latest)}</latest>")
    if meta.release:
        lines.append(f"    <release>{escape(meta.release)}</release>")
    lines.append("    <versions>")
    lines += [f"      <version>{escape(v)}</version>" for v in meta.versions]
    lines += ["    </versions>", f"    <lastUpdated>{meta.last_updated}</lastUpdated>",
              "  </versioning>", "</metadata>", ""]
    return "\n".join(lines).encode()


def parse_metadata(data: bytes, where: str) -> Metadata:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise RepoError(f"{where}: not well-formed XML ({exc})",
                        "re-run the publish of this artifact (it rewrites the metadata)")
    if root.tag != "metadata":
        raise RepoError(f"{where}: root element <{root.tag}>, not <metadata>",
                        "re-run the publish of this artifact (it rewrites the metadata)")
    versioning = root.find("versioning")

    def text(parent, tag):
        node = parent.find(tag) if parent is not None else None
        return node.text.strip() if node is not None and node.text else None
    versions = tuple(v.text.strip() for v in versioning.iterfind("versions/version")
                     if v.text) if versioning is not None else ()
    return Metadata(text(root, "groupId") or "", text(root, "artifactId") or "", versions,
                    text(versioning, "latest"), text(versioning, "release"),
                    text(versioning, "lastUpdated"))


def check_pom(pom: bytes, coords: Coords) -> None:
    """The pom names exactly these coordinates, stands alone and packages a jar."""
    try:
        root = ET.fromstring(pom)
    except ET.ParseError as exc:
        raise RepoError(f"the pom for {coords} is not well-formed XML ({exc})",
                        "pass the pom the build wrote (a Maven 4.0.0 <project>)")
    ns = POM_NS if root.tag.startswith(POM_NS) else ""
    if root.tag != f"{ns}project":
        raise RepoError(f"the pom for {coords} has root <{root.tag}>, not <project>",
                        "pass a Maven 4.0.0 pom (<project>)")

    def text(tag):
        node = root.find(f"{ns}{tag}")
        return node.text.strip() if node is not None and node.text else None
    if root.find(f"{ns}parent") is not None:
        raise RepoError(f"the pom for {coords} has a <parent>",
                        "publish a flattened pom (its own groupId and version, no <parent>): "
                        "Maven would look for the parent pom in this repository")
    wrong = [f"{tag} {text(tag)!r} (expected {want!r})"
             for tag, want in (("groupId", coords.group_id), ("artifactId", coords.artifact_id),
                               ("version", coords.version)) if text(tag) != want]
    if wrong:
        raise RepoError(f"the pom disagrees with the coordinates {coords}: " + ", ".join(wrong),
                        "publish with the coordinates the pom declares, or fix the pom")
    if text("modelVersion") != "4.0.0":
        raise RepoError(f"the pom for {coords} has modelVersion {text('modelVersion')!r}",
                        "a Maven 2+ pom declares <modelVersion>4.0.0</modelVersion>")
    if text("packaging") not in (None, "jar"):
        raise RepoError(f"the pom for {coords} declares packaging {text('packaging')!r}",
                        "the thin client is a jar: packaging jar (or none)")


def check_jar(jar: Path, coords: Coords) -> None:
    try:
        with zipfile.ZipFile(jar) as z:
            if not z.namelist():
                raise RepoError(f"{jar} (for {coords}) is an empty jar",
                                "pass the thin jar the build wrote (its classes)")
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise RepoError(f"{jar} (for {coords}) is not a jar (a zip archive): {exc}",
                        "pass the thin jar the build wrote")
    if bad is not None:
        raise RepoError(f"{jar} (for {coords}) is corrupt: member {bad} fails its CRC",
                        "rebuild the thin jar")


# ------------------------------------------------------------------ publish

@dataclass(frozen=True)
class _File:
    ext: str                  # "pom.sha1", "pom", …, "jar"
    data: bytes | None
    src: Path | None
    sha256: str


def _files_of(jar: Path, pom: bytes) -> list[_File]:
    """A version's files in write order: pom checksums, pom, jar checksums, jar."""
    files = []
    for ext, data, src in (("pom", pom, None), ("jar", None, jar)):
        digests = digests_of(data, src)
        files += [_File(f"{ext}.{d}", digests[d].encode(), None,
                        hashlib.sha256(digests[d].encode()).hexdigest()) for d in DIGESTS]
        files.append(_File(ext, data, src, digests["sha256"]))
    return files


def publish_artifact(storage, coords: Coords, jar: Path, pom: bytes, *,
                     now: float | None = None, after_write=None) -> bool:
    """Publish one version of a jar with its pom and commit the artifact's metadata
    (compare-and-swap). True if anything was written; a re-run of a finished publish
    writes nothing. `after_write(kind)` is a test hook called after each write."""
    hook = after_write or (lambda kind: None)
    check_jar(jar, coords)
    check_pom(pom, coords)
    files = _files_of(jar, pom)
    # other bytes are refused before anything is written (put_new would refuse too, late)
    present = {obj.key for obj in storage.list(coords.version_dir + "/")}
    for f in files:
        key = coords.key(f.ext)
        if key in present and storage.sha256_of(key) != f.sha256:
            raise PoolConflictError(f"{storage.describe()}/{key} already exists with "
                                    f"different content ({coords} is published)",
                                    _immutable_hint())
    changed = False
    for f in files:                                                 # 1. the version
        key = coords.key(f.ext)
        if key in present:
            continue
        try:
            written = storage.put_new(key, f.data, f.src, sha256=f.sha256)
        except PoolConflictError as exc:                            # a concurrent publisher
            raise PoolConflictError(exc.message, _immutable_hint()) from None
        if written:
            changed = True
            hook(f.ext)
    changed |= commit_metadata(storage, coords.group_id, coords.artifact_id, now, hook)
    changed |= finish(storage, coords.group_id, coords.artifact_id, hook)   # 3.
    return changed


def complete_versions(storage, group_id: str, artifact_id: str) -> list[str]:
    """Versions whose ten files are all there (an interrupted publish's are not)."""
    base = artifact_dir(group_id, artifact_id) + "/"
    names: dict[str, set[str]] = {}
    for obj in storage.list(base):
        parts = obj.key[len(base):].split("/")
        if len(parts) == 2:
            names.setdefault(parts[0], set()).add(parts[1])
    out = []
    for version, have in names.items():
        stem = f"{artifact_id}-{version}."
        need = {stem + ext + suffix for ext in ("jar", "pom")
                for suffix in ("",) + tuple("." + d for d in DIGESTS)}
        if need <= have:
            out.append(version)
    return out


def commit_metadata(storage, group_id: str, artifact_id: str, now: float | None = None,
                    hook=lambda kind: None) -> bool:
    """Make maven-metadata.xml list exactly the complete versions: compare-and-swap on the
    token read before listing, so a version completed by a concurrent publisher is either
    listed by our commit or our commit loses and merges again. True if it committed."""
    key = metadata_key(group_id, artifact_id)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current = storage.get(key)                              # 2. token first,
        versions = complete_versions(storage, group_id, artifact_id)  # then the listing
        meta = metadata_for(group_id, artifact_id, versions, now)
        if current is not None:
            try:
                if parse_metadata(current[0], key).same_listing(meta):
                    return False
            except RepoError:
                pass                                                # unreadable: rewrite it
        try:
            storage.put_cas(key, render_metadata(meta), current[1] if current else None)
        except CasConflict:
            log.info("%s changed meanwhile (attempt %d): listing again", key, attempt)
            continue
        hook(METADATA)
        log.debug("%s: %d versions", key, len(meta.versions))
        return True
    raise RepoError(f"gave up updating {storage.describe()}/{key} after {MAX_ATTEMPTS} "
                    "conflicts", "too many concurrent publishers; re-run")


def finish(storage, group_id: str, artifact_id: str, hook=lambda kind: None) -> bool:
    """Make the metadata's checksum files match the committed metadata. Idempotent, and it
    converges under concurrency: if the metadata moved while writing, start over.
    True if it wrote anything."""
    key = metadata_key(group_id, artifact_id)
    wrote = False
    for _ in range(MAX_ATTEMPTS):
        current = storage.get(key)
        if current is None:
            return wrote
        for name, hexdigest in digests_of(current[0]).items():
            got = storage.get(f"{key}.{name}")
            if got is None or got[0] != hexdigest.encode():
                storage.put(f"{key}.{name}", hexdigest.encode())
                wrote = True
                hook(f"{METADATA}.{name}")
        after = storage.get(key)
        if after is not None and after[1] == current[1]:
            return wrote
    raise RepoError(f"{storage.describe()}/{key} kept moving while finishing", "re-run")


def is_published(storage, coords: Coords, jar: Path, pom: bytes) -> bool:
    """This version is there with these bytes, listed by a metadata whose checksums match
    (so a finished publish would write nothing)."""
    if storage.sha256_of(coords.key("jar")) != sha256_file(jar) or \
            storage.sha256_of(coords.key("pom")) != hashlib.sha256(pom).hexdigest():
        return False
    key = metadata_key(coords.group_id, coords.artifact_id)
    current = storage.get(key)
    if current is None:
        return False
    try:
        meta = parse_metadata(current[0], key)
    except RepoError:
        return False
    if coords.version not in meta.versions:
        return False
    return all((got := storage.get(f"{key}.{n}")) is not None and got[0] == h.encode()
               for n, h in digests_of(current[0]).items())


# ------------------------------------------------------------------ read

def list_artifacts(storage) -> list[Coords]:
    """Every version the repository's metadata files list (what a consumer can resolve)."""
    out = []
    for obj in storage.list(PREFIX + "/"):
        if obj.key.endswith("/" + METADATA):
            got = storage.get(obj.key)
            if got is None:
                continue
            try:
                meta = parse_metadata(got[0], obj.key)
                out += [Coords(meta.group_id, meta.artifact_id, v) for v in meta.versions]
            except RepoError:
                continue
    return sorted(out, key=lambda c: (c.group_id, c.artifact_id,
                                      functools.cmp_to_key(compare_versions)(c.version)))


def repository_url(storage) -> str:
    """The URL a consumer's pom names: file:// for a directory, the public URL on S3."""
    target = getattr(storage, "target", None)
    if target is not None:
        return f"{target.public_url()}/{PREFIX}"
    return f"{Path(storage.root).resolve().as_uri()}/{PREFIX}"


def repository_xml(url: str, repo_id: str = "mxbuild") -> str:
    """The <repositories> a service's pom adds: releases only, checksums enforced."""
    return f"""<repositories>
  <repository>
    <id>{escape(repo_id)}</id>
    <url>{escape(url)}</url>
    <releases><enabled>true</enabled><checksumPolicy>fail</checksumPolicy></releases>
    <snapshots><enabled>false</enabled></snapshots>
  </repository>
</repositories>
"""


def dependency_xml(coords: Coords) -> str:
    return f"""<dependencies>
  <dependency>
    <groupId>{escape(coords.group_id)}</groupId>
    <artifactId>{escape(coords.artifact_id)}</artifactId>
    <version>{escape(coords.version)}</version>
  </dependency>
</dependencies>
"""


def pom_snippet(url: str, coords: Coords, repo_id: str = "mxbuild") -> str:
    """What a service's pom adds: one repository and one dependency."""
    return repository_xml(url, repo_id) + dependency_xml(coords)


# ------------------------------------------------------------------ verify

def verify_maven(storage) -> list[str]:
    """Every problem a Maven consumer (or the next publish) would trip over; [] if clean.
    Metadata parses, names its own path, lists only complete versions in Maven order with
    the newest as latest/release, and its checksum files match it; every jar and pom has
    all four checksum files and they match; every version directory is listed."""
    where = storage.describe()
    keys = {obj.key for obj in storage.list(PREFIX + "/")}
    problems: list[str] = []
    listed: dict[str, set[str]] = {}          # artifact dir -> versions its metadata lists
    for key in sorted(k for k in keys if k.endswith("/" + METADATA)):
        adir = key[: -len(METADATA) - 1]
        got = storage.get(key)
        if got is None:
            continue
        try:
            meta = parse_metadata(got[0], f"{where}/{key}")
        except RepoError as exc:
            problems.append(exc.message)
            listed[adir] = set()
            continue
        listed[adir] = set(meta.versions)
        if artifact_dir(meta.group_id, meta.artifact_id) != adir:
            problems.append(f"{where}/{key}: names {meta.group_id}:{meta.artifact_id}, which "
                            "does not live here")
        for version in meta.versions:       # (their checksum files: checked below)
            stem = f"{adir}/{version}/{meta.artifact_id}-{version}"
            if f"{stem}.jar" not in keys or f"{stem}.pom" not in keys:
                problems.append(f"{where}/{key}: lists {version}, whose jar or pom is missing "
                                "(restore it, or re-run its publish)")
        want = tuple(maven_sorted(set(meta.versions)))
        if meta.versions != want:
            problems.append(f"{where}/{key}: versions are not in Maven order or repeat "
                            "(re-run a publish of this artifact)")
        if want and (meta.latest, meta.release) != (want[-1], want[-1]):
            problems.append(f"{where}/{key}: latest/release {meta.latest}/{meta.release}, the "
                            f"newest version is {want[-1]} (re-run a publish of this artifact)")
        problems += _check_sums(storage, keys, key, got[0], "an unfinished publish: re-run it")
    versions: dict[str, set[str]] = {}        # version dir -> file names in it
    for key in keys:
        adir, _, rest = key.rpartition("/")
        vdir, _, version = adir.rpartition("/")
        artifact = vdir.rsplit("/", 1)[-1]
        if rest.startswith(f"{artifact}-{version}.") and "/" in vdir:
            versions.setdefault(adir, set()).add(rest)
    for vdir, names in sorted(versions.items()):
        adir, _, version = vdir.rpartition("/")
        artifact = adir.rsplit("/", 1)[-1]
        stem = f"{artifact}-{version}"
        for ext in ("pom", "jar"):
            main = f"{vdir}/{stem}.{ext}"
            if f"{stem}.{ext}" not in names:
                problems.append(f"{where}/{main}: missing (an interrupted publish: re-run it)")
                continue
            got = storage.get(main)
            if got is not None:
                problems += _check_sums(storage, keys, main, got[0],
                                        "restore them from the published file's build")
        if version not in listed.get(adir, set()):
            problems.append(f"{where}/{vdir}: not listed by {adir}/{METADATA} (an interrupted "
                            "publish: re-run it)")
    return problems


def _check_sums(storage, keys: set[str], key: str, data: bytes, fix: str) -> list[str]:
    where = storage.describe()
    problems = []
    for name, hexdigest in digests_of(data).items():
        sum_key = f"{key}.{name}"
        got = storage.get(sum_key) if sum_key in keys else None
        if got is None:
            problems.append(f"{where}/{sum_key}: missing ({fix})")
        elif got[0].decode(errors="replace").split()[:1] != [hexdigest]:
            problems.append(f"{where}/{sum_key}: does not match {key.rsplit('/', 1)[-1]} "
                            f"({fix})")
    return problems
