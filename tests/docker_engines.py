"""Second Docker engines for benches and tests that play a CI agent starting empty.

`fresh_engine(work)` starts a dockerd with an empty data root on its own socket and its own
bridge (a free 172.29.N.0/24), and stops it and removes its data afterwards. The host's
engine is never touched: the second engine runs with `--iptables=false`, so it neither
writes nor (when it stops) flushes the chains the host's engine owns; the two rules its
containers need to reach the package registries (masquerade out, forward in/out of its
bridge) are added here, tagged with the bridge's name, and removed again.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path

DOCKER = "/usr/bin/docker"   # the one with buildx (the first on PATH may lack it)
SUBNETS = ipaddress.ip_network("172.29.0.0/16")   # /24s of it, one per engine
LOCK = Path("/run/lock/mxbuild-fresh-engines.lock")


class EngineError(RuntimeError):
    pass


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _run("ip", "-4", "-o", "addr", "show").stdout
    return [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines()]


def _rules(bridge: str, subnet: str) -> list[list[str]]:
    tag = ["-m", "comment", "--comment", f"mxbuild-fresh-engine {bridge}"]
    return [["-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, *tag,
             "-j", "MASQUERADE"],
            ["-t", "filter", "FORWARD", "-i", bridge, *tag, "-j", "ACCEPT"],
            ["-t", "filter", "FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate",
             "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT"]]


def _iptables(action: str, rule: list[str]) -> None:
    table, chain, *spec = rule[1], rule[2], *rule[3:]
    flag = {"add": "-I", "delete": "-D"}[action]
    _run("iptables", "-t", table, flag, chain, *spec, check=action == "add")


@contextlib.contextmanager
def _bridge(prefix: str):
    """A new bridge on a /24 no interface uses; deleted afterwards with its rules."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # two engines starting at once
        used = _used_networks()
        subnet = next((net for net in SUBNETS.subnets(new_prefix=24)
                       if net.network_address.packed[2] != 0      # 172.29.0: e2e_bench's past
                       and not any(net.overlaps(u) for u in used)), None)
        if subnet is None:
            raise EngineError(f"no free /24 in {SUBNETS} for another engine's bridge")
        name = f"{prefix}{subnet.network_address.packed[2]}"[:15]
        gateway = f"{next(subnet.hosts())}/24"
        _run("ip", "link", "add", name, "type", "bridge")
        try:
            _run("ip", "addr", "add", gateway, "dev", name)
            _run("ip", "link", "set", name, "up")
            added = []
            for rule in _rules(name, str(subnet)):
                _iptables("add", rule)
                added.append(rule)
        except BaseException:
            _run("ip", "link", "delete", name, check=False)
            raise
    try:
        yield name, str(subnet)
    finally:
        for rule in reversed(added):
            _iptables("delete", rule)
        _run("ip", "link", "delete", name, check=False)


@contextlib.contextmanager
def fresh_engine(work: Path, name: str = "mxfresh"):
    """A dockerd with an empty data root under `work` (created; must not exist), on its
    own socket and bridge; yields its DOCKER_HOST (unix://…). Stopped and its data removed
    afterwards, whatever happens."""
    work.mkdir(parents=True)
    sock = work / "docker.sock"
    host = f"unix://{sock}"
    with _bridge(name[:11]) as (bridge, _subnet), open(work / "dockerd.log", "w") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(work / "root"), "--exec-root", str(work / "exec"),
             "--pidfile", str(work / "pid"), "-H", host, "--bridge", bridge,
             "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while _run(DOCKER, "-H", host, "info", check=False).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise EngineError(f"the fresh dockerd did not start: see {work}/dockerd.log")
                time.sleep(0.5)
            images = _run(DOCKER, "-H", host, "images", "-q").stdout
            if images.strip():
                raise EngineError("a fresh engine must start without images")
            yield host
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            # dockerd leaves its network namespace mounted under the exec root
            with open("/proc/mounts") as mounts:
                left = [line.split()[1] for line in mounts
                        if line.split()[1].startswith(str(work))]
            for mount in sorted(left, reverse=True):
                _run("umount", "-l", mount, check=False)
            shutil.rmtree(work, ignore_errors=True)


def can_start() -> str | None:
    """Why a second engine cannot start here (None: it can): root, dockerd, ip, iptables."""
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    missing = [t for t in ("dockerd", "ip", "iptables") if not shutil.which(t)]
    return f"missing {', '.join(missing)}" if missing else None
