"""What the recipes that harvest official MXNet binaries (wheel, maven) share: reading
their zip archives (wheels and jars are both) and what lintian finds in upstream's
libmxnet.so, which mxbuild reports upstream instead of patching."""
from __future__ import annotations

import calendar
import hashlib
import zipfile
from pathlib import Path

from .. import elfedit

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
