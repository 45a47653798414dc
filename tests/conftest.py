import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.require import need_tools, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent

# pytest caches its assertion-rewritten test modules in __pycache__, and the subprocesses the
# tests start (invoke, pytest, python) read mxbuild's compiled modules from there: with
# PYTHONDONTWRITEBYTECODE set, each worker rewrote every test module again (~2 s) and each
# child compiled mxbuild again. __pycache__ is .gitignored.
sys.dont_write_bytecode = False


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output")


# ------------------------------------------------------------------ leak check
# Each run gets its own id: every process it starts inherits it in the environment and
# every container/volume mxbuild creates is labelled with it (tests/leaks.py), so the
# session-end check finds exactly what this run left, on a machine other runs share.
# Under pytest-xdist (`-n 2`, the unit tier) the workers keep the controller's id: the
# controller checks processes, containers, volumes and the run's temp dir once every worker
# has exited; each worker checks what only it can see (its own sockets and child processes)
# and sends that.

def _worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    from mxbuild.containers import RUN_ID_ENV
    inherited = os.environ.get(RUN_ID_ENV)
    if _worker(config) and inherited:
        config.stash[_RUN] = inherited
        return
    config.stash[_RUN] = f"pytest-{uuid.uuid4().hex[:16]}"
    # what the run changes in this process, undone at its end (a run inside a test's run)
    config.stash[_UNDO] = changes = pytest.MonkeyPatch()
    changes.setenv(RUN_ID_ENV, config.stash[_RUN])
    config.stash[_TEMP] = _own_temp_dir(changes)


def _own_temp_dir(changes: pytest.MonkeyPatch) -> Path:
    """A temp dir of the run's own, made TMPDIR for the run and every child it starts (the
    workers too), so the leak check finds what anyone left in "the temp dir". pytest's base
    temps stay in the system temp dir, where the failed runs' are kept for reading."""
    system = tempfile.gettempdir()
    # short: gpg-agent's socket in a GnuPG home under it must fit in 108 bytes
    run_tmp = Path(tempfile.mkdtemp(prefix="mxb-run-", dir=system))
    if "PYTEST_DEBUG_TEMPROOT" not in os.environ:
        changes.setenv("PYTEST_DEBUG_TEMPROOT", system)
    changes.setenv("TMPDIR", str(run_tmp))
    changes.setattr(tempfile, "tempdir", str(run_tmp))
    return run_tmp


@pytest.hookimpl(optionalhook=True)     # an xdist hook: without xdist never called
def pytest_testnodedown(node, error):
    """(controller) what a worker found it left; reported with the controller's own check."""
    found = getattr(node, "workeroutput", {}).get(_WORKER_LEAKS, [])
    node.config.stash.setdefault(_FROM_WORKERS, []).extend(
        f"{line} (worker {node.gateway.id})" for line in found)


@pytest.hookimpl(trylast=True)          # after xdist has stopped its workers
def pytest_sessionfinish(session, exitstatus):
    from tests import leaks
    config = session.config
    run_id = config.stash[_RUN]
    if _worker(config):
        found = leaks.check_worker()
        leaks.clean(found)
        config.workeroutput[_WORKER_LEAKS] = [str(leak) for leak in found]
        return
    factory = getattr(config, "_tmp_path_factory", None)
    basetemp = factory.getbasetemp() if factory is not None else None
    found = leaks.check(run_id, basetemp, config.stash[_TEMP])
    leaks.clean(found)
    reported = [str(leak) for leak in found] + config.stash.get(_FROM_WORKERS, [])
    config.stash[_LEAKS] = reported
    if reported:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    found = config.stash.get(_LEAKS, None)
    if found is None:
        return
    run_id = config.stash[_RUN]
    if not found:
        terminalreporter.write_line(f"leak check ({run_id}): nothing left (no process, "
                                    "container, volume, listening socket or temp file of "
                                    "this run)")
        return
    terminalreporter.section("leak check", red=True)
    terminalreporter.write_line(f"this run ({run_id}) left {len(found)} thing(s) behind "
                                "(stopped/removed now; the run fails):", red=True)
    for leak in found:
        terminalreporter.write_line(f"  {leak}")


