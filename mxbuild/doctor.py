"""`invoke doctor`: what this host has (Docker, disk, GPU and driver, distro, architecture,
emulation of the other architectures) and which apt line and package fit it, with the
exact commands to add the repository."""
from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import DockerException

from . import emulation
from .errors import DockerEngineError
from .client import THIN_NAME, trusted_host_args
from .matrix import Cell, Matrix
from .repo.sign import KEYRING_NAME

KEYRING_DEST = f"/usr/share/keyrings/{KEYRING_NAME}"
MIN_FREE_GB = 20      # a GPU cell needs ~1 GB of library plus images and the .deb


@dataclass(frozen=True)
class Gpu:
    names: tuple[str, ...]
    driver: str
    cuda: str            # the newest CUDA the driver supports, e.g. "12.2"


@dataclass
class Diagnosis:
    checks: list[tuple[str, bool | None, str]] = field(default_factory=list)  # name, ok, detail
    distro: str | None = None          # matrix distro name, e.g. debian12
    codename: str | None = None
    gpu: Gpu | None = None
    cell: Cell | None = None           # the package that fits this host
    commands: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        self.checks.append((name, ok, detail))


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        if "=" in line:
            key, _, value = line.partition("=")
            out[key] = value.strip().strip('"')
    return out


def nvidia_gpu(run=subprocess.run) -> Gpu | None:
    """From nvidia-smi: GPU names, driver version and the driver's CUDA version."""
    if not shutil.which("nvidia-smi"):
        return None
    listing = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                  capture_output=True, text=True)
    header = run(["nvidia-smi"], capture_output=True, text=True)
    if listing.returncode != 0 or header.returncode != 0:
        return None
    rows = [r.split(",") for r in listing.stdout.strip().splitlines() if r.strip()]
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", header.stdout)
    if not rows or not cuda:
        return None
    return Gpu(tuple(r[0].strip() for r in rows), rows[0][1].strip(), cuda.group(1))


def user_pip_command(index_url: str, version: str) -> str:
    """mxnet-thin from the repository's index, its dependencies (numpy…) from PyPI."""
    return " ".join(["pip", "install", "--extra-index-url", index_url,
                     *trusted_host_args(index_url), f"{THIN_NAME}=={version}"])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def host_arch(matrix: Matrix, machine: str | None = None) -> str | None:
    """The matrix's architecture of this machine (uname -m), or None."""
    machine = machine or platform.machine()
    return next((a.name for a in matrix.architectures.values() if a.machine == machine), None)


def fitting_cell(matrix: Matrix, distro: str, gpu: Gpu | None,
                 arch: str | None = None) -> Cell | None:
    """The package for this host: with a GPU, the newest CUDA variant the driver supports
    on this distro; otherwise (or if none fits) the cpu one. Newest MXNet first. `arch`:
    the host's architecture (default: the primary one)."""
    arch = arch or next(a.name for a in matrix.architectures.values() if a.primary)
    cells = [c for c in matrix.cells if c.distro.name == distro and c.arch.name == arch]
    gpu_cells = [c for c in cells if c.cuda and gpu and _version(c.cuda) <= _version(gpu.cuda)]
    pool = gpu_cells or [c for c in cells if c.cuda is None]
    if not pool:
        return None
    return max(pool, key=lambda c: (_version(c.mxnet), _version(c.cuda or "0")))


def _docker_root(docker_client) -> Path | None:
    """The engine's data root (images, containers), where it says; else None."""
    try:
        root = docker_client.info().get("DockerRootDir")
    except (AttributeError, DockerException):
        return None
    return Path(root) if root else None


