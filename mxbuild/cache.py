"""Stage outputs keyed by a content hash of everything that goes into them.

A stage whose key is in the cache is not run again: its outputs are taken from the cache
and the report says "reused". Entries are directories written under a temporary name and
renamed into place, with a manifest (what the stage reported) written last, so a stopped
run never leaves an entry that looks complete.

With an artifact cache configured (MXBUILD_ARTIFACT_CACHE / --artifact-cache: s3://BUCKET/
PREFIX or a shared directory), every entry stored is also uploaded there (files first, the
index naming them with their sha256 last), and a local miss is looked up there: CI agents
that start empty reuse what another agent built. A cache that cannot be reached is a
warning, not a failed build.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import MxbuildError, PoolConflictError
from .fetch import sha256_file
from .log import log

MANIFEST = "manifest.json"
REMOTE_INDEX = "index.json"   # {"manifest": the stage's manifest, "files": {name: sha256}}


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


def artifact_storage(opts):
    """The run's artifact cache (a repository storage backend), or None. Opened once per
    run: the run context holds the stage cache."""
    if not opts.artifact_cache:
        return None
    from .repo.target import S3Options, open_storage
    # content-addressed and create-only: no compare-and-swap, so no probe of the server
    return open_storage(opts.artifact_cache, opts.artifact_s3 or S3Options(),
                        check_server=False)


class StageCache:
    def __init__(self, root: Path, force: frozenset[str] = frozenset(), remote=None):
        """force: stage names never served from the cache ("all" for every stage).
        remote: an artifact cache (storage backend) behind the local one, or None."""
        self.root = root
        self.force = force
        self.remote = remote

    @classmethod
    def of(cls, opts) -> "StageCache":
        """The run's stage cache: under the cache directory, honouring --force, backed by
        the artifact cache when one is configured."""
        return cls(opts.cache_dir / "stages", opts.force, artifact_storage(opts))

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    @staticmethod
    def _remote_key(stage: str, key: str, name: str) -> str:
        return f"stages/{stage}/{key[:2]}/{key}/{name}"

    def _forced(self, stage: str) -> bool:
        return stage in self.force or "all" in self.force

    def _local(self, stage: str, key: str) -> tuple[Path, dict] | None:
        entry = self._dir(stage, key)
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return entry, manifest

    def _remote_index(self, stage: str, key: str) -> dict | None:
        if self.remote is None:
            return None
        try:
            got = self.remote.get(self._remote_key(stage, key, REMOTE_INDEX))
            return json.loads(got[0]) if got else None
        except (MxbuildError, ValueError) as exc:
            log.warning("artifact cache %s: %s (continuing without it)",
                        self.remote.describe(), exc)
            return None

    def get(self, stage: str, key: str) -> tuple[Path, dict] | None:
        if self._forced(stage):
            return None
        return self._local(stage, key) or self._fetch(stage, key)

    def has(self, stage: str, key: str) -> dict | None:
        """The manifest of a usable entry, local or in the artifact cache, without
        downloading anything (invoke plan)."""
        if self._forced(stage):
            return None
        hit = self._local(stage, key)
        if hit:
            return hit[1]
        index = self._remote_index(stage, key)
        return index["manifest"] if index else None

    def _fetch(self, stage: str, key: str) -> tuple[Path, dict] | None:
        """Download an entry from the artifact cache into the local cache."""
        index = self._remote_index(stage, key)
        if index is None:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".fetch-"))
        try:
            for name, sha in index["files"].items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not self.remote.download(self._remote_key(stage, key, name), dest) \
                        or sha256_file(dest) != sha:
                    log.warning("artifact cache %s: %s/%s is missing or not the bytes its "
                                "index names; building instead", self.remote.describe(),
                                stage, name)
                    return None
            entry = self._put_local(stage, key, {n: tmp / n for n in index["files"]},
                                    index["manifest"])
        except MxbuildError as exc:
            log.warning("artifact cache %s: %s (building instead)", self.remote.describe(), exc)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("%s: fetched %s from the artifact cache %s", stage, key[:12],
                 self.remote.describe())
        return entry, index["manifest"]

    def put(self, stage: str, key: str, files: dict[str, Path], manifest: dict) -> Path:
        """Store files (name in the entry -> source path; hard-linked where possible) and
        the manifest, here and in the artifact cache; returns the entry directory."""
        entry = self._put_local(stage, key, files, manifest)
        if self.remote is not None:
            self._push(stage, key, entry, list(files), manifest)
        return entry

    def _push(self, stage: str, key: str, entry: Path, names: list[str],
              manifest: dict) -> None:
        try:
            hashes = {}
            for name in names:
                hashes[name] = sha256_file(entry / name)
                self.remote.put_new(self._remote_key(stage, key, name), src=entry / name,
                                    sha256=hashes[name])
            index = json.dumps({"manifest": manifest, "files": hashes}, indent=2,
                               sort_keys=True).encode()
            self.remote.put_new(self._remote_key(stage, key, REMOTE_INDEX), data=index)
        except PoolConflictError as exc:
            # same inputs, other bytes: a stage that is not reproducible; keep the first
            log.warning("artifact cache %s: %s", self.remote.describe(), exc)
        except MxbuildError as exc:
            log.warning("artifact cache %s: could not store %s/%s: %s",
                        self.remote.describe(), stage, key[:12], exc)

    def _put_local(self, stage: str, key: str, files: dict[str, Path], manifest: dict) -> Path:
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
