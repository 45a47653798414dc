"""Release day, rehearsed: the Jenkinsfile's own steps (run by tests/jenkins_sim.groovy) on
agents that start empty — each its own workspace (a checkout of this commit), its own Docker
engine with no images (tests/docker_engines.py) and empty caches — sharing one artifact
cache and one apt repository on SeaweedFS (tests/s3servers.py), then hosts of each distro
install the promoted packages from that server over http.

Used by bench/release_rehearsal.py (any selection, the whole matrix) and by
tests/e2e/test_release_rehearsal.py (two CPU cells, in CI)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests import jenkins_sim, s3servers
from tests.docker_engines import DOCKER, fresh_engine

ROOT = Path(__file__).resolve().parent.parent
JENKINSFILE = ROOT / "Jenkinsfile"
REPO_BUCKET, CACHE_BUCKET = "mxbuild-apt", "mxbuild-artifacts"
# what the Jenkinsfile's credentials ids stand for (Jenkins' credentials store)
S3_CREDENTIALS, SIGNING_CREDENTIALS = "mxbuild-s3", "mxbuild-signing-key"


@dataclass(frozen=True)
class Plan:
    cells: str                         # the CELLS parameter: a cell-id glob
    mxnet: str = ""                    # MXNET_VERSION ('' = every version)
    agents: int = 2
    labels: tuple[str, ...] = ("cpu", "gpu")   # every agent's; no GPU here: GPU checks skip
    host_check: bool = True
    keep: bool = False                 # keep the work directory (logs, stashes, archive)


@dataclass
class Outcome:
    sim: jenkins_sim.SimRun
    work: Path
    commit: str
    agents: list[jenkins_sim.Agent]
    steps: list[dict]                  # per stage and agent (see step_rows)
    hosts: list[dict] = field(default_factory=list)
    listing: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    seconds: float = 0.0


def checkout_commit() -> str:
    """The commit agents check out: HEAD, or a commit of HEAD plus the uncommitted changes
    to tracked files (`git stash create`) so a rehearsal tests what is on disk."""
    dirty = subprocess.run(["git", "stash", "create"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    return dirty or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.strip()


def _checkout_command(commit: str) -> str:
    # a shared clone: the objects (the stash commit too) come from this checkout
    return (f"[ -d .git ] || git clone -q --shared --no-checkout {ROOT} . && "
            f"git checkout -q -f --detach {commit}")


def _signing_key(work: Path) -> Path:
    """A release signing key (what Jenkins' `mxbuild-signing-key` holds): made with the
    project's own Signer in a throwaway GnuPG home, exported armored."""
    from mxbuild.repo.sign import Signer
    home = work / "release-gnupg"
    home.mkdir(mode=0o700)
    signer = Signer(home)
    try:
        fpr = signer.generate_key()
        out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--armor",
                              "--export-secret-keys", fpr], capture_output=True,
                             check=True).stdout
    finally:
        signer.close()     # the agent key generation started
    key = work / "signing-key.asc"
    key.write_bytes(out)
    key.chmod(0o600)
    return key


