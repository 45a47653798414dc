"""Run the smoke suites in a fresh runtime container of the cell's distro, installing
the cell's packages from the published repository with signed-by: the Python suite
(tests/smoke, with the mxnet-thin client). The client image is made in client_image.py.

A cell of another architecture (arm64) runs in a container of its architecture under
emulation, with the same suites; its outputs are compared with the reference outputs of
the official amd64 wheel within the cell's smoke_tolerance (matrix.yaml), and every
suite reports the largest difference it saw (`max_abs_diff`; `tolerance_ratio`: the
largest |got-want| / (atol + rtol·|want|), ≤ 1 passes)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import inspect
import json
import math
import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from docker.errors import NotFound

from ..client import INDEX_PREFIX, THIN_NAME, pip_install_args
from ..containers import CommandFailed, Container
from ..errors import MxbuildError
from ..fetch import cached_wheel
from ..images import ImageRef, content_hash
from ..matrix import Cell
from ..payload import PRIVATE_DIR, Payload
from ..repo.sign import KEYRING_NAME
from ..repo.target import public_url

SMOKE_DIR = "/srv/smoke"
KEYRING_PATH = f"/usr/share/keyrings/{KEYRING_NAME}"


@dataclass(frozen=True)
class SmokeCounts:
    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    gpu_checks: str | None = None               # None: not a GPU cell
    not_installable: list[str] | None = None    # host packages missing here, by name
    # the largest |got - want| against the host's reference outputs (None: none compared)
    max_abs_diff: float | None = None
    tolerance_ratio: float | None = None        # max |got-want| / (atol + rtol·|want|)
    seconds: dict[str, float] | None = None     # per suite: Python, JVM

    def as_dict(self) -> dict:
        return self.__dict__.copy()

    def __add__(self, other: "SmokeCounts") -> "SmokeCounts":
        """Two suites of one cell (Python, JVM) as one set of counts."""
        return SmokeCounts(self.tests + other.tests, self.passed + other.passed,
                           self.failed + other.failed, self.errors + other.errors,
                           self.skipped + other.skipped, self.gpu_checks or other.gpu_checks,
                           sorted(set(self.not_installable or []) |
                                  set(other.not_installable or []))
                           if self.not_installable is not None else other.not_installable,
                           _largest(self.max_abs_diff, other.max_abs_diff),
                           _largest(self.tolerance_ratio, other.tolerance_ratio),
                           {**(self.seconds or {}), **(other.seconds or {})} or None)


def _largest(*values: float | None) -> float | None:
    """The largest of the values that are there (NaN wins: it is the worst)."""
    there = [v for v in values if v is not None]
    if any(math.isnan(v) for v in there):
        return math.nan
    return max(there) if there else None


def python_diffs(path: Path) -> tuple[float | None, float | None]:
    """(max_abs_diff, tolerance_ratio) of the comparisons tests/smoke recorded (JSON
    lines, MXBUILD_DIFFS)."""
    if not path.is_file():
        return None, None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return (_largest(*(r["max_abs_diff"] for r in rows)),
            _largest(*(r["tolerance_ratio"] for r in rows)))


JVM_DIFF_RE = re.compile(r"max \|got-want\| (\S+) over")


def jvm_max_diff(junit: Path) -> float | None:
    """The largest "max |got-want| X" the JVM program reported in its JUnit cases."""
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for out in case.iter("system-out"):
            m = JVM_DIFF_RE.search(out.text or "")
            if m:
                try:
                    found.append(float(m.group(1)))
                except ValueError:
                    pass
    return _largest(*found)


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


def fixtures_key() -> str:
    """What the smoke model and its reference outputs depend on (without importing mxnet)."""
    import importlib.metadata
    from .. import smoke_model
    return content_hash(inspect.getsource(smoke_model),
                        importlib.metadata.version("mxnet"))[:16]


def model_fixtures(ctx) -> Path:
    """The exported model + host reference outputs, cached by the generator's content."""
    with ctx.locks("smoke-fixtures"):   # cells run in threads with --jobs: one exports
        return _model_fixtures(ctx.opts)


