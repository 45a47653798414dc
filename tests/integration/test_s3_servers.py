"""What the publish protocol needs from an S3 server, checked on moto, SeaweedFS and Ceph RGW
(production object stores): conditional writes refused when stale and accepted when
current (the probe, and what mxbuild does with a server that fails it), permissions
enforced with a clear error, and a private bucket read by Debian's apt-transport-s3."""
import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import boto3
import pytest

from mxbuild.errors import RepoError
from mxbuild.repo import ops, private, probe
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.s3 import S3Storage, S3Target
from mxbuild.repo.sign import KEYRING_NAME, Signer
from mxbuild.smoke import KEYRING_PATH

from ..conftest import (READER_KEY_ID, READER_SECRET, ROOT, S3_KEY_ID, S3_SECRET, make_bucket,
                        make_deb)
from .conftest import apt_box
from .loopback import LoopbackServer
from .s3_publisher import attempts_of, published_of, publish_concurrently


def storage_for(endpoint, bucket, prefix="apt", client=None, **kw) -> S3Storage:
    return S3Storage(S3Target.parse(f"s3://{bucket}/{prefix}", endpoint_url=endpoint,
                                    path_style=True), client=client, **kw)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    with Signer(tmp_path_factory.mktemp("gnupg")) as s:
        s.public_keyring()
        yield s


# What each server's probe must find: the If-Match form it honours, and the deviations
# mxbuild works around (Ceph RGW reef refuses its own current ETag when quoted).
EXPECTED_VERDICTS = {"moto": ("quoted", 0), "seaweedfs": ("quoted", 0), "rgw": ("unquoted", 1)}


def test_the_probe_finds_how_each_server_honours_conditional_writes(s3_server, server_bucket):
    """A stale If-Match and If-None-Match: * on an existing key must get 412, a current
    If-Match must be accepted; every deviation is a named problem, never an exception
    (Ceph RGW on RADOS answers 412 to its own current ETag when it is quoted)."""
    import time
    start = time.perf_counter()
    verdict = probe.conditional_writes(storage_for(s3_server.endpoint, server_bucket))
    print(f"{s3_server.name}: probe in {time.perf_counter() - start:.3f} s: server "
          f"{verdict.server!r}, If-Match {verdict.if_match}, accepted "
          f"{verdict.accepted_forms}, problems {list(verdict.problems) or 'none'}")
    form, handled = EXPECTED_VERDICTS[s3_server.name]
    assert verdict.safe, "\n".join(verdict.problems)
    assert verdict.if_match == form
    assert len(verdict.problems) == len(verdict.handled) == handled, verdict.problems
    if handled:
        (problem,) = verdict.problems
        assert "refuses its own current ETag" in problem and "accepts it unquoted" in problem
        assert s3_server.endpoint in problem


class Lenient(http.server.BaseHTTPRequestHandler):
    """An S3 stand-in that accepts every PUT whatever its preconditions (as `rclone serve
    s3` does)."""
    store: dict = {}

    def log_message(self, *a):
        pass

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Lenient.store[self.path] = body
        self.send_response(200)
        self.send_header("ETag", f'"{len(Lenient.store)}-{len(body)}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = Lenient.store.get(self.path, b"")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"x"')
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()


