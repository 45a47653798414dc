"""The one logger. Plain lines (CI logs) unless stderr is a terminal."""
from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

log = logging.getLogger("mxbuild")
console = Console(stderr=True, highlight=False, soft_wrap=True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record: a stream captured at
    configure time may be closed later (pytest's capture, a redirected run)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure(verbose: bool = False) -> None:
    if log.handlers:
        return
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False,
                                               show_time=False, markup=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
