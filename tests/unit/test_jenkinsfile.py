"""Jenkins is not available here: the Jenkinsfile is checked with a real Groovy parser, and
every invoke call in it must name a real task with real flags."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT

JENKINSFILE = ROOT / "Jenkinsfile"
INVOKE = str(ROOT / ".venv/bin/invoke") if (ROOT / ".venv/bin/invoke").exists() else "invoke"


def _java_home() -> str | None:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if Path("/usr/lib/jvm/default-java/bin/java").exists():
        return "/usr/lib/jvm/default-java"
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else None


def _groovy_parse(path: Path) -> subprocess.CompletedProcess:
    if not shutil.which("groovy"):
        if os.environ.get("MXBUILD_REQUIRE_TOOLS"):
            pytest.fail("groovy is not installed (./setup.sh installs it)")
        pytest.skip("groovy is not installed")
    env = {**os.environ, "JAVA_HOME": _java_home() or ""}
    return subprocess.run(["groovy", "-e", "new GroovyShell().parse(new File(args[0]))",
                           str(path)], capture_output=True, text=True, env=env, timeout=300)


def test_jenkinsfile_is_valid_groovy(tmp_path):
    result = _groovy_parse(JENKINSFILE)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "Jenkinsfile"   # the check really checks: a brace less fails
    broken.write_text(JENKINSFILE.read_text().rstrip().rstrip("}"))
    assert _groovy_parse(broken).returncode != 0


def invoke_calls(text: str) -> list[list[str]]:
    """Every `invoke <task> …` command line inside a sh step (Groovy ${…} kept as words)."""
    calls = []
    for line in re.findall(r"invoke ([a-z][\w.-]*(?: [^\"\n]*)?)\"", text):
        line = re.sub(r"\$\{[^}]*\}", "X", line)
        calls.append(shlex.split(line.split(" 2>")[0]))
    return calls


def _flags_of(task: str) -> set[str]:
    out = subprocess.run([INVOKE, "--help", task], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, f"`invoke {task}` is not a task: {out.stderr}"
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))


def test_every_invoke_call_names_a_real_task_and_real_flags():
    calls = invoke_calls(JENKINSFILE.read_text())
    tasks = {c[0] for c in calls}
    assert {"matrix", "build", "smoke", "publish", "repo.promote", "repo.verify"} <= tasks
    for call in calls:
        flags = _flags_of(call[0])
        used = {w.split("=")[0] for w in call[1:] if w.startswith("--")}
        assert used <= flags, f"invoke {' '.join(call)}: unknown {used - flags}"
    # flags assembled in Groovy (`args << "--mxnet …"`) go to `invoke matrix`
    assembled = set(re.findall(r'args << "(--[a-z-]+)', JENKINSFILE.read_text()))
    assert assembled and assembled <= _flags_of("matrix")


def test_matrix_json_gives_what_the_jenkinsfile_reads():
    import json
    out = subprocess.run([INVOKE, "matrix", "--json"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    cells = json.loads(out)
    assert cells and all({"id", "cuda"} <= set(c) for c in cells)


# ------------------------------------------------------------ the rehearsal's reading of it

def _dry_run(tmp_path, jenkinsfile=JENKINSFILE, **params):
    """The Jenkinsfile run by the rehearsal's simulator (tests/jenkins_sim.groovy) with sh
    steps recorded, not run (only `invoke matrix --json`, whose output it reads, runs)."""
    from tests import jenkins_sim
    if not shutil.which("groovy") and not os.environ.get("MXBUILD_REQUIRE_TOOLS"):
        pytest.skip("groovy is not installed")
    agents = [jenkins_sim.Agent(name, ("cpu", "gpu"), ROOT) for name in ("agent-a", "agent-b")]
    return jenkins_sim.run(jenkinsfile, tmp_path, agents, dry_run=True, params={
        "CELLS": "1.9.1-cpu-debian1{1,2}", "REPO": "s3://bucket/apt", "PROMOTE": True,
        **params}, credentials={"mxbuild-s3": {"username": "u", "password": "p"},
                                "mxbuild-signing-key": {"file": "/dev/null"}})


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """With an artifact cache and without: the two ways the file's steps go."""
    return {cache: _dry_run(tmp_path_factory.mktemp("dry"), ARTIFACT_CACHE=cache)
            for cache in ("s3://bucket/cache", "")}


def _shape(call: list[str]) -> tuple[str, frozenset[str]]:
    return call[0], frozenset(w for w in call[1:] if w.startswith("--"))


def test_the_rehearsal_runs_every_invoke_line_of_the_jenkinsfile(dry_runs):
    """Every `invoke` call in the file is one the rehearsal carries out (with and without
    an artifact cache): a new invoke line in a branch it never takes fails here by name.
    Compared by task and flags (the values are Groovy's: cells, URLs)."""
    assembled = set(re.findall(r'args << "(--[a-z-]+)', JENKINSFILE.read_text()))
    ran = []
    for sim in dry_runs.values():
        assert sim.result == "SUCCESS", sim.error
        ran += [shlex.split(e["command"].split("invoke ", 1)[1])
                for e in sim.of("sh") if "invoke " in e["command"]]
    for call in invoke_calls(JENKINSFILE.read_text()):
        task, flags = _shape(call)
        assert any(t == task and flags <= f and f - flags <= assembled
                   for t, f in map(_shape, ran)), f"never run by the rehearsal: {call}"


def test_the_debs_travel_by_stash_and_staging_follows_the_smoke(dry_runs):
    sim = dry_runs["s3://bucket/cache"]
    stashed = {e["name"]: e["agent"] for e in sim.of("stash")}
    assert set(stashed) == {"deb-1.9.1-cpu-debian11", "deb-1.9.1-cpu-debian12"}
    order = [e.get("command", "") for e in sim.events]
    for cell in ("1.9.1-cpu-debian11", "1.9.1-cpu-debian12"):
        smoke_agent = next(e["agent"] for e in sim.of("unstash")
                           if e["stage"].endswith(f"{cell}: smoke"))
        assert smoke_agent != stashed[f"deb-{cell}"]      # another agent: it really travels
        smoke, staging, promote = (
            next(i for i, c in enumerate(order) if f"invoke {task} --cell '{cell}'" in c)
            for task in ("smoke", "publish", "repo.promote"))
        assert smoke < staging < promote
    assert sim.of("input") and "invoke repo.verify" in sim.of("sh")[-2]["command"]


def test_a_step_the_rehearsal_cannot_map_is_named_with_its_line(tmp_path):
    from tests import jenkins_sim
    changed = tmp_path / "Jenkinsfile"
    text = JENKINSFILE.read_text().replace("sh './setup.sh'", "sh './setup.sh'\n"
                                          "                deleteDir()", 1)
    changed.write_text(text)
    line = text.splitlines().index("                deleteDir()") + 1
    with pytest.raises(jenkins_sim.UnmappedStep) as info:
        _dry_run(tmp_path / "run", jenkinsfile=changed)
    assert f"Jenkinsfile:{line}" in str(info.value) and "`deleteDir`" in str(info.value)
