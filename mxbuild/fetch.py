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

from .errors import ChecksumError, DownloadError, MxbuildError
from .log import log
from .matrix import WheelPin

CHUNK = 1 << 20
DEFAULT_INDEX = "https://pypi.org/simple"


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def cas_path(cache_dir: Path, digest: str, filename: str, algo: str = "sha256") -> Path:
    return cache_dir / algo / digest[:2] / digest / filename


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


def verify(path: Path, digest: str, what: str, algo: str = "sha256") -> None:
    actual = file_digest(path, algo)
    if actual != digest:
        raise ChecksumError(f"{what}: {algo} is {actual}, the pin says {digest}",
                            "the file is corrupt or the pin is wrong; delete the file "
                            f"({path}) to download it again, or correct the pin in matrix.yaml")


def _store(dest: Path, digest: str, what: str, fill, algo: str = "sha256") -> Path:
    """Write via fill(file) into a temp file beside dest, verify, then move into place:
    nothing unverified ever enters the cache."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent)
    tmp_path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                fill(f)
            except (urllib.error.URLError, OSError) as exc:
                raise DownloadError(f"downloading {what} failed: {exc}",
                                    "check network access (PyPI, the distro archives) or "
                                    "set MXBUILD_INDEX_URL / MXBUILD_WHEEL_DIR")
        verify(tmp_path, digest, f"downloaded {what}", algo)
    except BaseException:    # any failure, Ctrl-C included: no half file left behind
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.replace(dest)
    return dest


def _link_verified(src: Path, dest: Path, digest: str) -> Path:
    """A file of a shared download directory into the cache: hard-linked when both are on
    one filesystem (GPU wheels are up to 1.3 GB; a CI agent's cache would copy each), else
    copied; verified against the pin either way before it is in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    try:
        os.link(src, tmp)
    except OSError:
        log.info("copying %s from MXBUILD_WHEEL_DIR", src.name)
        return _store(dest, digest, src.name, _copy_from(src))
    try:
        verify(tmp, digest, f"{src} (MXBUILD_WHEEL_DIR)")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("linked %s from MXBUILD_WHEEL_DIR", src.name)
    return dest


def _copy_from(src: Path):
    def fill(out):
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                out.write(block)
    return fill


def _download(url: str, ctx: ssl.SSLContext):
    def fill(out):
        with urllib.request.urlopen(url, context=ctx, timeout=300) as resp:
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
    return fill


def fetch_pinned(url: str, digest: str, cache_dir: Path, extra_ca: Path | None = None,
                 algo: str = "sha256") -> Path:
    """Download url into the content-addressed cache; refuse it unless its digest matches."""
    filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    dest = cas_path(cache_dir, digest, filename, algo)
    if dest.exists():
        verify(dest, digest, f"cached {filename}", algo)
        return dest
    log.info("downloading %s", url)
    return _store(dest, digest, filename, _download(url, _ssl_context(extra_ca)), algo)


def copy_pinned(src: Path, digest: str, cache_dir: Path, algo: str = "sha256") -> Path:
    """Put a local file into the cache only if its digest matches the pin."""
    dest = cas_path(cache_dir, digest, src.name, algo)
    if dest.exists():
        verify(dest, digest, f"cached {src.name}", algo)
        return dest
    return _store(dest, digest, str(src), _copy_from(src), algo)


def download_bytes(url: str, extra_ca: Path | None = None, limit: int = 1 << 20) -> bytes:
    """A small unpinned file (a signature, a KEYS file): verified by other means."""
    try:
        with urllib.request.urlopen(url, context=_ssl_context(extra_ca), timeout=60) as resp:
            return resp.read(limit)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"downloading {url} failed: {exc}", "")


def fetch_wheel(pin: WheelPin, cache_dir: Path, extra_ca: Path | None = None) -> Path:
    """Return the verified wheel from the cache, downloading it (streamed) if absent."""
    dest = cas_path(cache_dir, pin.sha256, pin.filename)
    if dest.exists():
        verify(dest, pin.sha256, f"cached {pin.filename}")
        return dest
    local = os.environ.get("MXBUILD_WHEEL_DIR")  # e.g. a pip download dir already on disk
    if local and (Path(local) / pin.filename).is_file():
        return _link_verified(Path(local) / pin.filename, dest, pin.sha256)
    ctx = _ssl_context(extra_ca)
    url = index_url(pin, os.environ.get("MXBUILD_INDEX_URL", DEFAULT_INDEX), ctx)
    log.info("downloading %s", url)
    return _store(dest, pin.sha256, pin.filename, _download(url, ctx))


def cached_wheel(pin: WheelPin, cache_dir: Path, extra_ca: Path | None = None) -> Path:
    """The pinned wheel's cache path without re-hashing it (it was verified when it entered
    the cache, and only verified files ever do); fetched and verified if absent."""
    dest = cas_path(cache_dir, pin.sha256, pin.filename)
    return dest if dest.is_file() else fetch_wheel(pin, cache_dir, extra_ca)
