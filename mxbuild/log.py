"""The one logger. Plain lines (CI logs) unless stderr is a terminal."""
from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

log = logging.getLogger("mxbuild")
console = Console(stderr=True, highlight=False, soft_wrap=True)


def configure(verbose: bool = False) -> None:
    if log.handlers:
        return
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False,
                                               show_time=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
