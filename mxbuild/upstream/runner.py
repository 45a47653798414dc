"""Run upstream test files in a prepared container (the packaged libmxnet with mxnet-thin,
or the official wheel): each file in its own pytest process, so one that crashes hides
nothing of the others, under the file's time limit (coreutils `timeout`: SIGTERM, then
SIGKILL), with the recorder plugin (recorder.py) and Python's faulthandler. A process that
dies during a test is started again on the same file, deselecting every test already
started: the test that was running is reported as crashed, the rest still run."""
from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import IO

from docker.errors import NotFound

from ..matrix import UpstreamTestFile
from . import recorder
from .outcomes import Attempt, FileRun, pending, replay

ROOT = "/srv/upstream"
SRC = f"{ROOT}/src"                 # the shipped part of the source tree (tree.py)
PLUGIN_DIR = f"{ROOT}/plugin"
EVENTS_DIR = f"{ROOT}/events"
PLUGIN = "mxbuild_recorder"
MAX_ATTEMPTS = 25                   # crashes per file before the rest is left not run
KILL_AFTER = 30                     # seconds between SIGTERM and SIGKILL at the time limit
TAIL_CHARS = 6000


def ship(box, tests_tar: Path) -> None:
    """The test tree and the recorder plugin into the container."""
    box.run(["mkdir", "-p", SRC, PLUGIN_DIR, EVENTS_DIR])
    box.copy_into(tests_tar, ROOT, arcname="tests.tar")
    box.run(["tar", "-xf", f"{ROOT}/tests.tar", "-C", SRC])
    box.write_file(f"{PLUGIN_DIR}/{PLUGIN}.py", Path(recorder.__file__).read_text())


def run_files(box, files: tuple[UpstreamTestFile, ...], logf: IO[str],
              env: dict[str, str] | None = None) -> list[FileRun]:
    return [run_file(box, f, f"{i:02d}-{_slug(f.path)}", logf, env)
            for i, f in enumerate(files)]


def _slug(path: str) -> str:
    return re.sub(r"[^\w.-]", "_", path)


def command(f: UpstreamTestFile, seconds: int) -> list[str]:
    return ["timeout", f"--kill-after={KILL_AFTER}", str(seconds),
            "python", "-X", "faulthandler", "-m", "pytest", "-p", PLUGIN,
            "-p", "no:cacheprovider", "-v", "--tb=short", f.path,
            *(["-k", f.select] if f.select else [])]


def run_file(box, f: UpstreamTestFile, name: str, logf: IO[str],
             env: dict[str, str] | None = None) -> FileRun:
    events_path = f"{EVENTS_DIR}/{name}.jsonl"
    deadline = time.monotonic() + f.timeout
    attempts: list[Attempt] = []
    events: list[dict] = []
    while len(attempts) < MAX_ATTEMPTS:
        seconds = int(deadline - time.monotonic())
        if seconds < 1:
            break
        logf.write(f"\n=== {f.path}{' -k ' + repr(f.select) if f.select else ''}: "
                   f"attempt {len(attempts) + 1}, {seconds} s left\n")
        first = len(events)
        started = time.monotonic()
        result = box.run(command(f, seconds), workdir=SRC, check=False, env={
            "PYTHONPATH": PLUGIN_DIR, recorder.EVENTS_ENV: events_path,
            "PYTHONUNBUFFERED": "1", **(env or {})})
        took = time.monotonic() - started
        events = read_events(box, events_path)
        # coreutils timeout: 124 when the limit stopped the command, 137 if it took SIGKILL
        stopped = result.exit_code in (124, 137) and time.monotonic() >= deadline - 2
        attempt = Attempt(result.exit_code, took, stopped, first, result.output[-TAIL_CHARS:])
        attempts.append(attempt)
        logf.write(f"=== {f.path}: {attempt.ended} after {took:.1f} s\n")
        progressed = any(e.get("event") == "start" for e in events[first:])
        if not attempt.crashed or not progressed or not pending(events):
            break
    return FileRun(f.path, f.select, f.timeout, tuple(attempts),
                   replay(f.path, events, attempts))


def read_events(box, path: str) -> list[dict]:
    """The recorder's lines so far (none if it never started); a line cut short by a
    crash is dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = box.copy_out(path, Path(tmp))
        except NotFound:        # no file: the process died before the plugin loaded
            return []
        events = []
        for line in local.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events
