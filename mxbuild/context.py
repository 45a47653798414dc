"""The run context: what every stage of every cell shares during one command — options,
data folders, the Docker engine, the stage cache, the report, the repository and its
signer — as one object instead of ten parameters."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .cache import StageCache
from .image_store import ImageStore
from .options import Options
from .paths import DataFolders


class Locks:
    """Named locks shared by the cells of a run (--jobs threads): one builds a distro's
    images or the smoke fixtures while the others wait, then reuse."""

    def __init__(self):
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())


@dataclass(frozen=True)
class RunContext:
    opts: Options
    data: DataFolders
    cache: StageCache
    docker: Any = None          # docker.DockerClient; None: planning without an engine
    report: Any = None          # report.Report of the run
    storage: Any = None         # the repository (LocalStorage / S3Storage); None: no publish
    signer: Any = None          # repo.sign.Signer
    gpu: bool = False           # a GPU the smoke containers can use (asked once per run)
    locks: Locks = field(default_factory=Locks)
    image_store: ImageStore = field(default_factory=lambda: ImageStore(None, None))


def open_run(opts: Options, *, docker=None, report=None, storage=None, signer=None,
             gpu: bool | None = None) -> RunContext:
    from .smoke import gpu_present
    cache = StageCache.of(opts)
    return RunContext(opts, DataFolders(opts.root), cache, docker, report, storage, signer,
                      gpu_present() if gpu is None else gpu,
                      image_store=ImageStore(cache.remote, opts.cache_dir / "image-transfer"))
