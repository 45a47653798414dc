"""Stage outputs keyed by a content hash of everything that goes into them.

A stage whose key is in the cache is not run again: its outputs are taken from the cache
and the report says "reused". Entries are directories written under a temporary name and
renamed into place, with a manifest (what the stage reported) written last, so a stopped
run never leaves an entry that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .log import log

MANIFEST = "manifest.json"


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (payloads are hundreds of MB), or copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
CACHE_FORMAT = 1


def key_of(stage: str, inputs: dict) -> str:
    """sha256 of the stage name and its inputs (JSON, sorted keys)."""
    blob = json.dumps({"stage": stage, "format": CACHE_FORMAT, **inputs}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def tree_digest(*paths: Path) -> str:
    """sha256 over the relative names and contents of files (a directory: all files in
    it, sorted), e.g. recipe scripts or packaging templates."""
    h = hashlib.sha256()
    for base in paths:
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(base.parent)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class StageCache:
    def __init__(self, root: Path, force: frozenset[str] = frozenset()):
        """force: stage names never served from the cache ("all" for every stage)."""
        self.root = root
        self.force = force

    @classmethod
    def of(cls, opts) -> "StageCache":
        """The run's stage cache: under the cache directory, honouring --force."""
        return cls(opts.cache_dir / "stages", opts.force)

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    def get(self, stage: str, key: str) -> tuple[Path, dict] | None:
        if stage in self.force or "all" in self.force:
            return None
        entry = self._dir(stage, key)
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return entry, manifest

    def put(self, stage: str, key: str, files: dict[str, Path], manifest: dict) -> Path:
        """Store files (name in the entry -> source path; hard-linked where possible) and
        the manifest; returns the entry directory."""
        entry = self._dir(stage, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
        try:
            for name, src in files.items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(src, dest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            if (entry / MANIFEST).is_file():   # a concurrent run stored the same key first
                shutil.rmtree(tmp)
                return entry
            if entry.exists():                 # left incomplete by a stopped run
                shutil.rmtree(entry)
            tmp.rename(entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.debug("cached %s %s", stage, key[:12])
        return entry
