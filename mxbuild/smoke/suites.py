"""The smoke suites of a cell's thin clients, each in its own fresh container of the
cell's distro. Each client kind carries its suite (the plug-in table, mxbuild/plugins.py,
names the module holding it: "python" → smoke/__init__.py, "jvm" → smoke/jvm.py); the
pipeline names none."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import IO

from .. import plugins
from ..images import ImageRef
from ..matrix import Cell
from ..thin import ThinClient
from . import SmokeCounts, SmokeRun, merge_junit


def images(ctx, cell: Cell, runtime: ImageRef, clients: tuple[ThinClient, ...],
           logf: IO[str]) -> dict[str, ImageRef]:
    """The image of each client's suite (built or reused)."""
    return {c.kind: plugins.smoke_suite(c.kind).image(ctx, cell, runtime, logf) for c in clients}


def run_all(ctx, cell: Cell, suite_images: dict[str, ImageRef],
            clients: tuple[ThinClient, ...], given: SmokeRun) -> tuple[SmokeCounts, Path]:
    """Every client's suite, in the clients' order, each in given.work/<kind>; the counts
    together and one JUnit file holding every suite's cases. The first failing suite
    stops the stage."""
    logf, work = given.logf, given.work
    counts, parts = None, []
    for c in clients:
        start = time.monotonic()
        got = plugins.smoke_suite(c.kind).run(ctx, cell, suite_images[c.kind], c,
                                              dataclasses.replace(given, work=work / c.kind))
        got = dataclasses.replace(got, seconds={c.kind: round(time.monotonic() - start, 1)})
        logf.write(f"{c.kind} suite: {got.seconds[c.kind]} s\n")
        counts = got if counts is None else counts + got
        parts.append(work / c.kind / "junit.xml")
    return counts, merge_junit(parts, work / "junit.xml")
