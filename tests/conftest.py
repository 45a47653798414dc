import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output")


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


@pytest.fixture
def matrix_doc():
    """A fresh copy of the real matrix.yaml as a Python structure."""
    return copy.deepcopy(yaml.safe_load((ROOT / "matrix.yaml").read_text()))


def make_deb(tmp: Path, name: str, version: str, payload: bytes = b"x", depends: str = "",
             arch: str = "amd64") -> Path:
    """A tiny real .deb built with the host's dpkg-deb (for repository tests)."""
    root = tmp / f"{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "payload").write_bytes(payload)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
               f"Maintainer: mxbuild tests <tests@example.org>\n"
               + (f"Depends: {depends}\n" if depends else "")
               + f"Description: test package {name}\n a package made by the tests\n")
    (root / "DEBIAN/control").write_text(control)
    out = tmp / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return out


@pytest.fixture(scope="session")
def gnupg_home(tmp_path_factory):
    """A throwaway signing key directory (the key is generated on first use)."""
    return tmp_path_factory.mktemp("gnupg")


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


@pytest.fixture(scope="session")
def docker_client():
    """The engine, or a skip; with MXBUILD_REQUIRE_DOCKER=1 (CI) a missing engine fails."""
    from mxbuild import engine
    from mxbuild.errors import DockerEngineError
    try:
        return engine.client()
    except DockerEngineError as exc:
        if os.environ.get("MXBUILD_REQUIRE_DOCKER"):
            pytest.fail(exc.render())
        pytest.skip(exc.message)


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


# A distinctive secret: tests assert it never appears in any output.
S3_SECRET = "mxbuild-TEST-SECRET-do-not-print-7f3a"
S3_KEY_ID = "MXBUILDTESTKEYID0001"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """A real S3-compatible server (moto) on loopback, for the whole session."""
    import sys
    import time
    import urllib.request
    os.environ.update({"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                       "AWS_DEFAULT_REGION": "us-east-1"})
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto_server did not start (log: {log.name})")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


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
def seaweedfs(tmp_path_factory, moto_endpoint):
    """SeaweedFS (`weed mini`) on loopback for the whole session: admin and read-only
    identities, no anonymous identity (anonymous reads need a bucket policy), https too.
    Built by .ci/seaweedfs.sh if not cached. Without Go it skips, unless
    MXBUILD_REQUIRE_S3_SERVER=1 (set by .ci/run) makes that a failure."""
    from tests import s3servers
    work = tmp_path_factory.mktemp("seaweedfs")
    try:
        binary = s3servers.seaweedfs_binary()
    except RuntimeError as exc:
        if os.environ.get("MXBUILD_REQUIRE_S3_SERVER"):
            pytest.fail(str(exc))
        pytest.skip(f"SeaweedFS is not available: {exc}")
    ca, cert, key = _tls_pair(work)
    identities = [
        s3servers.Identity("admin", S3_KEY_ID, S3_SECRET,
                           ("Admin", "Read", "Write", "List", "Tagging")),
        s3servers.Identity("reader", READER_KEY_ID, READER_SECRET, ("Read", "List"))]
    server = s3servers.start_seaweedfs(work, identities, binary, tls=(cert, key))
    server.extra.update(ca=ca, version=s3servers.seaweedfs_version(binary))
    import boto3
    s3servers.wait_writable(boto3.client("s3", endpoint_url=server.endpoint))
    yield server
    server.stop()


def _server_missing(what: str, exc: Exception):
    """A test server that cannot be had: a failure under CI (MXBUILD_REQUIRE_S3_SERVER=1,
    set by .ci/run), else a skip."""
    if os.environ.get("MXBUILD_REQUIRE_S3_SERVER"):
        pytest.fail(f"{what} is not available: {exc}")
    pytest.skip(f"{what} is not available: {exc}")


@pytest.fixture(scope="session")
def ceph_cluster(docker_client, run_ctx, tmp_path_factory, moto_endpoint):
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
        _server_missing(f"the Ceph RGW image (log: {log_path})", exc)
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


@pytest.fixture(params=S3_SERVERS)
def s3_server(request, moto_endpoint):
    """Each protocol test runs against moto, SeaweedFS and Ceph RGW on RADOS (production
    servers)."""
    if request.param == "moto":
        from tests.s3servers import Server
        return Server("moto", moto_endpoint, None, Path("moto.log"))
    return request.getfixturevalue({"seaweedfs": "seaweedfs", "rgw": "ceph_rgw"}[request.param])


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
