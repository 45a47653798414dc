"""One outcome per test of an upstream test file, replayed from what the recorder plugin
wrote (recorder.py: JSON lines, flushed as they happen) and how each pytest process the
runner started ended (its attempts: a crash ends one, the next resumes after the test
that crashed). Pure: no Docker, no files."""
from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass, field

# What a test can come to. The first four are fine; the rest fail the stage unless a
# `known` entry of matrix.yaml names the test and the outcome (matrix.model.OUTCOMES).
FINE = ("passed", "skipped", "xfailed", "xpassed")
BAD = ("failed", "error", "crashed", "timeout", "not-run")
ABSENT = "absent"          # in one run's results but not in the other's
PYTEST_EXITS = range(0, 6)  # ok, tests failed, interrupted, internal error, usage, none
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Attempt:
    """One pytest process over (the rest of) a file."""
    exit_code: int
    seconds: float
    timed_out: bool              # the file's time limit ran out (it was stopped)
    first_event: int             # index of its first line in the file's events
    tail: str = ""               # the end of its output: faulthandler's dump after a crash

    @property
    def crashed(self) -> bool:
        return not self.timed_out and self.exit_code not in PYTEST_EXITS

    @property
    def signal(self) -> int | None:
        """The signal that killed it: a shell's 128+N, or -N (coreutils `timeout` passes
        its child's death on by killing itself with the same signal)."""
        number = -self.exit_code if self.exit_code < 0 else self.exit_code - 128
        return number if 0 < number < 65 else None

    @property
    def ended(self) -> str:
        if self.timed_out:
            return "stopped: the file's time limit ran out"
        if self.exit_code in PYTEST_EXITS:
            return f"pytest exited with {self.exit_code}"
        if self.signal is not None:
            try:
                return f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        return f"the interpreter exited with {self.exit_code}"

    def as_dict(self) -> dict:
        return {"exit_code": self.exit_code, "seconds": round(self.seconds, 1),
                "ended": self.ended}


@dataclass(frozen=True)
class CaseResult:
    outcome: str
    message: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "message": self.message, "seconds": self.seconds}


@dataclass(frozen=True)
class FileRun:
    """An upstream test file's run: how each attempt ended and every test's outcome."""
    path: str
    select: str | None
    timeout: int
    attempts: tuple[Attempt, ...]
    results: dict[str, CaseResult] = field(hash=False)

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)

    def counts(self) -> dict[str, int]:
        return counts(self.results)

    def as_dict(self) -> dict:
        return {"path": self.path, "select": self.select, "timeout": self.timeout,
                "seconds": round(self.seconds, 1), "counts": self.counts(),
                "attempts": [a.as_dict() for a in self.attempts],
                "results": {t: r.as_dict() for t, r in self.results.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "FileRun":
        attempts = tuple(Attempt(a["exit_code"], a["seconds"], a["ended"].startswith(
            "stopped"), 0) for a in d["attempts"])
        return cls(d["path"], d["select"], d["timeout"], attempts,
                   {t: CaseResult(r["outcome"], r["message"], r["seconds"])
                    for t, r in d["results"].items()})


def counts(results: dict[str, CaseResult]) -> dict[str, int]:
    found = Counter(r.outcome for r in results.values())
    return {o: found[o] for o in (*FINE, *BAD) if found[o]}


def chunks(events: list[dict], attempts: list[Attempt]) -> list[list[dict]]:
    """The events each attempt wrote (attempt i: from its first_event to the next's)."""
    bounds = [a.first_event for a in attempts] + [len(events)]
    return [events[bounds[i]:bounds[i + 1]] for i in range(len(attempts))]


def pending(events: list[dict]) -> list[str]:
    """Tests collected in some attempt and not started in any: what a resume would run."""
    started = {e["test"] for e in events if e.get("event") == "start"}
    return [t for t in _collected(events) if t not in started]


def _collected(events: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for e in events:
        if e.get("event") == "collected":
            seen.update(dict.fromkeys(e["tests"]))
    return list(seen)


def replay(path: str, events: list[dict], attempts: list[Attempt]) -> dict[str, CaseResult]:
    """Every test's outcome. A test started and never finished was running when its
    process died (crashed) or was stopped (timeout); one collected and never started was
    not run. Trouble outside any test (collection, interpreter exit) is the file's own
    entry, keyed by its path."""
    results: dict[str, CaseResult] = {}
    for i, (attempt, evs) in enumerate(zip(attempts, chunks(events, attempts))):
        running, errors = None, False
        for e in evs:
            kind = e.get("event")
            if kind == "start":
                running = e["test"]
            elif kind == "finish":
                results[e["test"]] = CaseResult(e["outcome"], e.get("message", ""),
                                                e.get("seconds", 0.0))
                running = None
            elif kind == "collect-error":
                errors = True
                results[_file_key(path, e["test"])] = CaseResult(
                    "error", "collecting failed:\n" + e.get("message", ""))
        if running is not None and (attempt.timed_out or attempt.crashed):
            outcome = "timeout" if attempt.timed_out else "crashed"
            results[running] = CaseResult(outcome, f"{attempt.ended} during this test\n"
                                          + fault_excerpt(attempt.tail))
        elif attempt.timed_out or attempt.crashed:
            outcome = "timeout" if attempt.timed_out else "crashed"
            results[path] = CaseResult(outcome, f"{attempt.ended} outside any test "
                                       "(collecting, or at interpreter exit)\n"
                                       + fault_excerpt(attempt.tail))
        elif attempt.exit_code in (2, 3, 4) and not errors:
            results[path] = CaseResult("error", f"{attempt.ended}\n{attempt.tail[-TAIL_CHARS:]}")
        elif attempt.exit_code == 5 and i == 0:
            results[path] = CaseResult("error", "no test selected (pytest exited with 5): "
                                       "check the file's `select` in matrix.yaml")
    why = attempts[-1].ended if attempts else "never started"
    for test in _collected(events):
        if test not in results:
            results[test] = CaseResult("not-run", f"not run: {why}")
    return results


def fault_excerpt(output: str) -> str:
    """What faulthandler said when the process died — "Fatal Python error: …" after a
    signal, the stacks of all threads after the SIGTERM of a time limit — without the list
    of extension modules it appends; else the end of the output."""
    start = output.rfind("Fatal Python error")
    if start < 0:
        found = [i for i in (output.find("Current thread 0x"), output.find("Thread 0x"))
                 if i >= 0]
        start = min(found, default=-1)
    if start < 0:
        return output[-TAIL_CHARS:]
    return output[start:].split("\nExtension modules:", 1)[0][:TAIL_CHARS]


def clip(text: str, chars: int) -> str:
    """The beginning (what happened) and the end (where) of a long message."""
    if len(text) <= chars:
        return text
    return f"{text[:chars // 2]}\n…\n{text[-chars // 2:]}"


def _file_key(path: str, nodeid: str) -> str:
    return path if nodeid in ("", ".") else nodeid
