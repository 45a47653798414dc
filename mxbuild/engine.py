"""Find a Docker engine, or (as root, during setup) install and start one."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import docker
from docker.errors import DockerException

from .errors import DockerEngineError
from .log import log

DOCKERD_LOG = "/var/log/mxbuild-dockerd.log"


def client(timeout: int = 600) -> docker.DockerClient:
    """A connected client, or DockerEngineError saying how to get one."""
    try:
        cli = docker.from_env(timeout=timeout)
        cli.ping()
        return cli
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise DockerEngineError(f"no Docker engine answers at {where} ({_short(exc)})")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def ensure(install: bool) -> docker.DockerClient:
    """Return a client; when `install` and root, install docker.io and start dockerd."""
    try:
        return client()
    except DockerEngineError:
        if not install:
            raise
    if os.geteuid() != 0:
        raise DockerEngineError(
            "no Docker engine answers and mxbuild is not root, so it cannot start one",
            "ask an administrator to install and start Docker (`apt-get install docker.io`), "
            "add yourself to the docker group, or set DOCKER_HOST to a reachable engine")
    if not shutil.which("dockerd"):
        log.info("installing docker.io (no dockerd on this machine)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise DockerEngineError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-400:]}",
                                        "install Docker by hand, then re-run `invoke setup`")
    log.info("starting dockerd (log: %s)", DOCKERD_LOG)
    with open(DOCKERD_LOG, "ab") as out:
        # Detached on purpose: the engine must outlive this command.
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            return client()
        except DockerEngineError:
            time.sleep(1)
    raise DockerEngineError("dockerd was started but did not answer within 90 s",
                            f"read {DOCKERD_LOG} for the reason")