def test_the_probe_catches_a_server_that_ignores_preconditions(tmp_path, aws_env):
    """Against the lenient stand-in: named problems (never an exception), the endpoint in
    each, and the verdict unsafe."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lenient)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        verdict = probe.conditional_writes(storage_for(url, "lenient"))
    finally:
        server.shutdown()
        server.server_close()
    problems = verdict.problems
    assert not verdict.safe
    assert any("stale If-Match (quoted) was ACCEPTED" in p and url in p for p in problems), \
        problems
    assert any("If-None-Match: * on an existing key was ACCEPTED" in p for p in problems)


def test_publishing_to_rgw_dbstore_is_refused_before_anything_is_written(rgw_dbstore, signer,
                                                                        tmp_path, aws_env):
    """Ceph RGW on its dbstore backend ignores If-Match and If-None-Match: the probe runs
    before the first write, and the publish is refused with the server, what it accepted
    and the fix; the bucket stays empty (the probe's own object is deleted)."""
    bucket = make_bucket(rgw_dbstore.endpoint, f"dbstore-refused-{os.getpid()}", public=False)
    storage = storage_for(rgw_dbstore.endpoint, bucket)
    with pytest.raises(RepoError) as info:
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm",
                                         "cpu")])
    err = info.value
    print(err.render())
    assert rgw_dbstore.endpoint in err.message and "does not honour conditional writes" in \
        err.message
    assert "stale If-Match (quoted) was ACCEPTED" in err.message
    assert "If-None-Match: * on an existing key was ACCEPTED" in err.message
    assert "not RGW's dbstore backend" in err.hint
    admin = boto3.client("s3", endpoint_url=rgw_dbstore.endpoint)
    assert admin.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_verify_names_the_packages_a_server_that_ignores_preconditions_lost(
        rgw_dbstore, signer, tmp_path, aws_env):
    """The probe bypassed on purpose: 8 publishers × 5 packages on RGW dbstore. Publishers
    report success, packages they published are missing from the index, and repo.verify
    names each lost one with the commit that published it and when. (dbstore does not keep
    concurrent PUTs of one key apart either: a publisher may read a torn InRelease whose
    signature does not verify, and stops there, refusing to build on it.)"""
    bucket = make_bucket(rgw_dbstore.endpoint, f"dbstore-lost-{os.getpid()}", public=False)
    debs = [[make_deb(tmp_path / f"p{p}", f"pkg-{p}-{i}", "1.0-1") for i in range(5)]
            for p in range(8)]
    results = publish_concurrently(rgw_dbstore.endpoint, f"s3://{bucket}/apt", signer.home,
                                   debs, "--no-probe")
    torn = [err for code, _, err in results if code != 0]
    for err in torn:
        assert "InRelease signature does not verify" in err, err
    assert len(torn) < len(results)
    published = {name.split("_")[0] for name in published_of(results)}
    storage = storage_for(rgw_dbstore.endpoint, bucket, check_server=False)
    keyring = signer.public_keyring()
    listed = {p for _, _, p, _ in ops.list_repo(storage, keyring).rows()}
    missing = sorted(published - listed)
    print(f"rgw-dbstore: 8 publishers x 5 packages, {attempts_of(results)} attempts, "
          f"{len(published)} reported published, {len(listed)} in the index, "
          f"{len(missing)} lost, {len(torn)} publisher(s) stopped at a torn InRelease")
    assert missing, "no package was lost: the test proves nothing"
    notes = []
    problems = ops.verify(storage, keyring, notes)
    print("\n".join(problems[:3] + notes))
    lost = [p for p in problems if " was LOST from bookworm" in p]
    for name in missing:
        (line,) = [p for p in lost if f"cpu/{name}/1.0-1/amd64 was LOST" in p]
        assert "the commit of 20" in line and "publish by " in line and "/log/bookworm/" in line
    # and nothing else: a stopped publisher's last commit may be lost too, never a listed one
    named = {re.search(r"cpu/(pkg-\d-\d)/", p).group(1) for p in lost}
    assert len(named) == len(lost) and not named & listed, problems
    assert any("replaced by a commit that did not build on them" in n for n in notes), notes


def test_a_server_refusing_its_own_etag_is_named_not_blamed_on_contention(ceph_rgw, signer,
                                                                           tmp_path, aws_env):
    """A cached verdict that says the quoted form works where it does not (RGW reef): the
    commit is refused although nothing changed the key, and the error says so at once —
    not "too many concurrent publishers" after 50 tries — and drops the cached verdict, so
    the next run probes again and publishes."""
    bucket = make_bucket(ceph_rgw.endpoint, f"own-etag-{os.getpid()}")
    storage = storage_for(ceph_rgw.endpoint, bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path / "a", "libmxnet", "1.0-1"), "bookworm",
                                     "cpu")])
    cached = json.loads(storage.get(probe.VERDICT_KEY)[0])
    (verdict,) = cached["verdicts"].values()
    assert verdict["if_match"] == "unquoted"
    verdict.update(if_match="quoted", problems=[], handled=[])          # a wrong verdict
    storage.put(probe.VERDICT_KEY, json.dumps(cached).encode())
    wrong = storage_for(ceph_rgw.endpoint, bucket)
    second = make_deb(tmp_path / "b", "libmxnet", "2.0-1")
    with pytest.raises(RepoError) as info:
        publish(wrong, signer, [Upload(second, "bookworm", "cpu")])
    print(info.value.render())
    assert "refuses its own current ETag" in info.value.message
    assert "not contention" in info.value.message
    assert "concurrent publishers" not in info.value.render()
    assert storage.get(probe.VERDICT_KEY) is None                  # dropped: probe again
    again = storage_for(ceph_rgw.endpoint, bucket)
    result = publish(again, signer, [Upload(second, "bookworm", "cpu")])
    assert again.verdict.if_match == "unquoted" and result.attempts == 1
    assert ops.verify(again, signer.public_keyring()) == []


