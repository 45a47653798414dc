"""Containers of a foreign architecture (arm64 on the amd64 build machines): qemu-user
registered in binfmt_misc with the fix-binary flag (F). With F the kernel opens the
interpreter when the entry is registered, so it works inside every container (and in
mmdebstrap's chroot) without being in its file system.

    status(arch)     # Emulation: can this host run `arch` containers, and if not the fix
    require(arches)  # EmulationError naming the fix unless every one can run here
    prepare(arch)    # root: install qemu-user-static + binfmt-support, mount binfmt_misc,
                     # enable the entry (`invoke setup`); returns status(arch) afterwards

Only the kernel's view counts (the entry in /proc/sys/fs/binfmt_misc), not which packages
are installed: an entry registered by other means (a `tonistiigi/binfmt` container) is
as good, and a package whose entry was never enabled is not.
"""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EmulationError
from .log import log
from .matrix import Architecture

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Debian's: registers qemu-<machine> with flags PF (fix-binary) through binfmt-support
PACKAGES = ("qemu-user-static", "binfmt-support")
ROOT_FIX = "as root: `invoke setup` (or ./setup.sh)"


@dataclass(frozen=True)
class Emulation:
    arch: str
    ok: bool
    detail: str
    fix: str = ""


def native(arch: Architecture, machine: str | None = None) -> bool:
    """Does this machine run `arch` binaries without emulation?"""
    return arch.machine == (machine or platform.machine())


def _manual_fix(arch: Architecture) -> str:
    return (f"{ROOT_FIX} installs {' and '.join(PACKAGES)} and registers {arch.qemu}; by "
            f"hand: sudo apt-get install {' '.join(PACKAGES)} && sudo update-binfmts "
            f"--enable {arch.qemu}")


def read_entry(path: Path) -> dict[str, str]:
    """A binfmt_misc entry: {"state": "enabled", "interpreter": …, "flags": "PF", …}."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line in ("enabled", "disabled"):
            out["state"] = line
        elif line.startswith("flags:"):
            out["flags"] = line.split(":", 1)[1].strip()
        elif " " in line:
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def status(arch: Architecture, binfmt: Path | None = None,
           machine: str | None = None) -> Emulation:
    """Whether containers of `arch` run here; `binfmt`/`machine` replace the kernel's
    directory and `uname -m` (tests)."""
    binfmt = binfmt or BINFMT_DIR
    if native(arch, machine):
        return Emulation(arch.name, True, f"native ({arch.machine})")
    if not arch.qemu:
        return Emulation(arch.name, False, f"{arch.name} binaries cannot run on "
                         f"{machine or platform.machine()} and matrix.yaml names no qemu "
                         f"entry for it", f"add qemu: qemu-{arch.machine} under "
                         f"architectures.{arch.name} in matrix.yaml")
    if not (binfmt / "status").is_file():
        return Emulation(arch.name, False, f"binfmt_misc is not mounted at {binfmt}",
                         f"{ROOT_FIX} mounts it; by hand: sudo mount -t binfmt_misc "
                         f"binfmt_misc {BINFMT_DIR}, then {_manual_fix(arch)}")
    if (binfmt / "status").read_text().strip() != "enabled":
        return Emulation(arch.name, False, "binfmt_misc is disabled on this host",
                         f"sudo sh -c 'echo 1 > {BINFMT_DIR}/status'")
    entry_path = binfmt / arch.qemu
    if not entry_path.is_file():
        return Emulation(arch.name, False, f"no {arch.qemu} entry in {binfmt}: "
                         f"{arch.name} programs cannot run here", _manual_fix(arch))
    entry = read_entry(entry_path)
    flags = entry.get("flags", "")
    if entry.get("state") != "enabled":
        return Emulation(arch.name, False, f"{arch.qemu} is registered but disabled",
                         f"sudo update-binfmts --enable {arch.qemu}")
    if "F" not in flags:
        return Emulation(arch.name, False, f"{arch.qemu} is registered without the "
                         f"fix-binary flag (flags {flags or 'none'}): containers do not "
                         f"have {entry.get('interpreter', 'its interpreter')}",
                         f"register it with flag F: sudo update-binfmts --disable "
                         f"{arch.qemu}, then {_manual_fix(arch)} (Debian's qemu-user-static "
                         "registers with F)")
    return Emulation(arch.name, True, f"{arch.qemu} registered (flags {flags}, "
                     f"{entry.get('interpreter', '?')})")


def require(arches, binfmt: Path | None = None, machine: str | None = None,
            why: str = "") -> None:
    """EmulationError unless every architecture in `arches` runs here (before anything
    is built: a cell half done because the smoke cannot start helps no one)."""
    seen: dict[str, Architecture] = {a.name: a for a in arches}
    bad = [s for s in (status(a, binfmt, machine) for a in seen.values()) if not s.ok]
    if bad:
        raise EmulationError(
            f"this host cannot run {', '.join(s.arch for s in bad)} containers"
            f"{f' ({why})' if why else ''}: " + "; ".join(s.detail for s in bad),
            " / ".join(dict.fromkeys(s.fix for s in bad)))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    log.debug("$ %s", " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _installed(package: str) -> bool:
    proc = _run(["dpkg-query", "-W", "-f", "${Status}", package])
    return proc.returncode == 0 and proc.stdout.endswith("install ok installed")


def prepare(arch: Architecture) -> Emulation:
    """As root, make `arch` containers runnable here (idempotent); otherwise change
    nothing. Returns the status afterwards."""
    before = status(arch)
    if before.ok or not arch.qemu or os.geteuid() != 0:
        return before
    if not (BINFMT_DIR / "status").is_file():
        proc = _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
        if proc.returncode != 0:
            return Emulation(arch.name, False, f"mount -t binfmt_misc failed: "
                             f"{proc.stderr.strip()}", "the kernel needs binfmt_misc "
                             "(CONFIG_BINFMT_MISC); in a container, mount it on the host")
    missing = [p for p in PACKAGES if not _installed(p)]
    if missing:
        log.info("installing %s (runs %s containers under emulation)", " ".join(missing),
                 arch.name)
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            proc = _run(cmd)
            if proc.returncode != 0:
                return Emulation(arch.name, False, f"`{' '.join(cmd)}` failed: "
                                 f"{proc.stderr.strip()[-300:]}", _manual_fix(arch))
    if not (BINFMT_DIR / arch.qemu).is_file():
        _run(["update-binfmts", "--import", arch.qemu])
    _run(["update-binfmts", "--enable", arch.qemu])
    return status(arch)
