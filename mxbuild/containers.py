"""One container wrapper: start, run, copy in/out, commit, and always clean up."""
from __future__ import annotations

import io
import os
import secrets
import tarfile
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterable

import docker
from docker.errors import APIError, DockerException
from docker.types import DeviceRequest, Mount

from .errors import DockerEngineError
from .log import log

# Where the extra CA bundle is bind-mounted. A bind mount is never part of an image
# (not even a committed one), so the bundle cannot leak into anything we publish.
CA_MOUNT = "/run/mxbuild/extra-ca.crt"
CA_ENV = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# With MXBUILD_RUN_ID set (a CI build tag, the test suite's run id), every container and
# every volume a container creates carries org.mxbuild.run=<id>: what a run left behind
# can be found exactly on an engine that other runs share.
RUN_ID_ENV = "MXBUILD_RUN_ID"
RUN_LABEL = "org.mxbuild.run"


def run_labels() -> dict[str, str]:
    run_id = os.environ.get(RUN_ID_ENV)
    return {RUN_LABEL: run_id} if run_id else {}


def _labelled(mount: Mount) -> dict:
    """A volume mount whose volume, if this container creates it, carries run_labels()."""
    if mount.get("Type") != "volume" or not run_labels():
        return mount
    options = mount.get("VolumeOptions") or {}
    return {**mount, "VolumeOptions": {
        **options, "Labels": {**(options.get("Labels") or {}), **run_labels()}}}


class CommandFailed(Exception):
    def __init__(self, cmd, exit_code: int, tail: str):
        super().__init__(f"`{_show(cmd)}` exited with {exit_code}")
        self.cmd, self.exit_code, self.tail = cmd, exit_code, tail


def _show(cmd) -> str:
    return cmd if isinstance(cmd, str) else " ".join(cmd)


@dataclass
class Result:
    exit_code: int
    output: str


# Containers of this process that are running now: on SIGINT/SIGTERM the entry point
# removes them at once (worker threads of --jobs would otherwise finish their commands
# before any `with` block could clean up).
_live: set = set()
_live_guard = threading.Lock()
_stopping = threading.Event()


def stopping() -> bool:
    """True once remove_live_containers ran (SIGINT/SIGTERM)."""
    return _stopping.is_set()


def remove_live_containers() -> int:
    """Remove every container this process started and has not removed yet; no new one
    starts afterwards."""
    _stopping.set()
    with _live_guard:
        live = list(_live)
        _live.clear()
    for container in live:
        try:
            container.remove(force=True, v=True)
        except DockerException:
            pass      # already gone
    return len(live)


