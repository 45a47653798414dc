"""mxbuild's pytest plugin for upstream tests (`-p mxbuild_recorder`), shipped into the test
container: it appends each test's start and outcome to a JSON-lines file the moment they
happen (flushed and fsync'd), so a test that kills the interpreter — a segfault in the
native library — is known by name and every earlier outcome survives it. A later run of
the same file with the same events file deselects every test already started there: the
runner resumes a file after a crash.

It runs on the distro's own Python and pytest (3.5 / pytest 6 and newer): no f-strings, no
annotations.
"""
import faulthandler
import json
import os
import signal
import sys

EVENTS_ENV = "MXBUILD_UPSTREAM_EVENTS"
MESSAGE_CHARS = 3000


def _events_path():
    return os.environ[EVENTS_ENV]


def _write(event):
    with open(_events_path(), "a") as out:
        out.write(json.dumps(event, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _started_before():
    started = set()
    try:
        with open(_events_path()) as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:      # a line cut short by a crash
                    continue
                if event.get("event") == "start":
                    started.add(event["test"])
    except IOError:
        pass
    return started


def pytest_configure(config):
    config._mxbuild_started = _started_before()
    _write({"event": "session", "pid": os.getpid(), "python": sys.version.split()[0]})
    # A file that runs out of time is stopped with SIGTERM: say where every thread was.
    # (stderr is duplicated now, before pytest captures it, as its faulthandler plugin does)
    config._mxbuild_stderr = os.fdopen(os.dup(2), "w")
    faulthandler.register(signal.SIGTERM, file=config._mxbuild_stderr, all_threads=True,
                          chain=True)


def pytest_unconfigure(config):
    faulthandler.unregister(signal.SIGTERM)


def pytest_collection_modifyitems(session, config, items):
    started = config._mxbuild_started
    if not started:
        return
    keep = [item for item in items if item.nodeid not in started]
    dropped = [item for item in items if item.nodeid in started]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collection_finish(session):
    _write({"event": "collected", "tests": [item.nodeid for item in session.items]})


def pytest_collectreport(report):
    if report.failed:
        _write({"event": "collect-error", "test": report.nodeid or ".",
                "message": _text(report)})


def pytest_runtest_logstart(nodeid, location):
    _write({"event": "start", "test": nodeid})


_results = {}


def pytest_runtest_logreport(report):
    outcome, message, seconds = _results.get(report.nodeid, ("passed", "", 0.0))
    seconds += getattr(report, "duration", 0.0) or 0.0
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            outcome = "xpassed" if xfail else "passed"
        elif report.skipped:
            outcome = "xfailed" if xfail else "skipped"
        else:
            outcome = "failed"
        message = "" if report.passed else _text(report)
    elif report.failed:                    # setup or teardown
        if outcome in ("passed", "skipped"):
            outcome, message = "error", _text(report)
    elif report.skipped:                   # skipped in setup (a skip mark)
        outcome, message = ("xfailed" if xfail else "skipped"), _text(report)
    _results[report.nodeid] = (outcome, message, seconds)


def pytest_runtest_logfinish(nodeid, location):
    outcome, message, seconds = _results.pop(nodeid, ("passed", "", 0.0))
    _write({"event": "finish", "test": nodeid, "outcome": outcome, "message": message,
            "seconds": round(seconds, 3)})


def _text(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:   # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        text = getattr(report, "longreprtext", None) or str(longrepr or "")
    return text[-MESSAGE_CHARS:]
