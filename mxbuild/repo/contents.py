"""Contents indices (Debian's `<component>/Contents-<arch>.gz`): which package ships a path,
for `apt-file search`.

Format (Debian wiki RepositoryFormat, "Contents indices"): one line per file, sorted,
"path<whitespace>section/package[,section/package…]", paths without a leading "./";
directories are not listed. A package with several published versions lists the union of
their files (Contents names packages, not versions).

Kept incrementally, like the Packages indexes: the committed Contents says which paths each
package holds, so a publish adds the files of its new .debs (read from the local file) and
reads no other .deb. Only a commit that drops some versions of a package while others stay
(remove, retention) — or a suite made before Contents existed — reads the .debs of the
versions that stay, from the pool.
"""
from __future__ import annotations

import gzip
import io
import tempfile
from collections import defaultdict
from pathlib import Path

from debian.debfile import DebFile
from debian.debian_support import Version

from ..errors import RepoError
from ..fetch import sha256_file

DEFAULT_SECTION = "misc"      # what Debian's tools assume for a package without Section


def contents_name(component: str, arch: str, suffix: str = ".gz") -> str:
    """The index's name in a Release (relative to dists/<codename>/)."""
    return f"{component}/Contents-{arch}{suffix}"


def variants(component: str, arch: str, raw: bytes) -> dict[str, bytes]:
    """The files a Release names for one Contents: the .gz apt-file downloads, and the
    uncompressed one, which apt needs listed (it looks a target up by its uncompressed
    name, as Debian's Release lists it: aptly-dev/aptly#756) and is served like the
    uncompressed Packages."""
    return {contents_name(component, arch, ""): raw,
            contents_name(component, arch): compress(raw)}


def deb_paths(deb: Path) -> frozenset[str]:
    """Every non-directory member of a .deb's data archive, without the leading "./"."""
    try:
        members = DebFile(str(deb)).data.tgz().getmembers()
    except Exception as exc:  # python-debian raises several types for broken archives
        raise RepoError(f"{deb} is not a readable .deb: {exc}", "rebuild the package")
    return frozenset(m.name.removeprefix("./").lstrip("/") for m in members if not m.isdir())


def parse(data: bytes) -> dict[str, set[str]]:
    """package name -> its paths, from a (gzipped) Contents file."""
    text = gzip.decompress(data).decode() if data[:2] == b"\x1f\x8b" else data.decode()
    by_package: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        if not line.strip():
            continue
        path, _, where = line.rstrip().rpartition(" ")
        path = path.rstrip()
        if not path:
            raise RepoError(f"Contents line {line!r} names no package",
                            "the Contents file is corrupt: re-run the publish")
        for qualified in where.split(","):
            by_package[qualified.rsplit("/", 1)[-1]].add(path)
    return dict(by_package)


def render(paths_by_package: dict[str, set[str] | frozenset[str]],
           sections: dict[str, str]) -> bytes:
    """The uncompressed Contents text of these packages (sorted, deterministic)."""
    owners: dict[str, list[str]] = defaultdict(list)
    for package, paths in paths_by_package.items():
        qualified = f"{sections.get(package) or DEFAULT_SECTION}/{package}"
        for path in paths:
            owners[path].append(qualified)
    return "".join(f"{path.ljust(55)} {','.join(sorted(owners[path]))}\n"
                   for path in sorted(owners)).encode()


def compress(raw: bytes) -> bytes:
    """gzip without a name or timestamp: the same entries give the same bytes."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(raw)
    return out.getvalue()


class DebPaths:
    """The file lists of .debs, by (Filename, SHA256): those of the .debs being published
    (given), else read from the pool once (and kept across a publish's retries)."""

    def __init__(self, storage, known: dict[tuple[str, str], frozenset[str]] | None = None):
        self.storage = storage
        self.known = dict(known or {})

    def of(self, entry) -> frozenset[str]:
        key = (entry["Filename"], entry["SHA256"])
        if key not in self.known:
            with tempfile.TemporaryDirectory(prefix="mxbuild-contents-") as tmp:
                deb = Path(tmp) / Path(entry["Filename"]).name
                if not self.storage.download(entry["Filename"], deb):
                    raise RepoError(f"{self.storage.describe()}/{entry['Filename']}, listed in "
                                    "the index, is missing: its files cannot be listed in "
                                    "Contents", "run `invoke repo.verify`; restore the file "
                                    "from a backup or remove the version (repo.remove)")
                if sha256_file(deb) != entry["SHA256"]:
                    raise RepoError(f"{self.storage.describe()}/{entry['Filename']} does not "
                                    "match its index entry",
                                    "run `invoke repo.verify`; restore the file from a backup")
                self.known[key] = deb_paths(deb)
        return self.known[key]


def updated(previous: dict[str, set[str]] | None, entries: list, changed: list,
            debs: DebPaths) -> dict[str, set[str]]:
    """package -> paths after a commit: `entries` are the arch's entries after it, `changed`
    those it added or dropped (of any arch), `previous` the committed Contents (None: none
    yet, so every package is listed from its .debs)."""
    versions: dict[str, list] = defaultdict(list)
    for e in entries:
        versions[e["Package"]].append(e)
    listed = {(e["Filename"], e["SHA256"]) for e in entries}
    gone = {e["Package"] for e in changed if (e["Filename"], e["SHA256"]) not in listed}
    new = defaultdict(list)
    for e in changed:
        if (e["Filename"], e["SHA256"]) in listed:
            new[e["Package"]].append(e)
    out: dict[str, set[str]] = {}
    for package, kept in versions.items():
        if previous is None or package in gone or package not in previous and not new[package]:
            # the union over what stays, read from the .debs
            out[package] = set().union(*(debs.of(e) for e in kept))
        else:
            out[package] = set(previous.get(package, set())).union(
                *(debs.of(e) for e in new[package]))
    return out


def sections(entries: list) -> dict[str, str]:
    """package -> the Section of its newest entry."""
    newest: dict[str, object] = {}
    for e in entries:
        held = newest.get(e["Package"])
        if held is None or Version(e["Version"]) > Version(held["Version"]):
            newest[e["Package"]] = e
    return {p: e.get("Section", DEFAULT_SECTION) for p, e in newest.items()}