# params: keyword-only probes a test replaces (docker, os-release, gpu, disks, machine, binfmt)
def diagnose(matrix: Matrix, repo_url: str, *, docker_client=None, os_release_path=None,
             gpu: Gpu | None | bool = False, disk_paths=(Path("/"),),
             machine: str | None = None, binfmt: Path | None = None):
    """gpu=False: ask nvidia-smi; a Gpu or None: use that (tests). machine/binfmt: uname
    -m and the binfmt_misc directory (tests). disk_paths: the directories whose free space
    builds need (the out and cache directories); Docker's data root is added when the
    engine answers."""
    d = Diagnosis()
    docker_root = None
    try:
        if docker_client is None:
            from .engine import client
            docker_client = client(timeout=10)
        version = docker_client.version()
        d.add("docker", True, f"engine {version.get('Version')} answers "
                              f"({version.get('Os')}/{version.get('Arch')})")
        docker_root = _docker_root(docker_client)
    except DockerEngineError as exc:
        d.add("docker", False, f"{exc.message} (needed to build, not to install)")
    except DockerException as exc:
        d.add("docker", False, f"the engine refused: {exc} (needed to build, not to install)")
    for path in dict.fromkeys([*disk_paths, *([docker_root] if docker_root else [])]):
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None:
            free = shutil.disk_usage(existing).free / 1e9
            d.add(f"disk {path}", free >= MIN_FREE_GB,
                  f"{free:.0f} GB free" + ("" if free >= MIN_FREE_GB else
                                           f" (a GPU cell needs about {MIN_FREE_GB} GB)"))
    arch = host_arch(matrix, machine)
    d.add("architecture", arch is not None,
          f"{arch} ({machine or platform.machine()})" if arch else
          f"{machine or platform.machine()} is not an architecture of the matrix "
          f"({', '.join(matrix.architectures)})")
    for other in matrix.architectures.values():
        if other.name == arch:
            continue
        got = emulation.status(other, binfmt, machine)
        d.add(f"{other.name} containers", got.ok,
              f"{got.detail} (builds, smoke-tests {other.name} cells)" if got.ok else
              f"{got.detail}: {other.name} cells cannot be built or smoke-tested here; "
              f"fix: {got.fix}")
    d.gpu = nvidia_gpu() if gpu is False else gpu
    if d.gpu:
        d.add("gpu", True, f"{', '.join(d.gpu.names)}; driver {d.gpu.driver}, "
                           f"CUDA up to {d.gpu.cuda}")
    else:
        d.add("gpu", None, "no NVIDIA GPU/driver (nvidia-smi): the cpu package fits")
    release = os_release(os_release_path or Path("/etc/os-release"))
    d.codename = release.get("VERSION_CODENAME")
    names = {dist.codename: name for name, dist in matrix.distros.items()}
    d.distro = names.get(d.codename or "")
    if d.distro is None:
        d.add("distro", False, f"{release.get('PRETTY_NAME', 'unknown')} ({d.codename}) is "
                               f"not in the matrix; supported: {', '.join(sorted(names))}")
        return d
    d.add("distro", True, f"{release.get('PRETTY_NAME', d.distro)} = {d.distro} ({d.codename})")
    d.cell = fitting_cell(matrix, d.distro, d.gpu, arch) if arch else None
    if d.cell is None:
        d.add("package", False, f"no cell for {d.distro} on {arch or 'this architecture'} "
                                "in the matrix")
        return d
    why = (f"CUDA {d.cell.cuda} ≤ the driver's {d.gpu.cuda}" if d.cell.cuda
           else "no usable GPU" if d.gpu is None else "no CUDA variant fits the driver")
    d.add("package", True, f"{d.cell.package.name} {d.cell.deb_version}, component "
                           f"{d.cell.component} ({why})")
    url = repo_url.rstrip("/")
    d.commands = [
        f"curl -fsSL {url}/{KEYRING_NAME} | sudo tee {KEYRING_DEST} > /dev/null",
        f"echo 'deb [signed-by={KEYRING_DEST}] {url} {d.cell.codename} {d.cell.component}' "
        "| sudo tee /etc/apt/sources.list.d/mxbuild.list",
        f"sudo apt-get update && sudo apt-get install {d.cell.package.name}",
        user_pip_command(f"{url}/simple/", (d.cell.client_wheel or d.cell.official_wheel).version),
    ]
    if d.cell.cuda:
        d.commands.insert(2, "# CUDA runtime packages (Depends) come from NVIDIA's CUDA "
                             "repository for this distro: add it first")
    jvm = next((p.name for p in d.cell.packages if p.client == "jvm"), None)
    if jvm:
        d.commands += [f"sudo apt-get install {jvm}   # JVM services: the JNI library",
                       *jvm_lines(f"{url}/maven", d.cell.mxnet)]
    return d


def jvm_lines(maven_url: str, version: str) -> list[str]:
    """What a JVM service adds: one repository and one dependency (Maven, Gradle, sbt)."""
    from .jvm_client import ARTIFACT_ID, GROUP_ID
    return [
        f"# Maven: <repository><id>mxbuild</id><url>{maven_url}</url></repository>  and  "
        f"<dependency><groupId>{GROUP_ID}</groupId><artifactId>{ARTIFACT_ID}</artifactId>"
        f"<version>{version}</version></dependency>",
        f"# Gradle: repositories {{ maven {{ url '{maven_url}' }} }}  and  "
        f"dependencies {{ implementation '{GROUP_ID}:{ARTIFACT_ID}:{version}' }}",
        f'# sbt: resolvers += "mxbuild" at "{maven_url}"  and  '
        f'libraryDependencies += "{GROUP_ID}" % "{ARTIFACT_ID}" % "{version}"',
    ]