@contextlib.contextmanager
def seaweedfs(work: Path, key_id: str, secret: str):
    """SeaweedFS with one admin identity; the repository bucket readable anonymously
    (bucket policy, as on AWS), the artifact cache bucket private."""
    import boto3
    server = s3servers.start_seaweedfs(work, [s3servers.Identity(
        "release", key_id, secret, ("Admin", "Read", "Write", "List", "Tagging"))])
    try:
        s3 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=key_id,
                          aws_secret_access_key=secret, region_name="us-east-1")
        s3servers.wait_writable(s3)
        for bucket in (REPO_BUCKET, CACHE_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_policy(Bucket=REPO_BUCKET, Policy=s3servers.public_read_policy(REPO_BUCKET))
        yield server, s3
    finally:
        server.stop()


@contextlib.contextmanager
def agents_with_engines(work: Path, count: int, labels: tuple[str, ...], extra_env: dict):
    """`count` agents, each with an empty workspace, home for its own keys, and its own
    empty Docker engine."""
    with contextlib.ExitStack() as stack:
        agents = []
        for i in range(count):
            name = f"agent-{chr(ord('a') + i)}"
            base = work / name
            host = stack.enter_context(fresh_engine(base / "engine", f"mxrh{i}"))
            (base / "ws").mkdir(parents=True)
            env = {"DOCKER_HOST": host, "XDG_DATA_HOME": str(base / "data"), **extra_env}
            agents.append(jenkins_sim.Agent(name, labels, base / "ws", env))
        yield agents


def _bucket_bytes(s3, bucket: str) -> tuple[int, int]:
    total = count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            total += obj["Size"]
            count += 1
    return total, count


def rehearse(plan: Plan, work: Path, log=print) -> Outcome:
    """Run the Jenkinsfile on `plan.agents` fresh agents; raise nothing for a failed
    pipeline (the outcome says), only for a broken setup."""
    start = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    commit = checkout_commit()
    key_id, secret = f"RH{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24)
    signing_key = _signing_key(work)
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "MXBUILD_", "DOCKER_", "VIRTUAL_ENV"))}
    with seaweedfs(work / "seaweedfs", key_id, secret) as (server, s3):
        site_env = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        if os.environ.get("MXBUILD_WHEEL_DIR"):   # a site's shared download directory
            site_env["MXBUILD_WHEEL_DIR"] = os.environ["MXBUILD_WHEEL_DIR"]
        with agents_with_engines(work, plan.agents, plan.labels, site_env) as agents:
            log(f"rehearsal: {len(agents)} agents with empty engines, commit {commit[:12]}, "
                f"SeaweedFS at {server.endpoint}, cells {plan.cells!r}")
            sim = jenkins_sim.run(
                JENKINSFILE, work / "jenkins", agents,
                params={"MXNET_VERSION": plan.mxnet, "CELLS": plan.cells,
                        "REPO": f"s3://{REPO_BUCKET}/apt",
                        "ARTIFACT_CACHE": f"s3://{CACHE_BUCKET}/cache", "PROMOTE": True},
                credentials={S3_CREDENTIALS: {"username": key_id, "password": secret},
                             SIGNING_CREDENTIALS: {"file": str(signing_key)}},
                env=base_env, checkout=_checkout_command(commit))
            outcome = Outcome(sim, work, commit, agents, step_rows(sim, work / "jenkins"))
            log(f"pipeline: {sim.result} in {sim.seconds:.1f} s"
                + (f" — {sim.error}" if sim.error else ""))
            repo_url = f"{server.endpoint}/{REPO_BUCKET}/apt"
            outcome.listing = _listing(repo_url, server.endpoint, key_id, secret)
            if plan.host_check and sim.result == "SUCCESS":
                outcome.hosts = host_checks(outcome, repo_url, log)
            outcome.sizes = {"repository": _bucket_bytes(s3, REPO_BUCKET),
                             "artifact cache": _bucket_bytes(s3, CACHE_BUCKET)}
    outcome.seconds = time.monotonic() - start
    return outcome


def _listing(repo_url: str, endpoint: str, key_id: str, secret: str) -> dict:
    """The repository's suites as `invoke repo.list --json` prints them (keyring: the one
    the repository publishes, fetched as a host would)."""
    keyring = urllib.request.urlopen(f"{repo_url}/mxbuild-archive-keyring.gpg",
                                     timeout=30).read()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rehearsal-keyring-{os.getpid()}.gpg"
    path.write_bytes(keyring)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", "repo.list", "--repo", f"s3://{REPO_BUCKET}/apt",
             "--endpoint-url", endpoint, "--keyring", str(path), "--json"], cwd=ROOT,
            capture_output=True, text=True,
            env={**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                 "AWS_DEFAULT_REGION": "us-east-1"})
    finally:
        path.unlink()
    return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-2000:]}


# ------------------------------------------------------------------ what each step did

_STAGE_LINE = re.compile(r"^([✓=✗]) (\S+)\s+(image|recipe|package|publish|smoke)\s+([\d.]+)s",
                         re.M)


def _step_kind(stage: str) -> tuple[str | None, str]:
    """('1.9.1-cpu-debian12', 'build') from 'Cells / 1.9.1-cpu-debian12: build'."""
    name = stage.split(" / ")[-1]
    m = re.match(r"^(\S+): (\S+)$", name)
    return (m.group(1), m.group(2)) if m else (None, name)