def test_publishing_without_write_permission_names_it_and_changes_nothing(seaweedfs, signer,
                                                                          tmp_path):
    """The read-only identity cannot PUT: a clear error naming s3:PutObject, exit code 7,
    the bucket untouched, and no credential in the output."""
    bucket = make_bucket(seaweedfs.endpoint, f"readonly-{os.getpid()}")
    storage = storage_for(seaweedfs.endpoint, bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    admin = boto3.client("s3", endpoint_url=seaweedfs.endpoint)

    def contents():
        return sorted((o["Key"], o["ETag"]) for o in
                      admin.list_objects_v2(Bucket=bucket).get("Contents", []))
    before = contents()
    reader = boto3.client("s3", endpoint_url=seaweedfs.endpoint,
                          aws_access_key_id=READER_KEY_ID, aws_secret_access_key=READER_SECRET)
    with pytest.raises(RepoError) as info:
        publish(storage_for(seaweedfs.endpoint, bucket, client=reader), signer,
                [Upload(make_deb(tmp_path / "b", "libmxnet", "2.0-1"), "bookworm", "cpu")])
    assert "was denied" in info.value.message and "s3:PutObject" in info.value.message
    assert f"arn:aws:s3:::{bucket}/apt/*" in info.value.hint
    assert contents() == before
    # the same through the CLI: exit 7, the message, no secret anywhere
    debs = tmp_path / "out"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": READER_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": READER_SECRET, "MXBUILD_GNUPGHOME": str(signer.home),
           "MXBUILD_OUT_DIR": str(debs)}
    proc = subprocess.run([sys.executable, "-m", "invoke", "repo.remove", "--repo",
                           f"s3://{bucket}/apt", "--endpoint-url", seaweedfs.endpoint,
                           "--path-style", "--suite", "bookworm", "--component", "cpu",
                           "--version", "1.0-1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 7, out
    assert "s3:PutObject" in out and "fix: grant s3:PutObject" in out, out
    for secret in (READER_SECRET, READER_KEY_ID, S3_SECRET, S3_KEY_ID):
        assert secret not in out
    assert contents() == before


# ------------------------------------------------------------------ private bucket

class Sentinel(LoopbackServer):
    """An http proxy on loopback that answers 404 to everything and remembers what it was
    asked: where apt-transport-s3's instance-metadata lookups (169.254.169.254) go, so no
    request ever leaves this machine, and the test sees that they happened."""

    def __init__(self):
        self.requests = []
        sentinel = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                sentinel.requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_GET = do_PUT = do_POST = do_HEAD = _any
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="session")
def apt_s3_image(docker_client, cell_images):
    """The debian12 runtime image plus Debian's apt-transport-s3 (from bookworm's
    archive), built once and tagged by the runtime image id. Never holds a credential."""
    from mxbuild.containers import Container
    runtime = cell_images[2]
    tag = f"mxbuild-test-apt-s3:{runtime.id.split(':')[-1][:16]}"
    try:
        return docker_client.images.get(tag).id, tag
    except Exception:    # noqa: BLE001 (docker.errors.ImageNotFound)
        pass
    with Container(docker_client, runtime.ref, label="apt-s3-image", network="host") as box:
        box.run(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                             "apt-get install -y -qq --no-install-recommends apt-transport-s3 "
                             "ca-certificates && rm -rf /var/lib/apt/lists/*"])
        repo, version = tag.split(":")
        image_id = box.commit(repo, version, [])
    return image_id, tag


def image_holds(docker_client, tag: str, needles: list[str]) -> list[str]:
    """Which needles occur anywhere in the image's layers (docker save, streamed)."""
    found, tail = set(), b""
    want = [n.encode() for n in needles]
    for chunk in docker_client.images.get(tag).save(named=False):
        block = tail + chunk
        found |= {n.decode() for n in want if n in block}
        tail = block[-64:]
    return sorted(found)


@contextlib.contextmanager
def private_host(docker_client, image, keyring, tmp_path, seaweedfs, bucket, auth_conf):
    with apt_box(docker_client, image, keyring, tmp_path) as box:
        host = seaweedfs.https_endpoint.split("//")[1].split(":")[0]
        box.run(["sh", "-c", f"echo '127.0.0.1 {bucket}.{host} {host}' >> /etc/hosts"])
        box.copy_into(seaweedfs.extra["ca"], "/usr/local/share/ca-certificates",
                      arcname="mxbuild-test-ca.crt")
        box.run(["update-ca-certificates"])
        box.write_file(private.AUTH_FILE, auth_conf, mode=0o600)
        yield box