def _model_fixtures(opts) -> Path:
    import mxnet  # noqa: F401  (fail here, clearly, if the host client is missing)
    key = fixtures_key()
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


def gpu_present() -> bool:
    """A GPU the smoke container can use: the host's NVIDIA driver answers (asked once per
    run: it is in the run context)."""
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def expectations(cell: Cell, payload: Payload, missing: dict[str, str] | None = None,
                 gpu: bool = False, client_version: str | None = None) -> dict:
    """What the suite must find, from the matrix. `missing`: soname -> package (or driver)
    that could not be installed here; the native library then cannot load."""
    libdir = f"/usr/lib/{cell.multiarch}"
    missing = missing or {}
    return {
        "gpu_variant": cell.cuda is not None, "gpu": gpu,
        "missing_sonames": missing,
        "native_loadable": not missing,
        "cell": cell.id, "package": cell.package.name, "version": cell.deb_version,
        "client_version": client_version,
        "variant": cell.variant, "cuda": cell.cuda, "features": dict(cell.features),
        "library_path": f"{libdir}/libmxnet.so",
        "library_sha256": payload.files["libmxnet.so"],
        "bundled": {b: f"{libdir}/{PRIVATE_DIR}/{b}" for b in payload.bundled},
        "rtol": cell.smoke_tolerance.rtol, "atol": cell.smoke_tolerance.atol,
        "arch": cell.arch.name, "machine": cell.arch.machine,
    }


def install(box, cell: Cell, gpu: bool, package: str | None = None) -> dict[str, str]:
    """apt-get install a package of the cell (default: the one with libmxnet.so); for a
    GPU cell on a host without NVIDIA's repository, install what is installable and return
    the host sonames left missing (by package). The driver's libcuda.so.1 is there only
    when a GPU is (docker --gpus injects it)."""
    package = package or cell.package.name
    pin = f"{package}={cell.deb_version}"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    host = dict(cell.runtime_packages)
    if not host:
        try:
            box.run(["apt-get", "install", "-y", "--no-install-recommends", pin], env=env)
        except CommandFailed as exc:
            raise MxbuildError(f"installing {pin} from the repository failed: {exc}\n"
                               f"{exc.tail[-1500:]}", "")
        return {}
    depends = box.run(["sh", "-c", f"apt-cache show '{pin}' | sed -n 's/^Depends: //p' | "
                       "head -1"]).output.strip()
    installable, missing_pkgs, siblings = [], set(), []
    missing: dict[str, str] = {}
    for entry in filter(None, (d.strip() for d in depends.split(","))):
        # `NVIDIA's name | the distro's name`: the first one this host can install
        names = [alternative.split()[0] for alternative in entry.split("|")]
        if names[0] in cell.package_names and names[0] != package:
            siblings.append(names[0])
            continue
        chosen = next((n for n in names if _has_candidate(box, n)), None)
        if chosen:
            installable.append(chosen)
        else:
            missing_pkgs.add(names[0])
    if installable:
        box.run(["apt-get", "install", "-y", "--no-install-recommends", *installable], env=env)
    for sibling in siblings:
        # a package of the same cell (libmxnet for libmxnet-scala): installed the same way,
        # after apt's part (apt refuses to work once a package sits with unmet Depends)
        missing |= install(box, cell, gpu, sibling)
    box.run(["sh", "-c", f"cd /tmp && apt-get download '{pin}' && "
             f"dpkg --force-depends -i /tmp/{package}_*.deb"], env=env)
    return missing | {so: pkg for so, pkg in host.items()
                      if pkg in missing_pkgs or (pkg == "driver" and not gpu)}


def _has_candidate(box, package: str) -> bool:
    policy = box.run(["apt-cache", "policy", package], check=False).output
    return "Candidate:" in policy and "Candidate: (none)" not in policy


def apt_source_line(url: str, cell: Cell, keyring_path: str = KEYRING_PATH,
                    staging: bool = False) -> str:
    return f"deb [signed-by={keyring_path}] {url} {cell.suite(staging)} {cell.component}"


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