def _image_actions(archive: Path, cell: str, step: str) -> dict[str, list[str]]:
    """From the archived logs of that step (the Jenkinsfile's reports()): which images
    were bootstrapped/built, loaded from the artifact cache, already there, or stored in
    the artifact cache (image.log; the smoke client image in smoke.log)."""
    logs = archive / "reports" / cell / step / "logs" / cell
    out: dict[str, list[str]] = {"built": [], "loaded": [], "present": [], "stored": []}
    for name in ("image.log", "smoke.log"):
        path = logs / name
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if m := re.match(r"^loaded (\S+) \(\S+\) from the artifact cache", line):
                out["loaded"].append(m.group(1))
            elif m := re.match(r"^building (\S+)$", line):
                out["built"].append(m.group(1))
            elif m := re.match(r"^(mmdebstrap|debootstrap) \(", line):
                out["built"].append(f"base ({m.group(1)})")
            elif m := re.match(r"^stored (\S+) in the artifact cache", line):
                out["stored"].append(m.group(1))
                if m.group(1).startswith("mxbuild/smoke-client:"):
                    out["built"].append(m.group(1))
            elif m := re.match(r"^reusing (\S+) ", line):
                out["present"].append(m.group(1))
    return out


def step_rows(sim: jenkins_sim.SimRun, jenkins_work: Path) -> list[dict]:
    """One row per (stage, agent): seconds in the node, the invoke steps, which pipeline
    stages ran and which were reused (and of those, fetched from the artifact cache),
    which images were built or loaded."""
    rows = []
    for node in sim.of("node"):
        cell, step = _step_kind(node["stage"])
        row = {"stage": node["stage"], "cell": cell, "step": step, "agent": node["agent"],
               "seconds": node["seconds"], "ran": [], "reused": [], "fetched": [],
               "commands": [], "failed": None, "stash_bytes": 0}
        for e in sim.events:
            if e.get("stage") != node["stage"] or e.get("agent") != node["agent"]:
                continue
            if e["kind"] in ("stash", "unstash"):
                row["stash_bytes"] += e.get("bytes", 0)
                row["commands"].append(f"{e['kind']} {e['name']} ({e['files']} files, "
                                       f"{e.get('bytes', 0) / 1e6:.1f} MB) {e['seconds']:.1f} s")
            if e["kind"] != "sh":
                continue
            text = Path(e["log"]).read_text(errors="replace") if e.get("log") else ""
            if "invoke " in e["command"]:
                row["commands"].append(f"{e['command'].split('invoke ', 1)[1][:90]} "
                                       f"{e['seconds']:.1f} s (exit {e['exit']})")
            for mark, _cell, stage, _secs in _STAGE_LINE.findall(text):
                (row["reused"] if mark == "=" else row["ran"]).append(stage)
                if mark == "✗":
                    row["failed"] = stage
            row["fetched"] += re.findall(r"(\w+): fetched \w+ from the artifact cache", text)
            if e.get("exit"):
                row["failed"] = row["failed"] or f"sh exit {e['exit']}"
        if cell:
            row["images"] = _image_actions(jenkins_work / "archive", cell, step)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ hosts

