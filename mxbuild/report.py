"""Per-stage ✓/✗ lines with durations, per-stage logs; out/report.json (schema in the
README), out/junit.xml and out/report.html (a distro × variant grid)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from rich.live import Live
from rich.table import Table

from .containers import stopping
from .errors import MxbuildError, StageError
from .log import console
from .matrix import Cell
from .options import PROJECT_ROOT
from .paths import DataFolders

DISK_FULL_HINT = ("free disk space where the out directory, the cache directory and "
                  "Docker's data root live (`invoke doctor` shows each one's free space); "
                  "the stages already done are reused when the command runs again")


def disk_full(exc: BaseException) -> bool:
    """No space left: said by this process (ENOSPC) or by the Docker engine (its message)."""
    return ((isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
            or "no space left on device" in str(exc).lower())

REPORT_FORMAT = 1
REUSED = "reused: inputs unchanged (stage cache)"


@dataclass
class StageRecord:
    name: str
    status: str = "pending"     # ok | reused | failed | skipped
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
        return self.error is None and all(s.status in ("ok", "reused") for s in self.stages)


@dataclass(frozen=True)
class Axes:
    """The grid of the HTML report: a row per distro and architecture (debian12,
    debian12-arm64), a column per variant, and which (row, variant) pairs hold a cell."""
    distros: tuple[str, ...]
    variants: tuple[str, ...]
    cells: tuple[Cell, ...] = ()

    @classmethod
    def of(cls, cells) -> "Axes":
        return cls(tuple(sorted({grid_row(c) for c in cells})),
                   tuple(sorted({c.variant for c in cells}, key=_variant_order)), tuple(cells))


def grid_row(cell: Cell) -> str:
    """The HTML grid's row of a cell: its distro, with the architecture's id suffix."""
    return cell.distro.name + cell.arch.suffix


def _record_row(rec: dict) -> str:
    """grid_row of a report.json cell record: what its id has after mxnet and variant."""
    return rec["id"][len(f"{rec['mxnet']}-{rec['variant']}-"):]


def _variant_order(name: str) -> tuple[int, int, int]:
    """cpu, then CUDA versions in order: cu90 < cu92 < cu101 < cu112."""
    return (0, 0, 0) if name == "cpu" else (1, int(name[2:-1]), int(name[-1]))


class Report:
    def __init__(self, out_dir: Path, logs_dir: Path, axes: Axes | None = None):
        self.out_dir, self.logs_dir = out_dir, logs_dir
        self.axes = axes
        self.cells: dict[str, CellRecord] = {}
        self.started = time.time()
        self._lock = threading.RLock()     # cells run in threads with --jobs
        self._live: Live | None = None
        self._pending: list[Cell] = []
        self._current: dict[str, tuple[str, float]] = {}   # cell id -> (stage, started)

    def cell(self, cell: Cell) -> CellRecord:
        with self._lock:
            return self.cells.setdefault(cell.id, CellRecord(cell))

    @contextlib.contextmanager
    def live(self, cells: list[Cell]) -> Iterator[None]:
        """On a terminal: a live table, one row per cell (stage, elapsed, ✓/✗), under the
        ✓/✗ lines. Elsewhere (CI logs) only the lines."""
        self._pending = list(cells)
        if not console.is_terminal:
            yield
            return
        with Live(self._table(), console=console, refresh_per_second=2,
                  get_renderable=self._table) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def _table(self) -> Table:
        table = Table(title=f"mxbuild · {time.time() - self.started:.0f} s", expand=False)
        for col in ("cell", "stage", "elapsed", ""):
            table.add_column(col)
        for cell in self._pending:
            record = self.cells.get(cell.id)
            if cell.id in self._current:
                stage, since = self._current[cell.id]
                row = (stage, f"{time.monotonic() - since:.0f} s", "[yellow]…[/]")
            elif record is None:
                row = ("", "", "[dim]pending[/]")
            else:
                total = sum(s.seconds for s in record.stages)
                last = next((s.name for s in record.stages if s.status == "failed"),
                            record.stages[-1].name if record.stages else "")
                row = (last, f"{total:.0f} s", "[green]✓[/]" if record.ok else "[red]✗[/]")
            table.add_row(cell.id, *row)
        return table

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
        self._current[cell.id] = (name, start)
        with open(log_path, "w") as logf:
            try:
                yield logf
            except BaseException as exc:
                stage.seconds = time.monotonic() - start
                stage.status = "failed"
                if isinstance(exc, MxbuildError) and not isinstance(exc, StageError):
                    logf.write(f"\n{exc.render()}\n")
                    # a container refused because a signal arrived: we are being stopped
                    why = "interrupted" if stopping() else exc.message
                    err = StageError(cell.id, name, why, log_path,
                                     DISK_FULL_HINT if disk_full(exc) else exc.hint)
                    # keep a specific cause's code (checksum 4, docker 5, …)
                    if exc.exit_code != MxbuildError.exit_code:
                        err.exit_code = exc.exit_code
                elif isinstance(exc, StageError):
                    err = exc
                elif isinstance(exc, Exception):
                    logf.write("\n" + traceback.format_exc())
                    # a container removed under a running command: we are being stopped
                    why = "interrupted" if stopping() else f"{type(exc).__name__}: {exc}"
                    err = StageError(cell.id, name, why, log_path,
                                     DISK_FULL_HINT if disk_full(exc) else None)
                else:
                    raise
                stage.note = err.message
                record.error = err
                self._line(cell, stage)
                raise err from exc
            finally:
                self._current.pop(cell.id, None)
        stage.seconds = time.monotonic() - start
        stage.status = "reused" if stage.note == REUSED else "ok"
        self._line(cell, stage)

    def reused(self, cell: Cell) -> None:
        """Mark the cell's running stage as served from the stage cache."""
        self.cell(cell).stages[-1].note = REUSED

    def skip_rest(self, cell: Cell, names: list[str]) -> None:
        record = self.cell(cell)
        done = {s.name for s in record.stages}
        for name in names:
            if name not in done:
                record.stages.append(StageRecord(name, "skipped", note="an earlier stage failed"))

    def _line(self, cell: Cell, stage: StageRecord) -> None:
        mark = {"ok": "[green]✓[/]", "reused": "[green]=[/]"}.get(stage.status, "[red]✗[/]")
        extra = (f"  {stage.note.splitlines()[0][:160]}" if stage.status == "failed" else
                 "  reused" if stage.status == "reused" else "")
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
            } for cid, r in sorted(dict(self.cells).items())],
        }

    def write(self) -> Path:
        """report.json, junit.xml and report.html, each replaced atomically."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = self.as_dict()
            _atomic(self.out_dir / "junit.xml", junit_xml(data))
            _atomic(self.out_dir / "report.html", html_report(data, self.axes or Axes.of(
                [r.cell for r in self.cells.values()]), self.out_dir))
            return _atomic(self.out_dir / "report.json", json.dumps(data, indent=2) + "\n")

    def summary(self) -> None:
        ok = sum(1 for r in self.cells.values() if r.ok)
        total = len(self.cells)
        colour = "green" if ok == total else "red"
        console.print(f"[{colour}]{ok}/{total} cells ok[/] in {time.time() - self.started:.1f}s"
                      f" — report: {self.out_dir / 'report.json'}")


def _atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- junit.xml

def junit_xml(data: dict) -> str:
    """One testcase per cell × stage, then the smoke suite's own cases of every cell
    (classname `<cell>.smoke.<their classname>`), then the upstream tests' cases of the
    cells that ran them (classname `<cell>.upstream.<test module>`). Cell ids carry the
    architecture of a non-primary one (…-arm64); every case also has an `arch` property."""
    root = ET.Element("testsuites", name="mxbuild")
    stages = ET.SubElement(root, "testsuite", name="mxbuild.stages")
    smoke = ET.SubElement(root, "testsuite", name="mxbuild.smoke")
    upstream = ET.Element("testsuite", name="mxbuild.upstream")
    for cell in data["cells"]:
        for stage in cell["stages"]:
            case = ET.SubElement(stages, "testcase", classname=cell["id"], name=stage["name"],
                                 time=str(stage["seconds"]))
            _arch_property(case, cell)
            if stage["status"] == "failed":
                ET.SubElement(case, "failure", message=stage.get("note", "")[:500]).text = (
                    f"{stage.get('note', '')}\nlog: {stage['log']}")
            elif stage["status"] == "skipped":
                ET.SubElement(case, "skipped", message=stage.get("note", "skipped"))
        for key, suite in (("smoke", smoke), ("upstream", upstream)):
            junit = (cell.get(key) or {}).get("junit")
            if junit and Path(junit).is_file():
                for case in _cases(Path(junit)):
                    case.set("classname", f"{cell['id']}.{key}.{case.get('classname', '')}")
                    _arch_property(case, cell)
                    suite.append(case)
    if len(upstream):              # only runs with upstream tests have the suite
        root.append(upstream)
    for suite in root:
        cases = list(suite.iter("testcase"))
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
        suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
        suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _arch_property(case: ET.Element, cell: dict) -> None:
    if cell.get("arch"):
        props = case.find("properties")
        if props is None:
            props = ET.Element("properties")
            case.insert(0, props)
        ET.SubElement(props, "property", name="arch", value=cell["arch"])


def _cases(path: Path) -> list[ET.Element]:
    try:
        return list(ET.parse(path).getroot().iter("testcase"))
    except ET.ParseError:
        return []


# ---------------------------------------------------------------- report.html

def _size(n: int | None) -> str:
    return "" if not n else f"{n / 1e6:.1f} MB"


def html_report(data: dict, axes: Axes, out_dir: Path) -> str:
    by_id = {c["id"]: c for c in data["cells"]}
    grid: dict[tuple[str, str], list[dict]] = {}
    for cell in sorted(axes.cells, key=lambda c: c.id):
        grid.setdefault((grid_row(cell), cell.variant), []).append(
            _grid_entry(cell.id, by_id.get(cell.id), out_dir))
    for cid, rec in by_id.items():   # cells of the run outside the axes' cell list
        key = (_record_row(rec), rec["variant"])
        if all(e["id"] != cid for e in grid.get(key, [])):
            grid.setdefault(key, []).append(_grid_entry(cid, rec, out_dir))
    for entries in grid.values():    # the entry that colours the cell goes first
        entries.sort(key=lambda e: (e["css"] == "notrun", e["id"]))
    distros = sorted(set(axes.distros) | {k[0] for k in grid})
    variants = sorted(set(axes.variants) | {k[1] for k in grid}, key=_variant_order)
    return DataFolders(PROJECT_ROOT).render(
        "report/report.html.j2",
        started=data["started"], seconds=data["seconds"],
        ok_count=sum(1 for c in data["cells"] if c["ok"]), run_count=len(data["cells"]),
        matrix_name=data.get("matrix", "matrix.yaml"), distros=distros, variants=variants,
        grid=grid)


def _grid_entry(cid: str, rec: dict | None, out_dir: Path) -> dict:
    if rec is None:
        return {"id": cid, "css": "notrun"}
    smoke = rec.get("smoke")
    css = "failed" if not rec["ok"] else (
        "nogpu" if smoke and str(smoke.get("gpu_checks", "")).startswith("skipped") else "ok")
    failed = [s["name"] for s in rec["stages"] if s["status"] == "failed"]
    diff = (smoke or {}).get("max_abs_diff")
    return {
        "id": cid, "css": css, "smoke": smoke, "failed_stage": ", ".join(failed),
        "smoke_seconds": next((s["seconds"] for s in rec["stages"] if s["name"] == "smoke"),
                              None),
        "max_diff": None if diff is None else f"{diff:.2g}",
        "upstream": _upstream_entry(rec.get("upstream")),
        "seconds": round(sum(s["seconds"] for s in rec["stages"]), 1),
        "deb_size": _size(sum(d.get("size") or 0 for d in rec.get("debs") or [])
                          or (rec.get("deb") or {}).get("size")),
        "stages": [{"name": s["name"], "status": s["status"], "seconds": s["seconds"],
                    "href": os.path.relpath(s["log"], out_dir) if s.get("log") else "#"}
                   for s in rec["stages"]],
    }


def _upstream_entry(upstream: dict | None) -> dict | None:
    """The upstream tests of a cell, as the grid shows them: counts here and with the
    official wheel, and the tests that fail the stage or differ (with the known ones)."""
    if not upstream:
        return None
    if "skipped" in upstream:
        return {"skipped": upstream["skipped"], "differences": []}
    def line(counts: dict) -> str:
        return ", ".join(f"{n} {o}" for o, n in counts.items()) or "none"
    counts = upstream.get("counts", {})
    fine = sum(counts.get(o, 0) for o in ("passed", "xfailed", "xpassed"))
    differ = [d for d in upstream.get("differences", []) if not d.get("known")]
    grid = (f"upstream: {fine} passed, {counts.get('skipped', 0)} skipped, "
            f"{len(upstream.get('unexpected', []))} failing, {len(upstream.get('known', []))} "
            f"known" + (f", {len(differ)} differ" if differ else ""))
    return {"skipped": None, "grid": grid, "here": line(counts),
            "wheel": line((upstream.get("wheel") or {}).get("counts", {})),
            "unexpected": [f"{u['outcome']}: {u['test']}" for u in upstream.get("unexpected", [])],
            "differences": [f"{d['test']}: {d['compiled']} here, {d['wheel']} with the wheel"
                            + (" (known)" if d.get("known") else "")
                            for d in upstream.get("differences", [])],
            "known": [f"{k['outcome']}: {k['test']} — {k['reason']}"
                      for k in upstream.get("known", [])]}
