"""Content-addressed download cache: a file is stored under its sha256 and never
used before its hash was checked against the pin."""
from __future__ import annotations

import hashlib
import html.parser
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import ChecksumError, MxbuildError
from .log import log
from .matrix import WheelPin

CHUNK = 1 << 20
DEFAULT_INDEX = "https://pypi.org/simple"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def cas_path(cache_dir: Path, sha256: str, filename: str) -> Path:
    return cache_dir / "sha256" / sha256[:2] / sha256 / filename


def _ssl_context(extra_ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if extra_ca:
        ctx.load_verify_locations(cafile=str(extra_ca))
    return ctx


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") if tag == "a" else None
        if href:
            name = urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            self.links[name] = href


def index_url(pin: WheelPin, index: str, ctx: ssl.SSLContext) -> str:
    """Find the pinned file on a PEP 503 simple index (PyPI, a mirror, devpi...)."""
    page = f"{index.rstrip('/')}/{pin.name.lower()}/"
    try:
        with urllib.request.urlopen(page, context=ctx, timeout=60) as resp:
            parser = _Links()
            parser.feed(resp.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        raise MxbuildError(f"cannot read the package index {page}: {exc}",
                           "check network access to PyPI, or set MXBUILD_INDEX_URL to a "
                           "PEP 503 simple index that has the wheel")
    href = parser.links.get(pin.filename)
    if href is None:
        raise MxbuildError(f"{page} lists no file {pin.filename}",
                           "fix wheel.filename in matrix.yaml, or use another index")
    url = urllib.parse.urljoin(page, href)
    fragment = urllib.parse.urlsplit(url).fragment
    if fragment.startswith("sha256=") and fragment[7:] != pin.sha256:
        raise ChecksumError(f"the index says {pin.filename} has sha256 {fragment[7:]}, "
                            f"matrix.yaml pins {pin.sha256}",
                            "check which of the two is right before changing the pin")
    return urllib.parse.urldefrag(url).url


def verify(path: Path, sha256: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != sha256:
        raise ChecksumError(f"{what}: sha256 is {actual}, the pin says {sha256}",
                            "the file is corrupt or the pin is wrong; delete the file "
                            f"({path}) to download it again, or correct the pin in matrix.yaml")


def fetch_wheel(pin: WheelPin, cache_dir: Path, extra_ca: Path | None = None) -> Path:
    """Return the verified wheel from the cache, downloading it (streamed) if absent."""
    dest = cas_path(cache_dir, pin.sha256, pin.filename)
    if dest.exists():
        verify(dest, pin.sha256, f"cached {pin.filename}")
        return dest
    local = os.environ.get("MXBUILD_WHEEL_DIR")  # e.g. a pip download dir already on disk
    ctx = _ssl_context(extra_ca)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            if local and (Path(local) / pin.filename).is_file():
                src = Path(local) / pin.filename
                log.info("copying %s from MXBUILD_WHEEL_DIR", pin.filename)
                with open(src, "rb") as f:
                    for block in iter(lambda: f.read(CHUNK), b""):
                        tmp.write(block)
            else:
                url = index_url(pin, os.environ.get("MXBUILD_INDEX_URL", DEFAULT_INDEX), ctx)
                log.info("downloading %s", url)
                with urllib.request.urlopen(url, context=ctx, timeout=300) as resp:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        tmp.write(block)
        except (urllib.error.URLError, OSError) as exc:
            tmp_path.unlink(missing_ok=True)
            raise MxbuildError(f"downloading {pin.filename} failed: {exc}",
                               "check network access to PyPI or set MXBUILD_INDEX_URL")
    try:
        verify(tmp_path, pin.sha256, f"downloaded {pin.filename}")
    except ChecksumError:
        tmp_path.unlink(missing_ok=True)  # nothing unverified ever enters the cache
        raise
    tmp_path.replace(dest)
    return dest
