"""The entry point: the one place where MxbuildError is caught and turned into an exit code."""
from __future__ import annotations

import functools

from invoke import Exit

from .errors import MxbuildError
from .log import configure, console


def entrypoint(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        configure()
        try:
            return fn(*args, **kwargs)
        except MxbuildError as exc:
            console.print(exc.render(), markup=False, style="red")
            raise Exit(code=exc.exit_code)
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130)
    return wrapper
