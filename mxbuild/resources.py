"""How many cells may run at once: `--jobs N`, and no more than memory and disk allow
(a GPU cell holds ~1 GB of library several times over: payload, package tree, .deb)."""
from __future__ import annotations

import contextlib
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .matrix import Cell

GB = 1 << 30
DISK_RESERVE = 5 * GB          # never fill the disk to the brim
MEMINFO = Path("/proc/meminfo")
UNKNOWN_MEMORY = 8 * GB        # assumed where MemAvailable cannot be read


@dataclass(frozen=True)
class Need:
    memory: int
    disk: int


def need_of(cell: Cell) -> Need:
    """Measured peaks, rounded up: CPU cells ~190 MB of library, GPU cells ~900 MB."""
    return Need(6 * GB, 6 * GB) if cell.cuda else Need(2 * GB, 2 * GB)


def available_memory() -> int:
    """MemAvailable of MEMINFO in bytes, or UNKNOWN_MEMORY."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return UNKNOWN_MEMORY


class ResourcePool:
    """Admits a cell when a job slot is free and its memory/disk need fits beside the
    cells already running; a cell bigger than everything runs alone rather than never."""

    def __init__(self, jobs: int, memory: int, disk: int):
        self.jobs, self.memory, self.disk = max(1, jobs), memory, disk
        self._running: list[Need] = []
        self._cond = threading.Condition()

    @classmethod
    def for_host(cls, jobs: int, out_dir: Path) -> "ResourcePool":
        out_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out_dir).free - DISK_RESERVE
        return cls(jobs, int(available_memory() * 0.8), max(free, 0))

    def _fits(self, need: Need) -> bool:
        if not self._running:
            return True
        if len(self._running) >= self.jobs:
            return False
        return (sum(n.memory for n in self._running) + need.memory <= self.memory and
                sum(n.disk for n in self._running) + need.disk <= self.disk)

    @contextlib.contextmanager
    def reserve(self, need: Need) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._fits(need))
            self._running.append(need)
        try:
            yield
        finally:
            with self._cond:
                self._running.remove(need)
                self._cond.notify_all()