@dataclass(frozen=True)
class SmokeRun:
    """What each suite of a cell's smoke stage is given besides its cell, image and client:
    the cell's payload, the repository its container installs from (`url`, trusted with
    `keyring`), the stage log and the host directory of the suite's results."""
    payload: Payload
    url: str
    keyring: bytes
    logf: IO[str]
    work: Path


def run(ctx, cell: Cell, client_image: ImageRef, client_version: str,
        given: SmokeRun) -> SmokeCounts:
    """The Python suite: install libmxnet with apt and mxnet-thin==client_version with pip,
    both from the repository at `given.url` (trusted with `given.keyring`, what hosts
    install), then run tests/smoke in the container."""
    payload, url, keyring, logf, work = (given.payload, given.url, given.keyring, given.logf,
                                         given.work)
    fixtures = model_fixtures(ctx)
    if work.exists():
        shutil.rmtree(work)
    (work / "fixtures").mkdir(parents=True)
    for f in fixtures.iterdir():
        shutil.copy(f, work / "fixtures" / f.name)
    shutil.copytree(ctx.data.smoke_tests, work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    gpu = ctx.gpu
    with Container(ctx.docker, client_image.ref, label=f"smoke-{cell.id}", network="host",
                   log_file=logf, gpus=gpu and cell.cuda is not None) as box:
        missing = install_client(box, ctx, cell, url, keyring, client_version, work)
        expect = expectations(cell, payload, missing, gpu, client_version)
        (work / "expect.json").write_text(json.dumps(expect, indent=2))
        box.copy_into(work, "/srv", arcname="smoke")
        suites = [f"{SMOKE_DIR}/tests/test_smoke.py"]
        if cell.cuda is not None:
            suites.append(f"{SMOKE_DIR}/tests/test_gpu.py")
        result = box.run(["python", "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                          *suites, f"--junitxml={SMOKE_DIR}/junit.xml"],
                         env={"MXBUILD_EXPECT": f"{SMOKE_DIR}/expect.json",
                              "MXBUILD_FIXTURES": f"{SMOKE_DIR}/fixtures",
                              "MXBUILD_DIFFS": f"{SMOKE_DIR}/diffs.jsonl"},
                         workdir=SMOKE_DIR, check=False)
        try:
            box.copy_out(f"{SMOKE_DIR}/junit.xml", work)
        except NotFound:    # pytest writes it at the end: the interpreter died first
            raise MxbuildError(f"the Python smoke suite's pytest exited with "
                               f"{result.exit_code} before writing its JUnit file (a crash "
                               f"in the library?):\n{result.output[-2500:]}",
                               "read the stage log: the last test started is the one that "
                               "crashed, faulthandler's dump follows it")
        if box.run(["test", "-f", f"{SMOKE_DIR}/diffs.jsonl"], check=False).exit_code == 0:
            box.copy_out(f"{SMOKE_DIR}/diffs.jsonl", work)
    max_abs, ratio = python_diffs(work / "diffs.jsonl")
    if max_abs is not None:
        logf.write(f"Python suite: largest |got - want| {max_abs:.3g} (tolerance ratio "
                   f"{ratio:.3g}; rtol {expect['rtol']}, atol {expect['atol']})\n")
    counts = finished(work / "junit.xml", result.exit_code, missing,
                      gpu if cell.cuda else None, "Python")
    return dataclasses.replace(counts, max_abs_diff=max_abs, tolerance_ratio=ratio)


# params: what a host does needs each: box, repository (url, keyring), client version, work
def install_client(box, ctx, cell: Cell, url: str, keyring: bytes, client_version: str,
                   work: Path) -> dict[str, str]:
    """What a host does, in `box` (a client image's container): the repository at `url`
    with signed-by (`keyring`), apt-get install of the cell's libmxnet package, pip install
    of mxnet-thin==client_version from the repository's index. Returns the sonames left
    missing (install())."""
    work.mkdir(parents=True, exist_ok=True)
    (work / KEYRING_NAME).write_bytes(keyring)
    box.copy_into(work / KEYRING_NAME, "/usr/share/keyrings")
    box.write_file("/etc/apt/sources.list.d/mxbuild.list", apt_source_line(
        url, cell, staging=ctx.opts.staging) + "\n")
    apt_update(box)
    missing = install(box, cell, ctx.gpu)
    try:
        box.run(["pip", *pip_install_args(f"{url}/{INDEX_PREFIX}/", client_version)])
    except CommandFailed as exc:
        raise MxbuildError(f"installing {THIN_NAME}=={client_version} from the "
                           f"repository's index failed: {exc}\n{exc.tail[-1500:]}",
                           "publish it: invoke client --to <the repository>")
    return missing


def finished(junit: Path, exit_code: int, missing: dict, gpu: bool | None,
             suite: str) -> SmokeCounts:
    """A suite's counts from its JUnit file; MxbuildError if anything failed."""
    counts = junit_counts(junit, missing, gpu)
    if exit_code != 0 or counts.failed or counts.errors or counts.tests == 0:
        raise MxbuildError(f"{suite} smoke suite: {counts.failed} failed, {counts.errors} "
                           f"errors of {counts.tests}", "read the stage log for the failing "
                           "tests")
    return counts


def gpu_checks_skipped_junit(suite: str, checks, not_found: set[str],
                             missing: set[str]) -> str:
    """A suite's JUnit when its library cannot load here (a GPU cell without a GPU): the
    dependency closure is checked (exactly the host's missing sonames are missing), every
    other check is skipped, never passed."""
    root = ET.Element("testsuite", name=suite)
    case = ET.SubElement(root, "testcase", classname=suite, name="dependency_closure")
    if not_found != missing:
        ET.SubElement(case, "failure", message=f"not found {sorted(not_found)}, expected "
                      f"{sorted(missing)}")
    for check in checks:
        skipped = ET.SubElement(ET.SubElement(root, "testcase", classname=suite, name=check),
                                "skipped", message="no GPU: libmxnet cannot load here")
        skipped.text = "skipped: no GPU"
    cases = list(root.iter("testcase"))
    root.set("tests", str(len(cases)))
    root.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    root.set("errors", "0")
    root.set("skipped", str(len(checks)))
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def merge_junit(parts: list[Path], out: Path) -> Path:
    """One JUnit file holding every suite's cases (report.py reads one per cell)."""
    root = ET.Element("testsuites")
    for part in parts:
        tree = ET.parse(part).getroot()
        root.extend([tree] if tree.tag == "testsuite" else list(tree))
    out.write_text(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    return out


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


def junit_counts(path: Path, missing: dict | None = None, gpu: bool | None = None) -> SmokeCounts:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = lambda attr: sum(int(s.get(attr, 0)) for s in suites)  # noqa: E731
    tests, failed, errors, skipped = (total("tests"), total("failures"), total("errors"),
                                      total("skipped"))
    gpu_checks = None if gpu is None else ("run" if gpu else "skipped: no GPU")
    return SmokeCounts(tests, tests - failed - errors - skipped, failed, errors, skipped,
                       gpu_checks, sorted(set((missing or {}).values())))


# ------------------------------------------------------------------ the suites

@dataclass(frozen=True)
class Suite:
    """A thin-client kind's smoke suite (the plug-in table names its module: SMOKE_SUITE)."""
    image: "Callable[..., ImageRef]"     # (ctx, cell, runtime, logf) -> the image it runs in
    run: "Callable[..., SmokeCounts]"    # (ctx, cell, image, client, SmokeRun) -> counts;
                                         # raises on a failure


def _python_image(ctx, cell: Cell, runtime: ImageRef, logf: IO[str]) -> ImageRef:
    from . import client_image
    wheel = cached_wheel(cell.official_wheel, ctx.opts.cache_dir / "downloads",
                         ctx.opts.extra_ca_bundle)
    return client_image.ensure_client_image(ctx, cell, runtime, wheel, logf)


def _python_run(ctx, cell, image, client, given: SmokeRun) -> SmokeCounts:
    return run(ctx, cell, image, client.version, given)


# the "python" kind's suite: tests/smoke with mxnet-thin, in the client image
SMOKE_SUITE = Suite(_python_image, _python_run)