def test_private_bucket_is_read_with_apt_transport_s3(docker_client, cell_images,
                                                      apt_s3_image, seaweedfs, signer,
                                                      tmp_path):
    bucket = make_bucket(seaweedfs.endpoint, f"private-{os.getpid()}", public=False)
    storage = storage_for(seaweedfs.endpoint, bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.9.1-1~deb12", b"p"),
                                     "bookworm", "cpu")])
    assert ops.verify(storage, signer.public_keyring()) == []
    with pytest.raises(urllib.error.HTTPError) as anonymous:        # the policy: no anon read
        urllib.request.urlopen(f"{storage.target.public_url()}/{KEYRING_NAME}", timeout=10)
    assert anonymous.value.code == 403

    target = S3Target.parse(f"s3://{bucket}/apt", endpoint_url=seaweedfs.https_endpoint)
    assert private.problems(target) == []
    line = private.source_line(target, "bookworm", "cpu", KEYRING_PATH)
    assert line == f"deb [signed-by={KEYRING_PATH}] s3://{bucket}/apt bookworm cpu"
    conf = private.auth_conf(target, "us-east-1", keys=True) \
        .replace("<access key id>", READER_KEY_ID) \
        .replace("<secret access key>", READER_SECRET)
    image_id, tag = apt_s3_image
    with Sentinel() as imds:
        proxy_env = {"http_proxy": imds.url, "HTTP_PROXY": imds.url}
        with private_host(docker_client, tag, signer.public_keyring(), tmp_path, seaweedfs,
                          bucket, conf) as box:
            box.write_file("/etc/apt/sources.list.d/mxbuild.list", line + "\n")
            update = box.run(["apt-get", "update", "--error-on=any"], env=proxy_env)
            box.run(["apt-get", "install", "-y", "libmxnet"], env=proxy_env)
            assert box.run(["dpkg-query", "-W", "-f", "${Version}", "libmxnet"]).output \
                == "1.9.1-1~deb12"
            logs = box.run(["sh", "-c", "cat /var/log/apt/*.log /var/log/dpkg.log "
                                        "2>/dev/null; true"]).output
            for secret in (READER_SECRET, READER_KEY_ID):
                assert secret not in update.output + logs
        assert imds.requests == []            # keys from the file: no instance-role lookup

        # the same host without keys (it would need an instance role): fails cleanly
        no_keys = private.auth_conf(target, "us-east-1", keys=False)
        with private_host(docker_client, tag, signer.public_keyring(), tmp_path, seaweedfs,
                          bucket, no_keys) as box:
            box.write_file("/etc/apt/sources.list.d/mxbuild.list", line + "\n")
            direct = box.run(["/usr/lib/apt/methods/s3"], env=proxy_env, check=False)
            assert direct.exit_code != 0 and "IAM role" in direct.output, direct.output
            assert any("169.254.169.254" in r for r in imds.requests), imds.requests
            update = box.run(["apt-get", "update", "--error-on=any"], env=proxy_env,
                             check=False)
            assert update.exit_code != 0, update.output
            assert "s3" in update.output and "libmxnet" not in update.output.lower() or \
                update.exit_code != 0
            install = box.run(["apt-get", "install", "-y", "libmxnet"], env=proxy_env,
                              check=False)
            assert install.exit_code != 0
            assert "Unable to locate package libmxnet" in install.output, install.output
            assert box.run(["dpkg-query", "-W", "libmxnet"], check=False).exit_code != 0
    assert all(r.startswith(("PUT http://169.254.169.254/", "GET http://169.254.169.254/"))
               for r in imds.requests), imds.requests
    # credentials never reached an image layer (they were written into throwaway containers)
    assert image_holds(docker_client, tag, [READER_SECRET, READER_KEY_ID, S3_SECRET]) == []


def test_doctor_prints_the_private_bucket_lines_without_credentials(tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "AWS_DEFAULT_REGION": "eu-west-1"}
    proc = subprocess.run([sys.executable, "-m", "invoke", "doctor", "--repo",
                           "s3://mxbuild-apt/stable", "--endpoint-url",
                           "https://s3.example.org:8443"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "sudo apt-get install apt-transport-s3" in out
    assert "[signed-by=/usr/share/keyrings/mxbuild-archive-keyring.gpg] s3://mxbuild-apt/stable " \
           "bookworm cpu" in out
    assert '"Region = eu-west-1"' in out and "\"Endpoint = 's3.example.org:8443'\"" in out
    assert "/etc/apt/s3auth.conf" in out
    assert S3_SECRET not in out and S3_KEY_ID not in out
