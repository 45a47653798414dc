"""Per-stage ✓/✗ lines with durations, per-stage logs, and out/report.json."""
from __future__ import annotations

import contextlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from .errors import MxbuildError, StageError
from .log import console
from .matrix import Cell

REPORT_FORMAT = 1


@dataclass
class StageRecord:
    name: str
    status: str = "pending"     # ok | failed | skipped
    seconds: float = 0.0
    log: str = ""
    note: str = ""


@dataclass
class CellRecord:
    cell: Cell
    stages: list[StageRecord] = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)
    error: StageError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status == "ok" for s in self.stages)


class Report:
    def __init__(self, out_dir: Path, logs_dir: Path):
        self.out_dir, self.logs_dir = out_dir, logs_dir
        self.cells: dict[str, CellRecord] = {}
        self.started = time.time()

    def cell(self, cell: Cell) -> CellRecord:
        return self.cells.setdefault(cell.id, CellRecord(cell))

    @contextlib.contextmanager
    def stage(self, cell: Cell, name: str) -> Iterator[IO[str]]:
        """Time a stage, log it to out/logs/<cell>/<stage>.log, print ✓/✗.

        Any failure becomes a StageError naming the cell, the stage and the log.
        """
        record = self.cell(cell)
        stage = StageRecord(name)
        record.stages.append(stage)
        log_path = self.logs_dir / cell.id / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        stage.log = str(log_path)
        start = time.monotonic()
        with open(log_path, "w") as logf:
            try:
                yield logf
            except BaseException as exc:
                stage.seconds = time.monotonic() - start
                stage.status = "failed"
                if isinstance(exc, MxbuildError) and not isinstance(exc, StageError):
                    logf.write(f"\n{exc.render()}\n")
                    err = StageError(cell.id, name, exc.message, log_path, exc.hint)
                    # keep a specific cause's code (checksum 4, docker 5, …)
                    if exc.exit_code != MxbuildError.exit_code:
                        err.exit_code = exc.exit_code
                elif isinstance(exc, StageError):
                    err = exc
                elif isinstance(exc, Exception):
                    logf.write("\n" + traceback.format_exc())
                    err = StageError(cell.id, name, f"{type(exc).__name__}: {exc}", log_path)
                else:
                    raise
                stage.note = err.message
                record.error = err
                self._line(cell, stage)
                raise err from exc
        stage.seconds = time.monotonic() - start
        stage.status = "ok"
        self._line(cell, stage)

    def skip_rest(self, cell: Cell, names: list[str]) -> None:
        record = self.cell(cell)
        done = {s.name for s in record.stages}
        for name in names:
            if name not in done:
                record.stages.append(StageRecord(name, "skipped", note="an earlier stage failed"))

    def _line(self, cell: Cell, stage: StageRecord) -> None:
        mark = "[green]✓[/]" if stage.status == "ok" else "[red]✗[/]"
        extra = f"  {stage.note.splitlines()[0][:160]}" if stage.status == "failed" else ""
        console.print(f"{mark} {cell.id:<24} {stage.name:<8} {stage.seconds:7.1f}s{extra}")

    def as_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "ok": all(r.ok for r in self.cells.values()),
            "cells": [{
                "id": cid, **{k: v for k, v in r.cell.summary().items() if k != "id"},
                "ok": r.ok,
                "stages": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2),
                            "log": s.log, **({"note": s.note} if s.note else {})}
                           for s in r.stages],
                **r.artifacts,
            } for cid, r in sorted(self.cells.items())],
        }

    def write(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "report.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def summary(self) -> None:
        ok = sum(1 for r in self.cells.values() if r.ok)
        total = len(self.cells)
        colour = "green" if ok == total else "red"
        console.print(f"[{colour}]{ok}/{total} cells ok[/] in {time.time() - self.started:.1f}s"
                      f" — report: {self.out_dir / 'report.json'}")
