"""Packages and Release files (deb822 via python-debian), compression, hashes.

One suite holds every architecture: a component has one `binary-<arch>/Packages` per
architecture it holds (its entries' `Architecture`), and the Release's `Architectures`
is the union of the indexes it names — computed, never configured, so a single-arch
suite reads `Architectures: amd64` as it always did.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import lzma
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Packages, Release
from debian.debfile import DebFile
from debian.debian_support import Version

from ..errors import RepoError

HASHES = (("SHA256", "sha256"), ("SHA512", "sha512"))
# Field order of a Packages paragraph after the control fields (as apt-ftparchive does).
FILE_FIELDS = ("Filename", "Size", "MD5sum", "SHA256", "SHA512")


@dataclass(frozen=True)
class RepoIdentity:
    """Stable across publishes: apt asks users to confirm when Origin/Label change."""
    origin: str = "mxbuild"
    label: str = "mxbuild MXNet native libraries"
    description: str = "Apache MXNet native library (libmxnet) built by mxbuild"


def pool_key(component: str, package: str, filename: str) -> str:
    prefix = package[:4] if package.startswith("lib") else package[:1]
    return f"pool/{component}/{prefix}/{package}/{filename}"


def packages_dir(codename: str, component: str, arch: str) -> str:
    return f"dists/{codename}/{component}/binary-{arch}"


def packages_name(component: str, arch: str, name: str = "Packages") -> str:
    """An index's name in a Release (relative to dists/<codename>/)."""
    return f"{component}/binary-{arch}/{name}"


def by_hash_key(directory: str, algo: str, hexdigest: str) -> str:
    return f"{directory}/by-hash/{algo}/{hexdigest}"


def deb_entry(deb: Path, component: str) -> Packages:
    """The Packages paragraph of a .deb: its control fields plus where and what it is."""
    try:
        control = DebFile(str(deb)).debcontrol()
    except Exception as exc:  # python-debian raises several types for broken archives
        raise RepoError(f"{deb} is not a readable .deb: {exc}", "rebuild the package")
    entry = Packages()
    for key, value in control.items():
        entry[key] = value
    data = deb.read_bytes() if deb.stat().st_size < (1 << 20) else None
    digests = _file_digests(deb) if data is None else _digests(data)
    entry["Filename"] = pool_key(component, control["Package"], deb.name)
    entry["Size"] = str(deb.stat().st_size)
    entry["MD5sum"] = digests["md5"]
    entry["SHA256"] = digests["sha256"]
    entry["SHA512"] = digests["sha512"]
    return entry


def digest(algo: str, data: bytes) -> str:
    return hashlib.new(algo, data).hexdigest()


def _digests(data: bytes) -> dict[str, str]:
    return {n: hashlib.new(n, data).hexdigest() for n in ("md5", "sha256", "sha512")}


def _file_digests(path: Path) -> dict[str, str]:
    hs = {n: hashlib.new(n) for n in ("md5", "sha256", "sha512")}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hs.values():
                h.update(block)
    return {n: h.hexdigest() for n, h in hs.items()}


def entry_key(entry) -> tuple[str, str, str]:
    return entry["Package"], entry["Version"], entry["Architecture"]


def parse_packages(text: str) -> list[Packages]:
    return list(Packages.iter_paragraphs(text, use_apt_pkg=False))


def merge(existing: list, new: list) -> tuple[list, list]:
    """Add new entries; keep every older version. Returns (merged, actually_added)."""
    by_key = {entry_key(e): e for e in existing}
    added = []
    for entry in new:
        old = by_key.get(entry_key(entry))
        if old is not None:
            if old["SHA256"] != entry["SHA256"]:
                raise RepoError(
                    f"{'/'.join(entry_key(entry))} is already published with different content",
                    "bump the packaging revision so the new build gets a new version")
            continue
        by_key[entry_key(entry)] = entry
        added.append(entry)
    merged = sorted(by_key.values(),
                    key=lambda e: (e["Package"], Version(e["Version"]), e["Architecture"]))
    return merged, added


def render_packages(entries: list) -> bytes:
    return "\n".join(_ordered(e).dump() for e in entries).encode()


def _ordered(entry) -> Packages:
    out = Packages()
    for key in entry:
        if key not in FILE_FIELDS:
            out[key] = entry[key]
    for key in FILE_FIELDS:
        if key in entry:
            out[key] = entry[key]
    return out


def compressed_variants(raw: bytes) -> dict[str, bytes]:
    """Packages in the forms apt may ask for; deterministic (no names, no timestamps)."""
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(raw)
    return {"Packages": raw, "Packages.gz": gz.getvalue(),
            "Packages.xz": lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)}


def release_date(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")


@dataclass(frozen=True)
class IndexFile:
    """One file a Release names: its path under dists/<codename>/, size and hashes."""
    name: str
    size: int
    sha256: str
    sha512: str

    @classmethod
    def of(cls, name: str, data: bytes) -> "IndexFile":
        return cls(name, len(data), digest("sha256", data), digest("sha512", data))

    def hash(self, field: str) -> str:
        return {"SHA256": self.sha256, "SHA512": self.sha512}[field]

    @property
    def component(self) -> str:
        return self.name.split("/")[0]

    @property
    def arch(self) -> str | None:
        """The architecture of a binary-<arch>/ index (None: another kind of file)."""
        parts = self.name.split("/")
        return parts[1][len("binary-"):] if len(parts) > 2 and parts[1].startswith(
            "binary-") else None

    def by_hash_key(self, codename: str, field: str) -> str:
        """Where this exact content lives under by-hash/ for the given hash field."""
        directory = f"dists/{codename}/{self.name.rsplit('/', 1)[0]}"
        return by_hash_key(directory, field, self.hash(field))


def render_release(codename: str, components: list[str], files: list[IndexFile],
                   date: str, identity: RepoIdentity = RepoIdentity()) -> str:
    rel = Release()
    rel["Origin"] = identity.origin
    rel["Label"] = identity.label
    rel["Suite"] = codename
    rel["Codename"] = codename
    rel["Date"] = date
    rel["Architectures"] = " ".join(sorted({f.arch for f in files if f.arch}))
    rel["Components"] = " ".join(sorted(components))
    rel["Description"] = identity.description
    rel["Acquire-By-Hash"] = "yes"
    ordered = sorted(files, key=lambda f: f.name)
    for field, algo in HASHES:
        rel[field] = [{algo: f.hash(field), "size": str(f.size), "name": f.name}
                      for f in ordered]
    return rel.dump()


def parse_release(text: str) -> Release:
    return Release(text)


def release_files(release: Release) -> dict[str, IndexFile]:
    """The files a Release names (both hash lists must agree on names and sizes)."""
    by_name: dict[str, dict] = {}
    for field, algo in HASHES:
        for f in release.get(field, []):
            entry = by_name.setdefault(f["name"], {"size": int(f["size"])})
            if entry["size"] != int(f["size"]):
                raise RepoError(f"Release lists {f['name']} with two sizes",
                                "the Release file is corrupt: re-run the publish")
            entry[algo] = f[algo]
    missing = [n for n, e in by_name.items() if "sha256" not in e or "sha512" not in e]
    if missing:
        raise RepoError(f"Release lacks a SHA256 or SHA512 entry for {missing}",
                        "publish again with this mxbuild to regenerate the Release")
    return {n: IndexFile(n, e["size"], e["sha256"], e["sha512"]) for n, e in by_name.items()}