def pytest_unconfigure(config):
    if _UNDO in config.stash:
        # the run's temp dir goes (emptied by the leak check, unless the session never ended)
        shutil.rmtree(config.stash[_TEMP], ignore_errors=True)
        config.stash[_UNDO].undo()


_RUN = pytest.StashKey[str]()
_LEAKS = pytest.StashKey[list]()
_TEMP = pytest.StashKey[Path]()
_UNDO = pytest.StashKey[pytest.MonkeyPatch]()
_FROM_WORKERS = pytest.StashKey[list]()
_WORKER_LEAKS = "mxbuild_leaks"


@pytest.fixture
def golden(request):
    """golden(name, text): compare with tests/unit/golden/<name>, or rewrite it."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str):
        path = ROOT / "tests/unit/golden" / name
        if update or not path.exists():
            if not update:
                pytest.fail(f"golden file {path} is missing: run pytest --update-golden")
            path.write_text(text)
        assert text == path.read_text(), f"{name} differs from its golden file " \
                                         "(if intended: pytest --update-golden)"
    return check


@functools.cache
def _matrix_doc() -> dict:
    from mxbuild.matrix.schema import SAFE_LOADER
    return yaml.load((ROOT / "matrix.yaml").read_text(), Loader=SAFE_LOADER)


def dump_yaml(doc) -> str:
    """yaml.safe_dump's text, through libyaml when PyYAML has it."""
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))


@pytest.fixture
def matrix_doc():
    """A fresh copy of the real matrix.yaml as a Python structure."""
    return copy.deepcopy(_matrix_doc())


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliRun:
    """`invoke ARGS` through invoke's own program and mxbuild's entry point, in this process:
    the exit code is the one `sys.exit` would give the process. A CLI process costs a second
    to start; tests that need a real process (signals, a kill) start one. The environment,
    signal handlers and the mxbuild logger are restored afterwards."""
    import contextlib
    import io
    import logging
    import signal
    from invoke.main import program
    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("mxbuild")
    saved_log = (list(logger.handlers), logger.level, logger.propagate)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_env = dict(os.environ)
    code = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                program.run(["invoke", "--search-root", str(ROOT), *args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None
                                                                   else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        logger.handlers[:] = saved_log[0]
        logger.setLevel(saved_log[1])
        logger.propagate = saved_log[2]
    return CliRun(code, out.getvalue(), err.getvalue())


def invoke_help(task: str) -> str:
    """`invoke --help <task>` as the CLI prints it, from invoke's own program run in this
    process (a CLI start costs a second); '' if there is no such task."""
    import contextlib
    import io
    from invoke.main import program
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        program.run(["invoke", "--search-root", str(ROOT), "--help", task], exit=False)
    usage = f"Usage: inv[oke] [--core-opts] {task} "    # then [--options], if it has any
    return out.getvalue() if out.getvalue().startswith(usage) else ""


@functools.cache
def task_flags(task: str) -> set[str]:
    """The flags `invoke --help TASK` lists (the Jenkinsfile's and the docs' invoke lines
    are checked against them)."""
    text = invoke_help(task)
    assert text, f"`invoke {task}` is not a task"
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    for name in re.findall(r"--\[no-\]([a-z][a-z0-9-]*)", text):    # a flag on by default
        flags |= {f"--{name}", f"--no-{name}"}
    return flags


def make_deb(tmp: Path, name: str, version: str, payload: bytes = b"x", depends: str = "",
             arch: str = "amd64", files: dict[str, bytes] | None = None,
             section: str = "") -> Path:
    """A tiny real .deb built with the host's dpkg-deb (for repository tests); `files`:
    more files it ships (path -> bytes)."""
    root = tmp / f"{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "payload").write_bytes(payload)
    for path, data in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
               f"Maintainer: mxbuild tests <tests@example.org>\n"
               + (f"Section: {section}\n" if section else "")
               + (f"Depends: {depends}\n" if depends else "")
               + f"Description: test package {name}\n a package made by the tests\n")
    (root / "DEBIAN/control").write_text(control)
    out = tmp / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return out


class Stopped(Exception):
    """Raised by a WriteStop hook: the code under test stopped at a chosen write."""


class WriteStop:
    """A write hook (publish's after_write, the mirror's hook) that stops the code under test
    at the `at`-th write or at the first write `when(written)` holds for, as a killed
    process would stop there; `writes` lists what was written up to then."""

    def __init__(self, at: int | None = None, when=None):
        self.at, self.when, self.writes = at, when, []

    def __call__(self, written: str) -> None:
        self.writes.append(written)
        if len(self.writes) == self.at or (self.when is not None and self.when(written)):
            raise Stopped(written)


def stop_gnupg(*dirs: Path) -> None:
    """Stop the GnuPG daemons (gpg-agent…) of the homes a test made: each of `dirs` and
    every home below one of them, whoever started the daemon (a Signer, a gpg call)."""
    from mxbuild.repo.sign import stop_agent
    from tests.leaks import agent_homes
    roots = [Path(d).resolve() for d in dirs]
    for home in agent_homes():
        if any(home == r or home.is_relative_to(r) for r in roots):
            stop_agent(home)
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True)


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path, for GnuPG homes whose gpg-agent sockets
    live inside them (a socket path must fit in 108 bytes; tmp_path of a long test name
    does not always); their daemons are stopped and the directory removed afterwards."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="mxb-") as work:
        try:
            yield Path(work)
        finally:
            stop_gnupg(Path(work))


