"""What each task does, with flags already parsed (tasks.py only wires flags to these)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from . import engine, matrix as matrix_mod, options, pipeline, smoke
from .log import console, log


@dataclass(frozen=True)
class Selectors:
    variant: str | None = None
    cuda: str | None = None
    distro: str | None = None
    mxnet: str | None = None
    cell: str | None = None


def _cells(opts: options.Options, sel: Selectors):
    m = matrix_mod.load(opts.matrix_path)
    return m.select(variant=sel.variant, cuda=sel.cuda, distro=sel.distro, mxnet=sel.mxnet,
                    cell=sel.cell)


def show_matrix(sel: Selectors, as_json: bool) -> None:
    opts = options.resolve()
    cells = _cells(opts, sel)
    if as_json:
        print(json.dumps([c.summary() for c in cells], indent=2))
        return
    table = Table(title=f"{len(cells)} cell(s) from {opts.matrix_path.name}")
    for col in ("id", "mxnet", "variant", "cuda", "distro", "codename", "recipe", "version"):
        table.add_column(col)
    for c in cells:
        s = c.summary()
        table.add_row(*(str(s[k]) if s[k] is not None else "-" for k in
                        ("id", "mxnet", "variant", "cuda", "distro", "codename", "recipe",
                         "version")))
    Console(width=max(console.width, 140)).print(table)


def setup() -> None:
    engine.ensure(install=True)
    log.info("Docker engine is up")


def build(sel: Selectors, publish: bool, run_smoke: bool, ca_bundle: str | None) -> None:
    opts = options.resolve(ca_bundle=ca_bundle)
    cells = _cells(opts, sel)
    pipeline.build(cells, opts, do_publish=publish, do_smoke=run_smoke and publish)


def serve(port: int) -> None:
    opts = options.resolve()
    with smoke.serve_directory(opts.repo_dir, host="127.0.0.1", port=port) as url:
        console.print(f"serving {opts.repo_dir} at {url} (Ctrl-C stops)")
        while True:
            time.sleep(3600)
