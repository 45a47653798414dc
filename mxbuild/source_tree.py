"""An MXNet source tree: its version, and (for recipe "compile") is it what the preset will
compile? Checked before any image
is built or any file copied, so a tree without its submodules (a `git clone` without
--recursive, GitHub's "Download ZIP") or of another release fails in a second with the
fix, not after a long build with a raw CMake or link error.

The markers are files MXNet 1.9.x's CMakeLists.txt (line numbers below) really reads, so
an empty submodule directory is caught too.
"""
from __future__ import annotations

import hashlib
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Marker:
    path: str          # relative to the top of the tree
    origin: str        # the repository a submodule comes from
    why: str


ALWAYS = (
    Marker("3rdparty/mshadow/mshadow/tensor.h", "part of the MXNet tree", "mshadow"),
    Marker("3rdparty/dmlc-core/CMakeLists.txt", "dmlc/dmlc-core",
           "libdmlc: CMakeLists.txt:532 skips it silently and the final link fails"),
    Marker("3rdparty/dlpack/include/dlpack/dlpack.h", "dmlc/dlpack", "the DLPack headers"),
    Marker("3rdparty/tvm/nnvm/src/core/graph.cc", "apache/tvm", "NNVM is compiled into "
           "libmxnet: CMakeLists.txt:545 globs nothing and the final link fails"),
    Marker("3rdparty/googletest/googletest/CMakeLists.txt", "google/googletest",
           "CMakeLists.txt:517 adds it unconditionally, although no test is built"),
)
BY_FLAG = {
    "USE_MKLDNN": Marker("3rdparty/mkldnn/CMakeLists.txt", "oneapi-src/oneDNN",
                         "the preset sets USE_MKLDNN"),
    "USE_DIST_KVSTORE": Marker("3rdparty/ps-lite/CMakeLists.txt", "dmlc/ps-lite",
                               "the preset sets USE_DIST_KVSTORE"),
    "USE_INTGEMM": Marker("3rdparty/intgemm/CMakeLists.txt", "kpu/intgemm",
                          "the preset sets USE_INTGEMM"),
}
# CUDA < 11 compiles against the bundled CUB (CMakeLists.txt:690).
CUB = Marker("3rdparty/nvidia_cub/cub/cub.cuh", "NVlabs/cub",
             "CUDA before 11 compiles against this CUB")
VERSION_H = "include/mxnet/base.h"
VERSION_RE = re.compile(r"^#define\s+MXNET_(MAJOR|MINOR|PATCH)\s+(\d+)", re.M)
ON = ("ON", "1", "TRUE", "YES", "Y")


SET_CACHE_RE = re.compile(r'^set\((\w+) "?([^" ]*)"? CACHE', re.M)
INCLUDE_RE = re.compile(r"^include\(\$\{CMAKE_CURRENT_LIST_DIR\}/(\w+)\.cmake\)", re.M)


def preset_values(*presets: Path) -> dict[str, str]:
    """The cache values `cmake -C first -C second …` gets from preset files
    (`set(NAME value CACHE …)`, include()s followed where they stand): as in CMake, the
    first file to set a value wins (an architecture layer before the variant's preset)."""
    values: dict[str, str] = {}

    def read(preset: Path) -> None:
        text = preset.read_text()
        events = sorted([(m.start(), "set", m.groups()) for m in SET_CACHE_RE.finditer(text)]
                        + [(m.start(), "include", m.group(1))
                           for m in INCLUDE_RE.finditer(text)])
        for _, kind, what in events:
            if kind == "include":
                read(preset.parent / f"{what}.cmake")
            else:
                values.setdefault(*what)

    for preset in presets:
        read(preset)
    return values


def required(values: dict[str, str], cuda: str | None) -> list[Marker]:
    need = list(ALWAYS)
    need += [m for flag, m in BY_FLAG.items() if values.get(flag, "OFF").upper() in ON]
    if cuda and int(cuda.split(".")[0]) < 11:
        need.append(CUB)
    return need


def version_of(header: str) -> str | None:
    """MAJOR.MINOR.PATCH from the text of include/mxnet/base.h, or None."""
    parts = dict(VERSION_RE.findall(header))
    if set(parts) != {"MAJOR", "MINOR", "PATCH"}:
        return None
    return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"


def _check(exists: Callable[[str], bool], read: Callable[[str], str | None], where: str,
           mxnet: str, need: list[Marker]) -> None:
    problems = []
    version = version_of(read(VERSION_H) or "")
    if version is None:
        problems.append(f"{VERSION_H} with MXNET_MAJOR/MINOR/PATCH is missing: this is not "
                        "an MXNet source tree")
    elif version != mxnet:
        problems.append(f"it is MXNet {version}, the cell builds {mxnet}")
    for marker in need:
        if not exists(marker.path):
            top = "/".join(marker.path.split("/")[:2])
            problems.append(f"{top} ({marker.origin}) is missing or empty (no "
                            f"{marker.path}): {marker.why}")
    if not problems:
        return
    fix = ("use the Apache source release (it ships every submodule), or in a git checkout "
           "of the release tag run `git submodule update --init --recursive`")
    if version is not None and version != mxnet:
        fix = f"point it at an MXNet {mxnet} tree, or select the {version} cell"
    raise ConfigError(f"the source {where} cannot build MXNet {mxnet}:\n  - "
                      + "\n  - ".join(problems), fix)


def check_dir(tree: Path, mxnet: str, need: list[Marker]) -> None:
    def read(rel: str) -> str | None:
        path = tree / rel
        return path.read_text(errors="replace") if path.is_file() else None
    _check(lambda rel: (tree / rel).is_file(), read, f"tree {tree}", mxnet, need)


def check_tarball(tarball: Path, mxnet: str, need: list[Marker]) -> None:
    """Member names with the top directory stripped, as build.sh unpacks it
    (`tar --strip-components=1`)."""
    with tarfile.open(tarball) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers()
                   if "/" in m.name and m.isfile()}

        def read(rel: str) -> str | None:
            member = members.get(rel)
            return tar.extractfile(member).read().decode(errors="replace") if member else None
        _check(members.__contains__, read, f"tarball {tarball.name}", mxnet, need)


def digest(tree: Path) -> str:
    """sha256 over every file of a source tree (relative names, contents; symlinks by
    target; .git left out): the compiled payload's cache key for --source-dir, so an edit
    anywhere in the tree is a new compile and an unchanged tree is reused."""
    h = hashlib.sha256()
    for base, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = Path(base, name)
            rel = path.relative_to(tree).as_posix()
            if path.is_symlink():
                h.update(b"L" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
            elif path.is_file():
                with open(path, "rb") as f:
                    content = hashlib.file_digest(f, "sha256").digest()
                h.update(b"F" + rel.encode() + b"\0" + content)
    return h.hexdigest()