@pytest.fixture
def gnupg_stopped(tmp_path):
    """For a test that makes GnuPG homes under tmp_path: their agents stop afterwards."""
    yield tmp_path
    stop_gnupg(tmp_path)


def quick_key(home: Path, uid: str = "other <other@example.org>", expire: str = "1d") -> Path:
    """A GnuPG home holding one Ed25519 signing key, made at once (an RSA 4096 key, what
    Signer makes, costs its agent seconds). Put `home` under short_tmp when an agent will
    run in it: its socket path must fit in 108 bytes."""
    home.mkdir(parents=True, mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-gen-key", uid, "ed25519", "sign", expire],
                   check=True, capture_output=True)
    stop_gnupg(home)
    return home


def copy_gnupg_home(src: Path, dest: Path) -> Path:
    """A copy of a GnuPG home (keys and trust, not the agent's sockets or locks)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#lk*"))
    return dest


@pytest.fixture(scope="session")
def jenkins_simulator():
    """One Groovy JVM for the session's Jenkinsfile runs and parses (tests/jenkins_sim.py),
    stopped at the end."""
    from tests import jenkins_sim
    need_tools("groovy", hint="./setup.sh installs it")
    simulator = jenkins_sim.Simulator()
    yield simulator
    simulator.close()


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    """A GnuPG home with one repository signing key (Ed25519, made at once; Signer's own RSA
    4096 costs its agent seconds: test_repo_trust checks that one), made once per run:
    under pytest-xdist the workers share it through the run's base temp. A test that
    signs gets a copy (copy_gnupg_home)."""
    import fcntl
    from mxbuild.repo.sign import KEY_UID
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent          # the controller's: this run's, shared by its workers
    made = base / "signing-key"
    with open(base / "signing-key.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (made / "made").exists():
            shutil.rmtree(made, ignore_errors=True)
            quick_key(made / "gnupg", KEY_UID, expire="never")
            (made / "made").touch()
    return made / "gnupg"


@pytest.fixture(scope="session")
def gnupg_home(tmp_path_factory):
    """A throwaway signing key directory (the key is generated on first use)."""
    home = tmp_path_factory.mktemp("gnupg")
    yield home
    stop_gnupg(home)


def pytest_collection_modifyitems(config, items):
    # Tiers by folder: integration needs Docker, end-to-end runs a whole cell.
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.docker)
            item.add_marker(pytest.mark.slow)
        elif "/tests/e2e/" in path:
            item.add_marker(pytest.mark.docker)
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.e2e)
    # Longest first: a worker of pytest-xdist that starts a test of several seconds last
    # runs on alone after the other has finished (the unit tier's tail was 5 s of it).
    items.sort(key=lambda item: item.get_closest_marker("seconds") is None)


@pytest.fixture(scope="session")
def docker_client():
    """The engine, or a skip; with MXBUILD_REQUIRE_DOCKER=1 (CI) a missing engine fails."""
    from mxbuild import engine
    from mxbuild.errors import DockerEngineError
    try:
        return engine.client()
    except DockerEngineError as exc:
        skip_or_fail("docker", exc.render())


@pytest.fixture(scope="session")
def test_opts(tmp_path_factory, gnupg_home):
    """Options for one test session: own out dir and signing key; the download cache, the
    engine's images and pins.lock (read only) are shared with normal runs."""
    from mxbuild import options
    out = tmp_path_factory.mktemp("out")
    return options.resolve(out_dir=str(out), gnupg_home=str(gnupg_home))


