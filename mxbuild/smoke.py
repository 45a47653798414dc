"""Run the smoke suite (tests/smoke) in a fresh runtime container of the cell's distro,
installing libmxnet from the published repository with signed-by."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from .containers import CommandFailed, Container
from .errors import MxbuildError
from .images import ImageRef, content_hash
from .matrix import Cell
from .options import Options
from .recipes import PRIVATE_DIR, Payload
from .repo.sign import KEYRING_NAME
from .repo.target import public_url

SMOKE_DIR = "/srv/smoke"
KEYRING_PATH = f"/usr/share/keyrings/{KEYRING_NAME}"


@dataclass(frozen=True)
class SmokeCounts:
    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):  # requests go to the stage log via apt's output
        pass


@contextlib.contextmanager
def serve_directory(path: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve a directory over http on loopback; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(path))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def model_fixtures(opts: Options) -> Path:
    """The exported model + host reference outputs, cached by the generator's content."""
    import mxnet  # noqa: F401  (fail here, clearly, if the host client is missing)
    source = (opts.root / "mxbuild/smoke_model.py").read_text()
    key = content_hash(source, mxnet.__version__)[:16]
    out = opts.cache_dir / "smoke-fixtures" / key
    if not (out / "reference.npz").exists():
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run([sys.executable, "-m", "mxbuild.smoke_model", str(tmp)],
                              cwd=opts.root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MxbuildError(f"exporting the smoke model on the host failed:\n"
                               f"{proc.stderr[-1500:]}", "check that `import mxnet` works in "
                               "this environment (see README set-up)")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def expectations(cell: Cell, payload: Payload) -> dict:
    libdir = f"/usr/lib/{cell.distro.multiarch}"
    return {
        "cell": cell.id, "package": cell.package.name, "version": cell.deb_version,
        "variant": cell.variant, "cuda": cell.cuda, "features": dict(cell.features),
        "library_path": f"{libdir}/libmxnet.so",
        "library_sha256": payload.files["libmxnet.so"],
        "bundled": {b: f"{libdir}/{PRIVATE_DIR}/{b}" for b in (cell.wheel.bundled
                                                                 if cell.wheel else ())},
        "rtol": 1e-5, "atol": 1e-6,
    }


def apt_source_line(url: str, cell: Cell, keyring_path: str = KEYRING_PATH) -> str:
    return f"deb [signed-by={keyring_path}] {url} {cell.codename} {cell.component}"


@contextlib.contextmanager
def repo_url(storage) -> Iterator[str]:
    """Where apt in the smoke container finds the repository: a local directory is
    served on loopback for the duration; S3 is read from its public URL."""
    url = public_url(storage)
    if url is not None:
        yield url
        return
    with serve_directory(storage.root) as served:
        yield served


def run(client, cell: Cell, client_image: ImageRef, payload: Payload, opts: Options,
        logf: IO[str], work: Path, storage, keyring: bytes) -> SmokeCounts:
    fixtures = model_fixtures(opts)
    if work.exists():
        shutil.rmtree(work)
    (work / "fixtures").mkdir(parents=True)
    for f in fixtures.iterdir():
        shutil.copy(f, work / "fixtures" / f.name)
    shutil.copytree(opts.root / "tests/smoke", work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (work / "expect.json").write_text(json.dumps(expectations(cell, payload), indent=2))
    (work / KEYRING_NAME).write_bytes(keyring)
    with repo_url(storage) as url, \
            Container(client, client_image.ref, label=f"smoke-{cell.id}", network="host",
                      log_file=logf) as box:
        box.copy_into(work / KEYRING_NAME, "/usr/share/keyrings")
        box.write_file("/etc/apt/sources.list.d/mxbuild.list", apt_source_line(url, cell) + "\n")
        box.copy_into(work, "/srv", arcname="smoke")
        apt_update(box)
        try:
            box.run(["apt-get", "install", "-y", "--no-install-recommends",
                     f"{cell.package.name}={cell.deb_version}"],
                    env={"DEBIAN_FRONTEND": "noninteractive"})
        except CommandFailed as exc:
            raise MxbuildError(f"installing {cell.package.name} from the repository failed: "
                               f"{exc}\n{exc.tail[-1500:]}", "")
        result = box.run(["python", "-m", "pytest", "-v", "-p", "no:cacheprovider",
                          f"{SMOKE_DIR}/tests", f"--junitxml={SMOKE_DIR}/junit.xml"],
                         env={"MXBUILD_EXPECT": f"{SMOKE_DIR}/expect.json",
                              "MXBUILD_FIXTURES": f"{SMOKE_DIR}/fixtures",
                              # the client carries no native library: force the packaged one
                              "MXNET_LIBRARY_PATH": expectations(cell, payload)["library_path"]},
                         workdir=SMOKE_DIR, check=False)
        box.copy_out(f"{SMOKE_DIR}/junit.xml", work)
    counts = junit_counts(work / "junit.xml")
    if result.exit_code != 0 or counts.failed or counts.errors or counts.tests == 0:
        raise MxbuildError(f"smoke suite: {counts.failed} failed, {counts.errors} errors of "
                           f"{counts.tests}", "read the stage log for the failing tests")
    return counts


def apt_update(box) -> str:
    """apt-get update that fails on any error or warning: a bad signature or hash sum
    must stop the smoke, not scroll by. apt < 2.1.16 has no --error-on, so the
    output is checked as well."""
    result = box.run(["apt-get", "update", "--error-on=any"], check=False)
    if result.exit_code != 0 and "--error-on" in result.output:
        result = box.run(["apt-get", "update"], check=False)
    problems = [line for line in result.output.splitlines()
                if line.startswith(("W:", "E:", "Err:"))]
    if result.exit_code != 0 or problems:
        raise MxbuildError("apt-get update failed against the repository:\n"
                           + "\n".join(problems or result.output.splitlines()[-20:]),
                           "check the repository with `invoke repo.verify`")
    return result.output


def junit_counts(path: Path) -> SmokeCounts:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = lambda attr: sum(int(s.get(attr, 0)) for s in suites)  # noqa: E731
    tests, failed, errors, skipped = (total("tests"), total("failures"), total("errors"),
                                      total("skipped"))
    return SmokeCounts(tests, tests - failed - errors - skipped, failed, errors, skipped)