class Container:
    """A long-lived container (`sleep infinity`) that commands are exec'd into.

    Use as a context manager: the container is removed on exit whatever happened (and on
    SIGINT/SIGTERM by the entry point, see remove_live_containers).
    """

    # params: keyword-only `docker run` options, each with a default
    def __init__(self, client: docker.DockerClient, image: str, *, label: str,
                 network: str = "none", extra_ca: Path | None = None,
                 mounts: Iterable[Mount] = (), log_file: IO[str] | None = None,
                 gpus: bool = False, ports: Iterable[int] = ()):
        """ports: container TCP ports published on a free loopback port of the host each
        (network "bridge"; see host_port)."""
        self.client, self.image, self.label = client, image, label
        self.network, self.extra_ca = network, extra_ca
        self.mounts = list(mounts)
        self.log_file = log_file
        self.gpus = gpus
        self.ports = tuple(ports)
        self.container = None

    def __enter__(self) -> "Container":
        mounts = [_labelled(m) for m in self.mounts]
        if self.extra_ca:
            mounts.append(Mount(CA_MOUNT, str(self.extra_ca), type="bind", read_only=True))
        name = f"mxbuild-{self.label}-{secrets.token_hex(4)}"
        if stopping():
            raise DockerEngineError(f"not starting {name}: mxbuild is stopping", "")
        try:
            self.container = self.client.containers.run(
                self.image, ["sleep", "infinity"], name=name, detach=True, init=True,
                network_mode=self.network, mounts=mounts,
                labels={"mxbuild": self.label, **run_labels()},
                ports={f"{p}/tcp": ("127.0.0.1", None) for p in self.ports} or None,
                entrypoint=[], device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])]
                if self.gpus else None)
        except DockerException as exc:
            raise DockerEngineError(f"cannot start a container of {self.image}: {exc}", "")
        with _live_guard:
            _live.add(self.container)
        if stopping():
            # SIGINT/SIGTERM arrived while the engine was starting it, after the handler had
            # taken its list: remove it here (the handler set the flag before its list)
            self.__exit__(None, None, None)
            raise DockerEngineError(f"not running {name}: mxbuild is stopping", "")
        return self

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            with _live_guard:
                if self.container not in _live:     # removed by the signal handler
                    self.container = None
                    return
                _live.discard(self.container)
            try:
                self.container.remove(force=True, v=True)
            except DockerException as err:  # cleanup must never mask the real error
                log.warning("could not remove container %s: %s", self.container.name, err)
            self.container = None

    def host_port(self, port: int) -> int:
        """The loopback port of the host that container port `port` is published on."""
        self.container.reload()
        bindings = self.container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
        for binding in bindings:
            if binding.get("HostIp") in ("127.0.0.1", ""):
                return int(binding["HostPort"])
        raise DockerEngineError(f"{self.label}: port {port} is not published", "")

    @property
    def ca_env(self) -> dict[str, str]:
        return {k: CA_MOUNT for k in CA_ENV} if self.extra_ca else {}

    def run(self, cmd: list[str] | str, *, env: dict[str, str] | None = None,
            user: str = "root", workdir: str | None = None, check: bool = True) -> Result:
        """Run a command, streaming its output to the stage log; raise CommandFailed."""
        if isinstance(cmd, str):
            cmd = ["/bin/sh", "-c", cmd]
        api = self.client.api
        if self.log_file:
            self.log_file.write(f"$ {_show(cmd)}\n")
            self.log_file.flush()
        ex = api.exec_create(self.container.id, cmd, environment={**self.ca_env, **(env or {})},
                             user=user, workdir=workdir)
        tail: deque[str] = deque(maxlen=400)
        chunks: list[str] = []
        for chunk in api.exec_start(ex["Id"], stream=True):
            text = chunk.decode("utf-8", "replace")
            if self.log_file:
                self.log_file.write(text)
            tail.append(text)
            chunks.append(text)
        if self.log_file:
            self.log_file.flush()
        code = api.exec_inspect(ex["Id"])["ExitCode"]
        output = "".join(chunks)
        if check and code != 0:
            raise CommandFailed(cmd, code, "".join(tail)[-3000:])
        return Result(code, output)

    def copy_into(self, host_path: Path, dest_dir: str, *, uid: int = 0, gid: int = 0,
                  arcname: str | None = None) -> None:
        """Copy a file or directory tree into dest_dir (which must exist), owned by uid:gid."""
        def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
            return info
        # Spool to disk: payloads are hundreds of MB and must not sit in memory.
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as tar:
                tar.add(str(host_path), arcname=arcname or Path(host_path).name, filter=owner)
            spool.seek(0)
            if not self.container.put_archive(dest_dir, spool):
                raise DockerEngineError(f"copying {host_path} into {self.label}:{dest_dir} failed")

    def copy_out(self, container_path: str, host_dir: Path) -> Path:
        """Copy a file or directory out of the container into host_dir; return its path."""
        host_dir.mkdir(parents=True, exist_ok=True)
        stream, _ = self.container.get_archive(container_path)
        with tempfile.TemporaryFile() as spool:
            for chunk in stream:
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r") as tar:
                tar.extractall(host_dir, filter="data")
        return host_dir / PurePosixPath(container_path).name

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(PurePosixPath(path).name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        self.container.put_archive(str(PurePosixPath(path).parent), buf.getvalue())

    def commit(self, repository: str, tag: str, changes: list[str]) -> str:
        try:
            image = self.container.commit(repository=repository, tag=tag, changes=changes)
        except APIError as exc:
            raise DockerEngineError(f"committing {self.label} failed: {exc}")
        return image.id
