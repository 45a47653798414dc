"""The thin client: MXNet's Python package without any native library (`mxnet-thin`),
which loads the libmxnet.so the .deb installed; and its PEP 503 index next to the apt
repository (`<repo>/simple/`), so `pip install --index-url <repo>/simple mxnet-thin` works.

One thin wheel per MXNet version, made from that version's canonical official wheel
(matrix.py: the cpu build's, else the first GPU variant's), byte-identical on every run.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import re
import tempfile
import zipfile
from pathlib import Path

from .errors import MxbuildError, RepoError
from .fetch import fetch_wheel, sha256_file
from .log import log
from .matrix import Cell
from .options import Options
from .repo.storage import CasConflict
from .thin import ThinClient, ThinClientKind, register

THIN_NAME = "mxnet-thin"
THIN_DIST = "mxnet_thin"
INDEX_PREFIX = "simple"
NATIVE_RE = re.compile(r"^mxnet/[^/]+\.so(\.\d+)*$")
MAX_ATTEMPTS = 50
THIN_FORMAT = 1      # bump when build_thin_wheel changes what it writes

# Appended to mxnet/libinfo.py. Python 3.5 syntax: xenial's client runs it.
LIBINFO_FALLBACK = '''

# --- mxnet-thin (mxbuild) --------------------------------------------------------------
# This package carries no native library: libmxnet.so comes from the system package
# (apt-get install libmxnet). Upstream's search (MXNET_LIBRARY_PATH, LD_LIBRARY_PATH, next
# to the package) still comes first; then the directories the .deb installs into.
_upstream_find_lib_path = find_lib_path


def find_lib_path(prefix='libmxnet'):
    try:
        return _upstream_find_lib_path(prefix)
    except RuntimeError:
        pass
    import sysconfig
    multiarch = sysconfig.get_config_var('MULTIARCH') or (platform.machine() + '-linux-gnu')
    candidates = [os.path.join(d, prefix + '.so') for d in
                  ('/usr/lib/' + multiarch, '/usr/local/lib', '/usr/lib64', '/usr/lib')]
    found = [p for p in candidates if os.path.isfile(p)]
    if not found:
        raise RuntimeError('Cannot find the MXNet library: mxnet-thin uses the one of the '
                           'system package (apt-get install libmxnet).\\nCandidates:\\n' +
                           '\\n'.join(candidates))
    return found[:1]
'''


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def thin_filename(version: str, python_tags: list[str]) -> str:
    return f"{THIN_DIST}-{version}-{'.'.join(python_tags)}-none-any.whl"


def build_thin_wheel(wheel: Path, out_dir: Path) -> Path:
    """Rewrite an official MXNet wheel into the platform-independent mxnet-thin wheel:
    native libraries dropped, libinfo taught the system path, metadata renamed. Members
    keep their order and timestamps, so the same input gives the same bytes."""
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        dist = next((n.split("/")[0] for n in names
                     if re.match(r"^[^/]+\.dist-info/METADATA$", n)), None)
        if dist is None:
            raise MxbuildError(f"{wheel.name} has no .dist-info/METADATA", "")
        metadata = src.read(f"{dist}/METADATA").decode()
        version = re.search(r"^Version: (\S+)$", metadata, re.M).group(1)
        tags = re.findall(r"^Tag: (py\d+)-", src.read(f"{dist}/WHEEL").decode(), re.M)
        python_tags = sorted(set(tags)) or ["py3"]
        new_dist = f"{THIN_DIST}-{version}.dist-info"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / thin_filename(version, python_tags)
        record: list[str] = []
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
            def add(info: zipfile.ZipInfo, name: str, data: bytes) -> None:
                member = zipfile.ZipInfo(name, info.date_time)
                member.external_attr = 0o644 << 16
                member.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(member, data)
                record.append(f"{name},{_record_hash(data)},{len(data)}")
            stamp = None
            for info in src.infolist():
                name = info.filename
                if name.endswith("/") or NATIVE_RE.match(name) or name == f"{dist}/RECORD":
                    continue
                data = src.read(info)
                if name.startswith(f"{dist}/"):
                    stamp = info
                    leaf = name.split("/", 1)[1]
                    if leaf == "METADATA":
                        data = _thin_metadata(data.decode()).encode()
                    elif leaf == "WHEEL":
                        data = _thin_wheel_file(python_tags).encode()
                    name = f"{new_dist}/{leaf}"
                elif name == "mxnet/libinfo.py":
                    data = data + LIBINFO_FALLBACK.encode()
                add(info, name, data)
            record.append(f"{new_dist}/RECORD,,")
            member = zipfile.ZipInfo(f"{new_dist}/RECORD", stamp.date_time if stamp else
                                     (1980, 1, 1, 0, 0, 0))
            member.external_attr = 0o644 << 16
            member.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(member, "\n".join(record) + "\n")
        if "mxnet/libinfo.py" not in names:
            raise MxbuildError(f"{wheel.name} has no mxnet/libinfo.py to patch", "")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{out.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)        # a reader never sees half a wheel
    return out


def _thin_metadata(text: str) -> str:
    head, _, body = text.partition("\n\n")
    head = re.sub(r"^Name: .*$", f"Name: {THIN_NAME}", head, count=1, flags=re.M)
    head = re.sub(r"^Summary: .*$", "Summary: Apache MXNet's Python package without a native "
                  "library; it uses the system's libmxnet (apt-get install libmxnet)",
                  head, count=1, flags=re.M)
    return head + "\n\n" + body


def _thin_wheel_file(python_tags: list[str]) -> str:
    lines = ["Wheel-Version: 1.0", "Generator: mxbuild", "Root-Is-Purelib: true"]
    return "\n".join(lines + [f"Tag: {t}-none-any" for t in python_tags]) + "\n\n"


def thin_wheel_for(cell: Cell, opts: Options) -> Path:
    """The thin wheel of the cell's MXNet version (built once, then reused). Cells of one
    version may ask at once (--jobs): each writes the same bytes under a temporary name
    and renames, so no lock is needed."""
    pin = cell.client_wheel or cell.official_wheel
    # keyed by the input wheel and by how it is rewritten: a changed rewrite is rebuilt
    key = hashlib.sha256(f"{pin.sha256}\n{THIN_FORMAT}\n{LIBINFO_FALLBACK}".encode()).hexdigest()
    out_dir = opts.out_dir / "client" / key[:16]
    existing = sorted(out_dir.glob("*.whl")) if out_dir.exists() else []
    if existing:
        return existing[0]
    official = fetch_wheel(pin, opts.cache_dir / "downloads", opts.extra_ca_bundle)
    return build_thin_wheel(official, out_dir)


class PythonClient(ThinClientKind):
    """The mxnet-thin wheel in a PEP 503 index next to the apt repository."""
    name = "python"

    def make(self, ctx, cell: Cell, built: Path) -> ThinClient:
        wheel = thin_wheel_for(cell, ctx.opts)
        return ThinClient(self.name, wheel, wheel_version(wheel), sha256_file(wheel))

    def publish(self, storage, client: ThinClient) -> bool:
        return publish_thin(storage, client.path)

    def is_published(self, storage, client: ThinClient) -> bool:
        return is_published(storage, client.path)


def is_published(storage, wheel: Path) -> bool:
    """The project page already links this wheel with its sha256 (and the file is there)."""
    page = storage.get(f"{INDEX_PREFIX}/{THIN_NAME}/index.html")
    link = f'href="{html.escape(wheel.name)}#sha256={sha256_file(wheel)}"'.encode()
    return page is not None and link in page[0] and storage.exists(wheel_key(wheel.name))


# ---------------------------------------------------------------- PEP 503 index

def wheel_key(filename: str) -> str:
    return f"{INDEX_PREFIX}/{THIN_NAME}/{filename}"


def render_project_index(files: dict[str, str]) -> str:
    """files: filename -> sha256."""
    links = "\n".join(f'    <a href="{html.escape(name)}#sha256={sha}">{html.escape(name)}</a><br>'
                      for name, sha in sorted(files.items()))
    return ("<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" "
            f"content=\"1.0\"><title>Links for {THIN_NAME}</title></head>\n  <body>\n"
            f"    <h1>Links for {THIN_NAME}</h1>\n{links}\n  </body>\n</html>\n")


ROOT_INDEX = ("<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" "
              "content=\"1.0\"><title>Simple index</title></head>\n  <body>\n"
              f"    <a href=\"{THIN_NAME}/\">{THIN_NAME}</a><br>\n  </body>\n</html>\n")


def publish_thin(storage, wheel: Path) -> bool:
    """Upload a thin wheel (same name, other bytes: refused) and commit the project index
    with compare-and-swap, listing after reading the token so no concurrent upload is lost.
    Returns True if the index changed."""
    storage.put_new(wheel_key(wheel.name), src=wheel, sha256=sha256_file(wheel))
    root_page = f"{INDEX_PREFIX}/index.html"
    if storage.get(root_page) is None:
        storage.put(root_page, ROOT_INDEX.encode())
    _sync_alias(storage, root_page, ROOT_INDEX.encode())
    key = f"{INDEX_PREFIX}/{THIN_NAME}/index.html"
    for _ in range(MAX_ATTEMPTS):
        current = storage.get(key)
        files = {obj.key.rsplit("/", 1)[1]: storage.sha256_of(obj.key)
                 for obj in storage.list(f"{INDEX_PREFIX}/{THIN_NAME}/")
                 if obj.key.endswith(".whl")}
        text = render_project_index(files).encode()
        if current is not None and current[0] == text:
            _sync_alias(storage, key, text)
            return False
        try:
            storage.put_cas(key, text, current[1] if current else None)
        except CasConflict:
            continue
        log.debug("index %s: %d wheels", key, len(files))
        _sync_alias(storage, key, text)
        return True
    raise RepoError(f"gave up updating {key}", "too many concurrent publishers; re-run")


def _sync_alias(storage, page_key: str, text: bytes) -> None:
    """On storage that does not map dir/ to dir/index.html (S3), keep a copy under dir/.
    Derived from the committed page, so a stop in between is repaired by the next run."""
    if storage.serves_directory_index:
        return
    alias = page_key[: -len("index.html")]
    if storage.sha256_of(alias) != hashlib.sha256(text).hexdigest():
        storage.put(alias, text)


def trusted_host_args(index_url: str) -> list[str]:
    """pip refuses a plain-http index unless told its host."""
    if not index_url.startswith("http://"):
        return []
    return ["--trusted-host", re.sub(r"^http://([^/:]+).*$", r"\1", index_url)]


def pip_install_args(index_url: str, version: str) -> list[str]:
    """pip arguments that install exactly this thin client from the repository's index."""
    return ["install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
            "--index-url", index_url, *trusted_host_args(index_url),
            f"{THIN_NAME}=={version}"]


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


register(PythonClient())
