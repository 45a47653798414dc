"""Run a Jenkinsfile without Jenkins (tests/jenkins_sim.groovy does the running): agents
are local workspaces with their own environment (e.g. their own Docker engine), and every
step the pipeline takes comes back as an event."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def run(jenkinsfile: Path, work: Path, agents: list[Agent], *, params: dict | None = None,
        credentials: dict | None = None, env: dict | None = None, checkout: str = "true",
        dry_run: bool = False, approve_input: bool = True,
        avoid_previous_agent: bool = True, timeout: float | None = None) -> SimRun:
    """Run `jenkinsfile` with these agents. `env`: the environment every sh step starts
    from (default: this process's); `checkout`: the shell command `checkout scm` runs in a
    workspace; `dry_run`: record sh/stash steps instead of running them (steps whose stdout
    the pipeline reads still run)."""
    if not shutil.which("groovy"):
        raise RuntimeError("groovy is not installed (./setup.sh installs it)")
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
    proc = subprocess.run(["groovy", str(SIMULATOR), str(conf)], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "JAVA_HOME": java_home() or "",
                               # a short-lived JVM: the C1 compiler only and the serial
                               # collector start and finish it sooner (about 0.5 s a run)
                               "JAVA_OPTS": " ".join(filter(None, (
                                   os.environ.get("JAVA_OPTS"),
                                   "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")))})
    conf.unlink()
    lines = events.read_text().splitlines() if events.exists() else []
    parsed = [json.loads(line) for line in lines if line.strip()]
    final = next((e for e in reversed(parsed) if e.get("kind") == "result"), None)
    if final is None:
        raise RuntimeError(f"the Jenkins simulator stopped without a result (exit "
                           f"{proc.returncode}):\n{proc.stderr[-3000:]}")
    outcome = SimRun(final["result"], final.get("error"), parsed, final.get("seconds", 0.0))
    if outcome.result == "UNMAPPED":
        raise UnmappedStep(f"{jenkinsfile.name}: the rehearsal cannot carry out a step: "
                           f"{outcome.error}")
    return outcome
