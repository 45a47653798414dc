"""Jenkins is not available here: the Jenkinsfile is checked with a real Groovy parser, and
every invoke call in it must name a real task with real flags."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT, run_cli, task_flags

JENKINSFILE = ROOT / "Jenkinsfile"


def test_jenkinsfile_is_valid_groovy(tmp_path, jenkins_simulator):
    broken = tmp_path / "Jenkinsfile"   # the check really checks: a brace less fails
    broken.write_text(JENKINSFILE.read_text().rstrip().rstrip("}"))
    assert jenkins_simulator.parse(JENKINSFILE) == "ok"     # Groovy's own parser
    assert "expecting '}'" in jenkins_simulator.parse(broken)


def invoke_calls(text: str) -> list[list[str]]:
    """Every `invoke <task> …` command line inside a sh step (Groovy ${…} kept as words)."""
    calls = []
    for line in re.findall(r"invoke ([a-z][\w.-]*(?: [^\"\n]*)?)\"", text):
        line = re.sub(r"\$\{[^}]*\}", "X", line)
        calls.append(shlex.split(line.split(" 2>")[0]))
    return calls


def test_every_invoke_call_names_a_real_task_and_real_flags():
    calls = invoke_calls(JENKINSFILE.read_text())
    tasks = {c[0] for c in calls}
    assert {"matrix", "build", "smoke", "publish", "repo.promote", "repo.verify"} <= tasks
    for call in calls:
        flags = task_flags(call[0])
        used = {w.split("=")[0] for w in call[1:] if w.startswith("--")}
        assert used <= flags, f"invoke {' '.join(call)}: unknown {used - flags}"
    # flags assembled in Groovy (`args << "--mxnet …"`) go to `invoke matrix`
    assembled = set(re.findall(r'args << "(--[a-z-]+)', JENKINSFILE.read_text()))
    assert assembled and assembled <= task_flags("matrix")


def test_matrix_json_gives_what_the_jenkinsfile_reads():
    import json
    run = run_cli("matrix", "--json")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    cells = json.loads(out)
    assert cells and all({"id", "cuda"} <= set(c) for c in cells)


def test_the_signing_key_home_is_deleted_with_its_agent_stopped(short_tmp):
    """The Jenkinsfile's own shell steps around the signing key, run here with a real key:
    the import starts a gpg-agent in the throwaway home; the cleanup stops it before it
    deletes the home. (Here the agent's socket is inside the home, so deleting the home
    alone would end it too; on a host with /run/user/<uid> the socket lives there and the
    agent would outlive the build: so `rm` itself checks that no agent answers any more.)"""
    from tests.leaks import agent_homes
    block = JENKINSFILE.read_text().split("def withRepositoryCredentials", 1)[1]
    setup, cleanup = re.findall(r"sh '([^']*MXBUILD_GNUPGHOME[^']*)'", block)[:2]
    maker = short_tmp / "maker"
    maker.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(maker), "--batch", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "ci <ci@example.org>", "ed25519", "sign", "1d"],
                   check=True, capture_output=True)
    key = short_tmp / "signing-key.asc"
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export-secret-keys"], check=True,
                                   capture_output=True).stdout)
    home = short_tmp / "workspace/.mxbuild-gnupg"
    shim, seen = short_tmp / "bin", short_tmp / "agent-at-rm"
    shim.mkdir()
    (shim / "rm").write_text(
        "#!/bin/sh\n"
        'gpg-connect-agent --homedir "$MXBUILD_GNUPGHOME" --no-autostart /bye 2>&1 '
        f'| grep -q "no gpg-agent running" || touch {seen}\n'
        'exec /bin/rm "$@"\n')
    (shim / "rm").chmod(0o755)
    env = {**os.environ, "MXBUILD_GNUPGHOME": str(home), "SIGNING_KEY": str(key),
           "PATH": f"{shim}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", setup], env=env, check=True, capture_output=True)
    assert home.resolve() in agent_homes()                  # the import started one
    subprocess.run(["sh", "-c", cleanup], env=env, check=True, capture_output=True)
    assert not seen.exists(), "the GnuPG home was deleted while its gpg-agent still ran"
    assert not home.exists()
    assert home.resolve() not in agent_homes()


# ------------------------------------------------------------ the rehearsal's reading of it

def _dry_run(tmp_path, simulator, jenkinsfile=JENKINSFILE, **params):
    """The Jenkinsfile run by the rehearsal's simulator (tests/jenkins_sim.groovy) with sh
    steps recorded, not run (only `invoke matrix --json`, whose output it reads, runs)."""
    from tests import jenkins_sim
    agents = [jenkins_sim.Agent(name, ("cpu", "gpu"), ROOT) for name in ("agent-a", "agent-b")]
    return jenkins_sim.run(
        jenkinsfile, tmp_path, agents, dry_run=True, simulator=simulator,
        params={"CELLS": "1.9.1-cpu-debian1{1,2}", "REPO": "s3://bucket/apt", "PROMOTE": True,
                **params},
        credentials={"mxbuild-s3": {"username": "u", "password": "p"},
                     "mxbuild-signing-key": {"file": "/dev/null"}})


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory, jenkins_simulator):
    """With an artifact cache and without: the two ways the file's steps go."""
    return {cache: _dry_run(tmp_path_factory.mktemp("dry"), jenkins_simulator,
                            ARTIFACT_CACHE=cache)
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


def test_a_step_the_rehearsal_cannot_map_is_named_with_its_line(tmp_path, jenkins_simulator):
    from tests import jenkins_sim
    changed = tmp_path / "Jenkinsfile"
    text = JENKINSFILE.read_text().replace("sh './setup.sh'", "sh './setup.sh'\n"
                                          "                deleteDir()", 1)
    changed.write_text(text)
    line = text.splitlines().index("                deleteDir()") + 1
    with pytest.raises(jenkins_sim.UnmappedStep) as info:
        _dry_run(tmp_path / "run", jenkins_simulator, jenkinsfile=changed)
    assert f"Jenkinsfile:{line}" in str(info.value) and "`deleteDir`" in str(info.value)
