"""Engine images through the artifact cache: a machine whose engine lacks an image loads it
from there instead of bootstrapping or building it.

Image tags are content hashes of their inputs (images.py), so a tag names the same image on
every machine. An image is stored as `images/<repo>/<tag>/<image id>.tar` (`docker save`)
and an index naming the tar, its sha256 and the image id, written last: a reader never sees
an index whose tar is incomplete. Loading checks the tar's sha256 and, after `docker load`,
that the engine got the recorded image id; anything else is a warning and the caller builds
the image itself. A cache that cannot be reached is never a failed build.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import IO

from docker.errors import APIError, DockerException, ImageNotFound

from .errors import MxbuildError, PoolConflictError
from .fetch import sha256_file
from .log import log

INDEX = "index.json"
CHUNK = 4 << 20


def _prefix(tag: str) -> str:
    """images/<repo>/<tag> (a tag is repo:tag; both are safe key characters)."""
    repo, _, name = tag.rpartition(":")
    return f"images/{repo}/{name}"


class ImageStore:
    def __init__(self, remote, work: Path):
        """remote: the artifact cache (a repository storage backend) or None (a no-op
        store); work: where tars are written while they travel."""
        self.remote = remote
        self.work = work

    def _warn(self, logf: IO[str], message: str) -> None:
        logf.write(f"warning: artifact cache {self.remote.describe()}: {message}\n")
        log.warning("artifact cache %s: %s", self.remote.describe(), message)

    def _give_up(self, logf: IO[str], message: str) -> None:
        """A load that cannot be trusted or completed: the caller builds the image."""
        self._warn(logf, f"{message} (building the image here)")

    def _index(self, tag: str, logf: IO[str]) -> dict | None:
        try:
            got = self.remote.get(f"{_prefix(tag)}/{INDEX}")
            return json.loads(got[0]) if got else None
        except (MxbuildError, ValueError) as exc:
            self._warn(logf, f"{tag}: cannot read its index: {exc}")
            return None

    def recorded_id(self, tag: str) -> str | None:
        """The image id the artifact cache records for `tag` (None: not there, or no
        cache), without downloading the image (invoke plan)."""
        if self.remote is None:
            return None
        index = self._index(tag, io.StringIO())
        return index["id"] if index else None

    def load(self, client, tag: str, logf: IO[str]):
        """The engine's image for `tag`, loaded from the artifact cache; None when the cache
        has none or what it has is not the recorded image (the caller builds it)."""
        if self.remote is None:
            return None
        index = self._index(tag, logf)
        if index is None:
            return None
        start = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work, prefix="load-") as tmp:
            tar = Path(tmp) / "image.tar"
            try:
                if not self.remote.download(f"{_prefix(tag)}/{index['tar']}", tar):
                    self._give_up(logf, f"{tag}: the index names {index['tar']}, which is "
                                  "missing")
                    return None
            except MxbuildError as exc:
                self._give_up(logf, f"{tag}: {exc}")
                return None
            if sha256_file(tar) != index["sha256"]:
                self._give_up(logf, f"{tag}: {index['tar']} is not the bytes its index names")
                return None
            try:
                with open(tar, "rb") as f:
                    client.images.load(f)
                image = client.images.get(tag)
            except (DockerException, ImageNotFound) as exc:
                self._give_up(logf, f"{tag}: docker load failed: {exc}")
                return None
        if image.id != index["id"]:
            self._give_up(logf, f"{tag}: loaded image {image.id}, the index records "
                          f"{index['id']}; removed it")
            try:
                client.images.remove(tag, force=True)
            except APIError:
                pass
            return None
        logf.write(f"loaded {tag} ({image.id}) from the artifact cache "
                   f"{self.remote.describe()} in {time.monotonic() - start:.1f} s\n")
        return image

    def save(self, client, tag: str, image, logf: IO[str]) -> None:
        """Store the engine's image for `tag` unless the cache has one for this tag (two
        machines that built the same tag: the first one's stays, the others load it).
        One index read when it is there already."""
        if self.remote is None or self._index(tag, logf) is not None:
            return
        start = time.monotonic()
        name = f"{image.id.split(':', 1)[-1]}.tar"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=self.work, prefix="save-") as tmp:
                tar = Path(tmp) / name
                with open(tar, "wb") as f:
                    for chunk in client.api.get_image(tag, chunk_size=CHUNK):
                        f.write(chunk)
                sha = sha256_file(tar)
                self.remote.put_new(f"{_prefix(tag)}/{name}", src=tar, sha256=sha)
                index = {"tag": tag, "id": image.id, "tar": name, "sha256": sha,
                         "size": tar.stat().st_size}
                self.remote.put_new(f"{_prefix(tag)}/{INDEX}",
                                    data=json.dumps(index, indent=2, sort_keys=True).encode())
        except PoolConflictError:
            logf.write(f"{tag}: another machine stored it first\n")
            return
        except (MxbuildError, DockerException, OSError) as exc:
            self._warn(logf, f"could not store {tag}: {exc}")
            return
        logf.write(f"stored {tag} in the artifact cache {self.remote.describe()} "
                   f"({index['size'] / 1e6:.0f} MB, {time.monotonic() - start:.1f} s)\n")
