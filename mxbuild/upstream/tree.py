"""The part of an MXNet source tree its Python tests need (matrix `upstream_tests.<version>
.ship`), as a reproducible tar that travels with the cell's .debs (out/debs/<cell>/), so
`invoke smoke` on another agent runs the same tests without the source."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from ..fetch import sha256_file
from ..matrix import UpstreamTests

TESTS_TAR = "upstream-tests.tar"
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".git"}


def collect(source: Path, is_dir: bool, spec: UpstreamTests, dest: Path) -> Path:
    """Write dest (a tar: names sorted, root-owned, mtime 0) with every file of the source
    tree (a directory or a release tarball) under spec.ship. ConfigError naming what is
    missing if a shipped item or a listed test file is not there."""
    files = _from_dir(source, spec.ship) if is_dir else _from_tarball(source, spec.ship)
    missing = [item for item in spec.ship
               if not any(_under(name, item) for name in files)]
    missing += [f.path for f in spec.files if f.path not in files and f.path not in missing]
    if missing:
        raise ConfigError(
            f"the source tree has no {', '.join(missing)}: MXNet {spec.version}'s own tests "
            f"(matrix.yaml upstream_tests.\"{spec.version}\") cannot run",
            "build from the complete source release (the Apache tarball has tests/), or "
            "change upstream_tests in matrix.yaml")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(dest)
    return dest


def digest(tar: Path) -> str:
    return sha256_file(tar)


def _under(name: str, item: str) -> bool:
    return name == item or name.startswith(item.rstrip("/") + "/")


def _wanted(name: str, ship) -> bool:
    parts = PurePosixPath(name).parts
    return (any(_under(name, item) for item in ship) and not SKIPPED_PARTS & set(parts)
            and not name.endswith(".pyc"))


def _from_dir(tree: Path, ship) -> dict[str, bytes]:
    out = {}
    for item in ship:
        top = tree / item
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            name = path.relative_to(tree).as_posix()
            if _wanted(name, ship) and not os.path.islink(path):
                out[name] = path.read_bytes()
    return out


def _from_tarball(tarball: Path, ship) -> dict[str, bytes]:
    """Members under the tarball's top directory (apache-mxnet-src-X-incubating/…)."""
    out = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            name = PurePosixPath(member.name).parts[1:]
            rel = "/".join(name)
            if member.isfile() and name and _wanted(rel, ship):
                out[rel] = tar.extractfile(member).read()
    return out
