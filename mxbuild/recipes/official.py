"""What the recipes that harvest official MXNet binaries (wheel, maven) share: the one
harvest path (recipes/official/harvest.sh in the cell's build image, then the RPATH
pointed at the private directory), reading their zip archives (wheels and jars are both)
and what lintian finds in upstream's libmxnet.so, which mxbuild reports upstream instead
of patching."""
from __future__ import annotations

import calendar
import hashlib
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import elfedit, payload as payload_mod
from ..containers import CommandFailed, Container
from ..errors import MxbuildError
from ..payload import BUILD_HOME, BUILD_UID, PRIVATE_DIR

SCRIPTS = "official"      # recipes/official/: the harvest script, in every harvest's key


@dataclass(frozen=True)
class Harvest:
    """What to take from an official archive, and where it goes in the payload."""
    archive: Path                        # the verified wheel or jar
    natives: str                         # its folder of native libraries: mxnet, lib/native
    # MXNet's own libraries: (name in `natives`, payload path); libmxnet.so first
    own: tuple[tuple[str, str], ...]
    bundled: tuple[str, ...]             # what it bundles: to the private directory
    declared_at: str                     # the matrix key listing `bundled`: wheel.bundled
    keep_as_is: tuple[str, ...] = ()     # bundled libraries whose licence forbids stripping

    @property
    def rels(self) -> list[str]:
        """The payload paths of everything harvested."""
        return [rel for _, rel in self.own] + [f"{PRIVATE_DIR}/{b}" for b in self.bundled]

    def upstream_hashes(self) -> dict[str, str]:
        """name -> sha256 of each harvested library as upstream published it."""
        return member_hashes(self.archive, self.natives,
                             [name for name, _ in self.own] + list(self.bundled))


def harvest(ctx, cell, build_ref: str, logf: IO[str], spec: Harvest) -> Path:
    """Harvest `spec` in the cell's build image (recipes/official/harvest.sh): every native
    library of the archive accounted for in matrix.yaml, unstripped ones stripped, the
    SONAME checked; then libmxnet.so's RPATH pointed at the private directory. Returns the
    payload directory."""
    work = ctx.opts.work_dir / cell.id
    payload_dir = work / "payload"
    if payload_dir.exists():
        shutil.rmtree(payload_dir)
    own = dict(uid=BUILD_UID, gid=BUILD_UID)
    name = spec.archive.name
    with Container(ctx.docker, build_ref, label=f"recipe-{cell.id}", log_file=logf) as box:
        box.copy_into(spec.archive, BUILD_HOME, **own)
        box.copy_into(ctx.data.recipe(SCRIPTS) / "harvest.sh", BUILD_HOME, **own)
        try:
            box.run(["sh", f"{BUILD_HOME}/harvest.sh", f"{BUILD_HOME}/{name}", spec.natives,
                     f"{BUILD_HOME}/payload", PRIVATE_DIR,
                     *(f"{lib}={rel}" for lib, rel in spec.own), "--", *spec.bundled],
                    user="builder", env={"DECLARED_AT": spec.declared_at,
                                         "KEEP_AS_IS": " ".join(spec.keep_as_is)})
        except CommandFailed as exc:
            raise MxbuildError(f"harvesting {name} failed: {exc}\n{exc.tail[-1500:]}",
                               f"if the native libraries of {name} changed, update "
                               f"{spec.declared_at} in matrix.yaml")
        box.copy_out(f"{BUILD_HOME}/payload", work)
    if spec.bundled:     # nothing bundled: nothing to find, the RPATH is left as it is
        payload_mod.point_at_private_dir(payload_dir / "libmxnet.so", logf)
    return payload_dir

OVERRIDES = (("embedded-library *", "The official binary links OpenCV's image codecs "
              "(libjpeg, libpng, zlib) statically."),)


def archive_epoch(archive: Path) -> int:
    """SOURCE_DATE_EPOCH of an official build: the newest timestamp in its archive."""
    with zipfile.ZipFile(archive) as zf:
        return max(calendar.timegm((*i.date_time, 0, 0, 0)) for i in zf.infolist())


def member_hashes(archive: Path, directory: str, names: list[str]) -> dict[str, str]:
    """name -> sha256 of `directory/name` in the archive, as upstream published it."""
    out = {}
    with zipfile.ZipFile(archive) as zf:
        for name in names:
            h = hashlib.sha256()
            with zf.open(f"{directory}/{name}") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
    return out


def library_overrides(library: Path) -> tuple[tuple[str, str], ...]:
    """The lintian findings of an official libmxnet.so. One built without a SONAME ships
    without one (adding it would append a segment), and lintian is told why."""
    if elfedit.soname(library) is not None:
        return OVERRIDES
    return OVERRIDES + (("sharedobject-in-library-directory-missing-soname *",
                         "Upstream built it without a SONAME; adding one would append a "
                         "segment that old ldconfigs reject."),)
