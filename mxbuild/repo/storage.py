"""Storage backends of the one publish protocol: a local directory and S3.

Both offer get / exists / put_new / put_cas / put / list / delete with the same meaning;
publish.py never knows which one it talks to.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import PoolConflictError, RepoError
from ..fetch import sha256_file


@dataclass(frozen=True, order=True)
class StoredObject:
    key: str
    size: int
    modified: float   # seconds since the epoch


class CasConflict(Exception):
    """Another publisher committed first: re-read the state and merge again."""


class LocalStorage:
    """A directory served as-is over http. Writes are atomic renames; compare-and-swap
    holds an advisory lock across compare + rename (the local analogue of S3 IfMatch)."""

    serves_directory_index = True   # served by an http server that maps dir/ to dir/index.html

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._inside = str(root.resolve()) + os.sep

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        # Keys come from index files (a mirrored source's Filename fields): `..` must not
        # leave the root. Checked on the words of the path, not by resolving it (a lstat
        # per component per key was a quarter of a mirror's time).
        path = os.path.normpath(self._inside + key)
        if not path.startswith(self._inside):
            raise RepoError(f"key {key!r} escapes the repository", "")
        return Path(path)

    @contextmanager
    def _locked(self):
        with open(self.root / ".mxbuild-publish.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def token_of(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, self.token_of(data)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def download(self, key: str, dest: Path) -> bool:
        """Copy key to dest (streamed); False if there is no such key."""
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            return False
        return True

    def _write(self, key: str, data: bytes | None = None, src: Path | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                if src is not None:
                    with open(src, "rb") as s:
                        shutil.copyfileobj(s, f, 1 << 20)
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_new(self, key: str, data: bytes | None = None, src: Path | None = None,
                sha256: str | None = None) -> bool:
        """Create key; True if written, False if it already held the same bytes.
        Different bytes under an existing key: PoolConflictError (never overwritten)."""
        if sha256:
            want = sha256
        elif src is not None:
            want = sha256_file(src)
        else:
            want = hashlib.sha256(data).hexdigest()
        with self._locked():
            existing = self._path(key)
            if existing.exists():
                have = sha256_file(existing)
                if have != want:
                    raise PoolConflictError(
                        f"{self.describe()}/{key} already exists with different content "
                        f"(sha256 {have}, new {want})")
                return False
            self._write(key, data, src)
            return True

    def put_cas(self, key: str, data: bytes, expected_token: str | None) -> str:
        """Write key only if its current token is expected_token (None: must not exist)."""
        with self._locked():
            current = self.get(key)
            token = current[1] if current else None
            if token != expected_token:
                raise CasConflict(key)
            self._write(key, data)
        return self.token_of(data)

    def put(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def sha256_of(self, key: str) -> str | None:
        path = self._path(key)
        return sha256_file(path) if path.exists() else None

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = self.root
        out = []
        for path in (base / prefix).rglob("*") if (base / prefix).exists() else []:
            if path.is_file() and not path.name.startswith((".tmp-", ".mxbuild")):
                st = path.stat()
                out.append(StoredObject(str(path.relative_to(base)), st.st_size, st.st_mtime))
        return sorted(out)

    def subdirs(self, prefix: str) -> list[str]:
        """The names of the 'directories' right under prefix (which ends with /)."""
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def retained_until(self, key: str) -> float | None:
        """A directory has no retention (S3 Object Lock: see S3Storage)."""
        return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

