"""The entry point: the one place where MxbuildError is caught and turned into an exit code."""
from __future__ import annotations

import functools
import signal
import threading

from invoke import Exit

from .errors import MxbuildError
from .log import configure, console


def _stop(signum, frame):
    """SIGINT/SIGTERM (Ctrl-C, a CI abort): remove our containers first, then unwind.
    Worker threads whose container vanished fail their stage at once instead of running
    on; the main thread's `with` blocks clean up the rest on the way out."""
    from .containers import remove_live_containers
    remove_live_containers()
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGINT and SIGTERM remove this process's containers and unwind (as Ctrl-C would);
    only the main thread can install handlers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)


def entrypoint(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        configure()
        stop_on_signals()
        try:
            return fn(*args, **kwargs)
        except MxbuildError as exc:
            console.print(exc.render(), markup=False, style="red")
            raise Exit(code=exc.exit_code)
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130)
        finally:
            from .repo.sign import stop_agents
            stop_agents()           # the gpg-agents this command started
    return wrapper
