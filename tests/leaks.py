"""What a test run left behind: processes, containers, volumes, listening sockets and temp
files that THIS pytest process started or made (the machine is shared with other runs, so
nothing is judged by name or by time).

A run is marked at its start with a run id (MXBUILD_RUN_ID in the environment):
- a process is ours if its environment carries that id (every child inherits it, and so
  does what a child daemonizes, e.g. gpg-agent, `weed`), if it descends from this process,
  or if it is a gpg-agent whose --homedir lies under this run's basetemp;
- a container or volume is ours if it carries the label org.mxbuild.run=<id>, which
  mxbuild's container wrapper (mxbuild.containers) puts on everything it creates;
- a listening socket is ours if this process holds it open (an HTTP server that was shut
  down but never closed);
- a temp file is ours if it lies in the run's own temp dir: the run points TMPDIR (and
  Python's tempfile) there, so whatever the run or a child puts in "the temp dir" and does
  not remove is found there (a process killed on purpose, a server's log files).
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mxbuild.containers import RUN_ID_ENV, RUN_LABEL

# shared cache volumes: created on first use by whichever run needs them and kept on purpose
KEPT_VOLUMES = {"mxbuild-ccache", "mxbuild-m2"}


@dataclass(frozen=True)
class Leak:
    kind: str       # process | container | volume | socket | file
    ident: str
    what: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ident}: {self.what}"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _processes() -> dict[int, tuple[int, str, bytes, str]]:
    """pid -> (parent pid, state, environ, command line) of every process we can read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat").decode(errors="replace")
        if not stat:
            continue
        fields = stat[stat.rfind(")") + 2:].split()      # after "pid (comm) "
        cmdline = _read(f"/proc/{entry}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        out[int(entry)] = (int(fields[1]), fields[0], _read(f"/proc/{entry}/environ"),
                           cmdline.strip())
    return out


def _homedir(cmdline: str) -> str | None:
    words = cmdline.split()
    for i, w in enumerate(words):
        if w == "--homedir" and i + 1 < len(words):
            return words[i + 1]
        if w.startswith("--homedir="):
            return w.split("=", 1)[1]
    return None


def agent_homes() -> list[Path]:
    """The --homedir of every running gpg-agent (resolved)."""
    homes = []
    for _, state, _, cmdline in _processes().values():
        if state != "Z" and cmdline.startswith("gpg-agent"):
            home = _homedir(cmdline)
            if home:
                homes.append(Path(home).resolve())
    return homes


def processes(run_id: str | None, basetemp: Path | None) -> list[Leak]:
    """Processes of the run (by its id or basetemp), or with run_id None of this process
    only (its descendants: an xdist worker, whose run id the other workers share)."""
    me = os.getpid()
    procs = _processes()
    marker = f"{RUN_ID_ENV}={run_id}".encode() if run_id else None

    def descends(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            pid = procs.get(pid, (0,))[0]
            if pid == me:
                return True
        return False
    found = []
    for pid, (_, state, environ, cmdline) in procs.items():
        if pid == me or state == "Z":            # a zombie runs nothing
            continue
        ours = (marker is not None and marker in environ.split(b"\0")) or descends(pid)
        if not ours and basetemp is not None and "gpg-agent" in cmdline:
            home = _homedir(cmdline)
            ours = home is not None and Path(home).is_relative_to(basetemp)
        if ours:
            found.append(Leak("process", str(pid), cmdline or "?"))
    return found


def _listening_inodes() -> dict[str, str]:
    """socket inode -> local address of every TCP socket in LISTEN state."""
    out = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in _read(table).decode().splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[3] == "0A":
                port = int(f[1].rsplit(":", 1)[1], 16)
                out[f[9]] = f"port {port}"
    return out


def sockets() -> list[Leak]:
    listening = _listening_inodes()
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = target[len("socket:["):-1]
            if inode in listening:
                found.append(Leak("socket", f"fd {fd}", f"listening on {listening[inode]}"))
    return found


def docker_objects(run_id: str) -> list[Leak]:
    """Containers and volumes labelled with this run's id ([] when no engine answers)."""
    try:
        import docker
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:               # noqa: BLE001  no engine: nothing can be left there
        return []
    label = f"{RUN_LABEL}={run_id}"
    try:
        found = [Leak("container", c.short_id, f"{c.name} ({c.status})")
                 for c in client.containers.list(all=True, filters={"label": label})]
        found += [Leak("volume", v.name, "volume") for v in
                  client.volumes.list(filters={"label": label}) if v.name not in KEPT_VOLUMES]
    finally:
        client.close()
    return found


def temp_files(run_tmp: Path) -> list[Leak]:
    """What is still in the run's temp dir."""
    return [Leak("file", str(path), "left in the run's temp dir")
            for path in sorted(run_tmp.iterdir())]


# how long the check waits for what is still exiting; the leak check's own test, whose
# leaks never exit, sets it short
GRACE_ENV = "MXBUILD_LEAK_GRACE"


def _grace() -> float:
    return float(os.environ.get(GRACE_ENV, "5"))


def check(run_id: str, basetemp: Path | None, run_tmp: Path,
          grace: float | None = None) -> list[Leak]:
    """Everything the run left; waits up to `grace` seconds for what is still exiting (an
    agent told to stop a moment ago)."""
    return _settled(lambda: processes(run_id, basetemp) + sockets() + docker_objects(run_id)
                    + temp_files(run_tmp), grace)


def check_worker(grace: float | None = None) -> list[Leak]:
    """What an xdist worker left that only it can see: its listening sockets and child
    processes. (What carries the run id outlives the worker: the controller finds it.)"""
    return _settled(lambda: processes(None, None) + sockets(), grace)


def _settled(find, grace: float | None) -> list[Leak]:
    """find() until it finds nothing or `grace` seconds (None: MXBUILD_LEAK_GRACE, 5) passed."""
    deadline = time.monotonic() + (_grace() if grace is None else grace)
    while True:
        leaks = find()
        if not leaks or time.monotonic() > deadline:
            return leaks
        time.sleep(0.2)


def clean(leaks: list[Leak]) -> None:
    """Stop what was reported (after reporting it), so a failed check leaves the shared
    machine clean too. Only ever called with this run's own leaks."""
    client = None
    for leak in leaks:
        try:
            if leak.kind == "process":
                os.kill(int(leak.ident), signal.SIGKILL)
            elif leak.kind in ("container", "volume"):
                if client is None:
                    import docker
                    client = docker.from_env(timeout=60)
                if leak.kind == "container":
                    client.containers.get(leak.ident).remove(force=True, v=True)
                else:
                    client.volumes.get(leak.ident).remove(force=True)
            elif leak.kind == "file":
                path = Path(leak.ident)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        except Exception:           # noqa: BLE001  gone meanwhile
            pass
