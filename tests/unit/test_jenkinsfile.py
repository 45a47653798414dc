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