@pytest.fixture(scope="session")
def run_ctx(docker_client, test_opts, gnupg_home):
    """The run context stages get: this session's options, the engine, a signer."""
    from mxbuild.context import open_run
    from mxbuild.repo.sign import Signer
    return open_run(test_opts, docker=docker_client, signer=Signer(gnupg_home), gpu=False)


@pytest.fixture(scope="session")
def cpu_cell():
    from mxbuild import matrix
    return matrix.load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12")[0]


# The Cache-Control values the docs promise (docs/operators/s3.md), literally (tests never compare with the
# module's own constants).
CACHE_LONG = "public, max-age=31536000, immutable"
CACHE_SHORT = "public, max-age=60, must-revalidate"

# A distinctive secret: tests assert it never appears in any output.
S3_SECRET = "mxbuild-TEST-SECRET-do-not-print-7f3a"
S3_KEY_ID = "MXBUILDTESTKEYID0001"


# The test identity, in the environment of one test at a time (boto3 and the CLI children
# read it there); the environment is restored after each test.
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def aws_env(monkeypatch):
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real S3-compatible server (moto) on loopback, for the whole session."""
    from tests import s3servers
    try:
        server = s3servers.start_moto(tmp_path_factory.mktemp("moto"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server, aws_env):
    """moto's URL, with the test identity in the environment for this test."""
    return moto_server.endpoint


@pytest.fixture
def s3_bucket(moto_endpoint, request):
    """A fresh bucket readable anonymously through a bucket policy (no ACLs)."""
    import json
    import re
    import boto3
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + \
        f"-{os.getpid()}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{name}/*"}]}))
    return name


def ctx_with(ctx, opts):
    """A run context with other options (a test's own source dir, ccache volume…)."""
    import dataclasses
    return dataclasses.replace(ctx, opts=opts)


# ------------------------------------------------------------------ S3 servers
# A read-only identity on SeaweedFS (no PutObject): the permission tests and the
# private-bucket host use it.
READER_KEY_ID = "MXBUILDREADERKEY0001"
READER_SECRET = "mxbuild-READER-secret-do-not-print-4b1e"
S3_SERVERS = ("moto", "seaweedfs", "rgw")


