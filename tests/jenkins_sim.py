"""Run a Jenkinsfile without Jenkins (tests/jenkins_sim.groovy does the running): agents
are local workspaces with their own environment (e.g. their own Docker engine), and every
step the pipeline takes comes back as an event."""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = Path(__file__).with_name("jenkins_sim.groovy")


class UnmappedStep(RuntimeError):
    """The Jenkinsfile uses something the simulator does not carry out."""


@dataclass(frozen=True)
class Agent:
    name: str
    labels: tuple[str, ...]
    workspace: Path
    env: dict = field(default_factory=dict, hash=False)


@dataclass
class SimRun:
    result: str                  # SUCCESS | FAILURE | UNMAPPED
    error: str | None
    events: list[dict]
    seconds: float

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("kind") == kind]


def java_home() -> str | None:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if Path("/usr/lib/jvm/default-java/bin/java").exists():
        return "/usr/lib/jvm/default-java"
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else None


def _groovy_env() -> dict:
    return {**os.environ, "JAVA_HOME": java_home() or "",
            # a short-lived JVM: the C1 compiler only and the serial collector start and
            # finish it sooner (about 0.5 s a run)
            "JAVA_OPTS": " ".join(filter(None, (os.environ.get("JAVA_OPTS"),
                                                "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")))}


def _need_groovy() -> None:
    if not shutil.which("groovy"):
        raise RuntimeError("groovy is not installed (./setup.sh installs it)")


class Simulator:
    """One Groovy JVM serving many runs, one after another (`jenkins_sim.groovy --serve`):
    a JVM start is about a second of CPU, a run in a warm one a fraction of it. Started at
    the first request; `close()` stops it (the test session's fixture does)."""

    MARKER = "@@jenkins-sim "

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._answers: queue.Queue = queue.Queue()
        self._stderr = None

    def _start(self) -> subprocess.Popen:
        _need_groovy()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(["groovy", str(SIMULATOR), "--serve"], text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, env=_groovy_env())
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()
        return self._proc

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith(self.MARKER):
                self._answers.put(line[len(self.MARKER):].rstrip("\n"))
        self._answers.put(None)           # the JVM ended

    def ask(self, verb: str, path: Path, timeout: float | None = None) -> str:
        proc = self._proc if self._proc and self._proc.poll() is None else self._start()
        proc.stdin.write(f"{verb} {path}\n")
        proc.stdin.flush()
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise subprocess.TimeoutExpired(["groovy", str(SIMULATOR), verb], timeout)
        if answer is None:
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace")[-3000:]
            self.close()
            raise RuntimeError(f"the Jenkins simulator's JVM ended during `{verb}`:\n{tail}")
        return answer

    def parse(self, path: Path, timeout: float = 300) -> str:
        """Groovy's own parser on `path`: "ok", or its first error lines."""
        answer = self.ask("parse", path, timeout)
        return "ok" if answer == "ok" else answer.removeprefix("error ")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._answers = queue.Queue()


# params: the run's agents, parameters, credentials and environment, and how to run it
def run(jenkinsfile: Path, work: Path, agents: list[Agent], *, params: dict | None = None,
        credentials: dict | None = None, env: dict | None = None, checkout: str = "true",
        dry_run: bool = False, approve_input: bool = True,
        avoid_previous_agent: bool = True, timeout: float | None = None,
        simulator: Simulator | None = None) -> SimRun:
    """Run `jenkinsfile` with these agents. `env`: the environment every sh step starts
    from (default: this process's); `checkout`: the shell command `checkout scm` runs in a
    workspace; `dry_run`: record sh/stash steps instead of running them (steps whose stdout
    the pipeline reads still run); `simulator`: a served JVM to run it in (default: a JVM
    of its own)."""
    _need_groovy()
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.jsonl"
    events.unlink(missing_ok=True)
    config = {
        "jenkinsfile": str(jenkinsfile), "params": params or {},
        "env": dict(os.environ if env is None else env),
        "agents": [{"name": a.name, "labels": list(a.labels), "workspace": str(a.workspace),
                    "env": a.env} for a in agents],
        "credentials": credentials or {}, "checkout": checkout,
        "stash_dir": str(work / "stashes"), "archive_dir": str(work / "archive"),
        "logs_dir": str(work / "steps"), "events": str(events), "dry_run": dry_run,
        "approve_input": approve_input, "avoid_previous_agent": avoid_previous_agent}
    conf = work / "sim.json"
    conf.write_text(json.dumps(config, indent=2))
    conf.chmod(0o600)          # the credentials' values
    try:
        if simulator is not None:
            simulator.ask("run", conf, timeout)
            stderr = ""
        else:
            proc = subprocess.run(["groovy", str(SIMULATOR), str(conf)], capture_output=True,
                                  text=True, timeout=timeout, env=_groovy_env())
            stderr = f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    finally:
        conf.unlink()
    lines = events.read_text().splitlines() if events.exists() else []
    parsed = [json.loads(line) for line in lines if line.strip()]
    final = next((e for e in reversed(parsed) if e.get("kind") == "result"), None)
    if final is None:
        raise RuntimeError(f"the Jenkins simulator stopped without a result {stderr}")
    outcome = SimRun(final["result"], final.get("error"), parsed, final.get("seconds", 0.0))
    if outcome.result == "UNMAPPED":
        raise UnmappedStep(f"{jenkinsfile.name}: the rehearsal cannot carry out a step: "
                           f"{outcome.error}")
    return outcome