def _engine_with(agents, image_prefix: str) -> tuple[str, str] | None:
    """(DOCKER_HOST, image) of an agent engine holding an image whose name starts so."""
    for agent in agents:
        out = subprocess.run([DOCKER, "-H", agent.env["DOCKER_HOST"], "images", "--format",
                              "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True).stdout
        for ref in out.split():
            if ref.startswith(image_prefix):
                return agent.env["DOCKER_HOST"], ref
    return None


def promoted_cells(sim: jenkins_sim.SimRun) -> list[str]:
    return [m.group(1) for e in sim.of("sh") if e.get("exit") == 0
            for m in [re.search(r"invoke repo\.promote --cell '([^']+)'", e["command"])] if m]


def host_checks(outcome: Outcome, repo_url: str, log=print) -> list[dict]:
    """A fresh container of each promoted cell's distro (its plain base image) installs the
    cell's packages from the stable suite over http from the S3 server; GPU cells go
    through the GPU runtime harness instead (tests/gpu_hosts.py)."""
    import docker
    from mxbuild import matrix
    from mxbuild.containers import Container
    cells = {c.id: c for c in matrix.load(ROOT / "matrix.yaml").cells}
    keyring = urllib.request.urlopen(f"{repo_url}/mxbuild-archive-keyring.gpg",
                                     timeout=30).read()
    ring = outcome.work / "hosts" / "mxbuild-archive-keyring.gpg"
    ring.parent.mkdir(parents=True, exist_ok=True)
    ring.write_bytes(keyring)
    results = []
    for cell_id in promoted_cells(outcome.sim):
        cell = cells[cell_id]
        packages = [p for p, _v in outcome.listing.get(cell.codename, {}).get(cell.component, [])]
        # a GPU cell's check runs in the smoke client image the smoking agent has
        found = (cell.cuda and _engine_with(outcome.agents, f"mxbuild/smoke-client:"
                                            f"{cell.distro.name}-{cell.official_wheel.name}-")) or \
            _engine_with(outcome.agents, f"mxbuild/base:{cell.distro.name}-")
        start = time.monotonic()
        row = {"cell": cell_id, "packages": packages, "ok": False}
        if found is None:
            row["note"] = f"no agent engine holds a {cell.distro.name} base image"
            results.append(row)
            continue
        if cell.cuda:
            from tests import gpu_hosts
            try:
                row.update(gpu_hosts.check_from_repo(docker.DockerClient(base_url=found[0]),
                                                     cell, repo_url, ring,
                                                     outcome.work / "hosts" / cell_id))
            except Exception as exc:   # noqa: BLE001  (one host's failure is a row, not the end)
                row.update(ok=False, note=f"{type(exc).__name__}: {exc}")
        else:
            client = docker.DockerClient(base_url=found[0])
            with Container(client, found[1], label=f"rehearsal-host-{cell_id}",
                           network="host") as box:
                box.copy_into(ring, "/usr/share/keyrings")
                box.write_file("/etc/apt/sources.list.d/mxbuild.list",
                               f"deb [signed-by=/usr/share/keyrings/{ring.name}] {repo_url} "
                               f"{cell.codename} {cell.component}\n")
                got = box.run(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                               f"apt-get install -y -qq {' '.join(packages)} >/dev/null && "
                               "dpkg-query -W -f '${Package} ${Version}\\n' "
                               + " ".join(packages) + " && ls -l /usr/lib/*/libmxnet.so"],
                              check=False)
                row.update(ok=got.exit_code == 0, output=got.output[-1500:])
        row["seconds"] = time.monotonic() - start
        log(f"host {cell_id}: {'ok' if row['ok'] else 'FAILED'} ({', '.join(packages)}, "
            f"{row['seconds']:.1f} s)")
        results.append(row)
    return results


# ------------------------------------------------------------------ report

def report(outcome: Outcome) -> str:
    lines = [f"commit {outcome.commit[:12]}; pipeline {outcome.sim.result} in "
             f"{outcome.sim.seconds:.1f} s; whole rehearsal {outcome.seconds:.1f} s"]
    if outcome.sim.error:
        lines.append(f"error: {outcome.sim.error}")
    lines.append(f"{'stage':<34} {'agent':<8} {'s':>7}  ran | reused (fetched from the "
                 "artifact cache) | images")
    for r in outcome.steps:
        images = r.get("images") or {}
        img = "; ".join(f"{k} {len(v)}" for k, v in images.items() if v)
        lines.append(f"{r['stage'].split(' / ')[-1]:<34} {r['agent']:<8} {r['seconds']:7.1f}  "
                     f"{','.join(r['ran']) or '-'} | {','.join(r['reused']) or '-'} "
                     f"({','.join(r['fetched']) or '-'}) | {img or '-'}"
                     + (f"  FAILED: {r['failed']}" if r['failed'] else ""))
    busy: dict[str, float] = {}
    for r in outcome.steps:
        busy[r["agent"]] = busy.get(r["agent"], 0.0) + r["seconds"]
    lines.append("per agent (seconds in a node): " + ", ".join(
        f"{a} {s:.1f}" for a, s in sorted(busy.items())))
    for h in outcome.hosts:
        lines.append(f"host {h['cell']}: {'ok' if h['ok'] else 'FAILED'} "
                     f"({', '.join(h.get('packages', []))}) {h.get('seconds', 0):.1f} s"
                     + (f" — {h['note']}" if h.get("note") else ""))
    for name, (size, count) in outcome.sizes.items():
        lines.append(f"{name}: {count} objects, {size / 1e6:.1f} MB")
    return "\n".join(lines)


def cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