def _tls_pair(workdir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for *.s3.mxbuild.test (apt-transport-s3 speaks only
    https, virtual-hosted style)."""
    from tests.s3servers import VHOST_DOMAIN
    ca_key, ca, key, csr, cert = (workdir / n for n in
                                  ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    ext = workdir / "san.ext"
    ext.write_text(f"subjectAltName=DNS:{VHOST_DOMAIN},DNS:*.{VHOST_DOMAIN}\n"
                   "extendedKeyUsage=serverAuth\n")

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=mxbuild test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", f"/CN={VHOST_DOMAIN}")
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory):
    """SeaweedFS (`weed mini`) on loopback for the whole session: admin and read-only
    identities, no anonymous identity (anonymous reads need a bucket policy), https too.
    Built by .ci/seaweedfs.sh if not cached. Without Go it skips, unless
    MXBUILD_REQUIRE_S3_SERVER=1 (set by .ci/run) makes that a failure."""
    from tests import s3servers
    work = tmp_path_factory.mktemp("seaweedfs")
    try:
        binary = s3servers.seaweedfs_binary()
    except RuntimeError as exc:
        skip_or_fail("s3_server", f"SeaweedFS is not available: {exc}")
    ca, cert, key = _tls_pair(work)
    identities = [
        s3servers.Identity("admin", S3_KEY_ID, S3_SECRET,
                           ("Admin", "Read", "Write", "List", "Tagging")),
        s3servers.Identity("reader", READER_KEY_ID, READER_SECRET, ("Read", "List"))]
    server = s3servers.start_seaweedfs(work, identities, binary, tls=(cert, key))
    try:                           # a server that started is stopped, whatever fails next
        server.extra.update(ca=ca, version=s3servers.seaweedfs_version(binary))
        import boto3
        s3servers.wait_writable(boto3.client(
            "s3", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET))
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ceph_cluster(docker_client, run_ctx, tmp_path_factory):
    """One container of Debian trixie's Ceph (reef): a monitor, an OSD on memstore, auth
    none, and RGW on RADOS (tests/ceph_rgw.py). Its image is made once by the tests'
    image step (cached by a content hash of its inputs)."""
    import time
    from tests import ceph_rgw
    log_path = tmp_path_factory.mktemp("ceph-rgw") / "image.log"
    start = time.monotonic()
    try:
        with open(log_path, "w") as logf:
            tag = ceph_rgw.ensure_image(run_ctx, logf)
    except Exception as exc:   # noqa: BLE001 (any failure to make it: named, then fail/skip)
        skip_or_fail("s3_server", f"the Ceph RGW image is not available (log: {log_path}): {exc}")
    image_seconds = time.monotonic() - start
    cluster = ceph_rgw.start_cluster(docker_client, tag, S3_KEY_ID, S3_SECRET)
    try:
        start = time.monotonic()
        endpoint = cluster.start("rados")
        print(f"\nCeph RGW: image {tag} in {image_seconds:.1f} s, RADOS gateway up in "
              f"{time.monotonic() - start:.1f} s ({ceph_rgw.ceph_version(docker_client, tag)})")
        yield cluster, endpoint, tag
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ceph_rgw(ceph_cluster):
    """Ceph RGW on RADOS (the production backend) on a loopback port, for the session."""
    from tests.ceph_rgw import ceph_version
    from tests.s3servers import Server
    cluster, endpoint, tag = ceph_cluster
    return Server("rgw", endpoint, None, Path("ceph-rgw"),
                  extra={"version": ceph_version(cluster.box.client, tag)})


@pytest.fixture(scope="session")
def rgw_dbstore(ceph_cluster):
    """Ceph RGW on its experimental dbstore backend, which ignores If-Match and
    If-None-Match on PUT: only for the tests of what mxbuild does with such a server."""
    from tests.s3servers import Server
    cluster, _, _ = ceph_cluster
    return Server("rgw-dbstore", cluster.start("dbstore"), None, Path("ceph-rgw-dbstore"))


@pytest.fixture
def seaweedfs(seaweedfs_server, aws_env):
    """The session's SeaweedFS, with the test identity in the environment for this test."""
    return seaweedfs_server


@pytest.fixture(params=S3_SERVERS)
def s3_server(request, aws_env):
    """Each protocol test runs against moto, SeaweedFS and Ceph RGW on RADOS (production
    servers)."""
    return request.getfixturevalue({"moto": "moto_server", "seaweedfs": "seaweedfs_server",
                                    "rgw": "ceph_rgw"}[request.param])


def make_bucket(endpoint: str, name: str, public: bool = True) -> str:
    import boto3
    from tests.s3servers import public_read_policy
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=name)
    if public:
        s3.put_bucket_policy(Bucket=name, Policy=public_read_policy(name))
    return name


@pytest.fixture
def server_bucket(s3_server, request):
    """A fresh bucket on s3_server, readable anonymously through a bucket policy."""
    import re
    name = re.sub(r"[^a-z0-9-]", "-", request.node.originalname.lower())[:40].strip("-") + \
        f"-{os.getpid()}-{s3_server.name[:4]}"
    return make_bucket(s3_server.endpoint, name)
