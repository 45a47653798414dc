"""The release tasks the Jenkinsfile calls, as invoke runs them, on SeaweedFS (a production
S3 server on loopback): `publish --staging` and without, `repo.promote`, `repo.verify`,
`repo.rotate-key` (overlap, then --retire), read by a real apt-get over http."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from mxbuild import matrix
from mxbuild.repo.sign import KEYRING_NAME, keyring_keys

from ..conftest import ROOT, S3_KEY_ID, S3_SECRET, make_bucket, make_deb
from .conftest import apt_box, point_apt

CELL = "1.9.1-cpu-debian12"


def invoke(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture
def release(seaweedfs, tmp_path, request):
    """A bucket on SeaweedFS, an output directory holding what `invoke build --publish
    none` leaves for the cell (a small real .deb under the cell's package name and
    version), its own signing key, and the environment the tasks run with."""
    cell = matrix.load(ROOT / "matrix.yaml").select(cell=CELL)[0]
    bucket = make_bucket(seaweedfs.endpoint, f"release-{request.node.name[5:25].replace('_', '-')}"
                         f"-{os.getpid()}")
    debs = tmp_path / "out/debs" / CELL
    debs.mkdir(parents=True)
    make_deb(debs, "libmxnet", cell.deb_version, b"release rehearsal")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "MXBUILD_OUT_DIR": str(tmp_path / "out"), "MXBUILD_GNUPGHOME": str(home),
           "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "MXBUILD_AUDIT_WHO": "release-test"}
    repo = [f"s3://{bucket}/apt", "--endpoint-url", seaweedfs.endpoint]
    url = f"{seaweedfs.endpoint}/{bucket}/apt"
    return cell, env, repo, url


def _listing(repo, env, keyring=None):
    got = invoke("repo.list", "--repo", *repo, "--json",
                 *(["--keyring", str(keyring)] if keyring else []), env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    return json.loads(got.stdout)


def test_publish_to_staging_then_stable_and_apt_installs_over_http(
        release, docker_client, cell_images, tmp_path):
    cell, env, repo, url = release
    staged = invoke("publish", "--cell", CELL, "--to", repo[0], *repo[1:], "--staging", env=env)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert _listing(repo, env) == {"bookworm-staging": {"cpu": [["libmxnet", cell.deb_version]]}}
    # the thin Python client of the cell's version is on the repository's PEP 503 index
    index = urllib.request.urlopen(f"{url}/simple/mxnet-thin/", timeout=30).read().decode()
    assert f"mxnet_thin-{cell.mxnet}" in index
    inrelease = urllib.request.urlopen(f"{url}/dists/bookworm-staging/InRelease").read()
    again = invoke("publish", "--cell", CELL, "--to", repo[0], *repo[1:], "--staging", env=env)
    assert again.returncode == 0 and "bookworm-staging: nothing new" in again.stderr
    assert urllib.request.urlopen(f"{url}/dists/bookworm-staging/InRelease").read() == inrelease
    stable = invoke("publish", "--cell", CELL, "--to", repo[0], *repo[1:], env=env)
    assert stable.returncode == 0, stable.stdout + stable.stderr
    assert _listing(repo, env) == {"bookworm": {"cpu": [["libmxnet", cell.deb_version]]},
                                   "bookworm-staging": {"cpu": [["libmxnet", cell.deb_version]]}}
    verified = invoke("repo.verify", "--repo", *repo, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    keyring = urllib.request.urlopen(f"{url}/{KEYRING_NAME}", timeout=30).read()
    with apt_box(docker_client, cell_images[2].ref, keyring, tmp_path) as box:
        point_apt(box, url)
        box.run(["apt-get", "update", "--error-on=any"])
        box.run(["apt-get", "install", "-y", "libmxnet"])
        assert box.run(["dpkg-query", "-W", "-f", "${Version}", "libmxnet"]).output == \
            cell.deb_version


def test_promote_then_rotate_and_retire_the_signing_key_on_s3(release, tmp_path):
    cell, env, repo, url = release
    staged = invoke("publish", "--cell", CELL, "--to", repo[0], *repo[1:], "--staging", env=env)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    promoted = invoke("repo.promote", "--cell", CELL, "--repo", *repo, env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted libmxnet" in promoted.stderr
    assert _listing(repo, env)["bookworm"] == {"cpu": [["libmxnet", cell.deb_version]]}
    again = invoke("repo.promote", "--cell", CELL, "--repo", *repo, env=env)
    assert again.returncode == 0 and "already there" in again.stderr
    old_ring = tmp_path / "old.gpg"
    old_ring.write_bytes(urllib.request.urlopen(f"{url}/{KEYRING_NAME}", timeout=30).read())
    (old,) = [k.fingerprint for k in keyring_keys(old_ring.read_bytes())]

    rotated = invoke("repo.rotate-key", "--repo", *repo, env=env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new_ring = tmp_path / "new.gpg"
    new_ring.write_bytes(urllib.request.urlopen(f"{url}/{KEYRING_NAME}", timeout=30).read())
    fprs = [k.fingerprint for k in keyring_keys(new_ring.read_bytes())]
    assert old in fprs and len(fprs) == 2
    (new,) = set(fprs) - {old}
    # the overlap: both suites verify with the old keyring and with the new one
    for ring in (old_ring, new_ring):
        ok = invoke("repo.verify", "--repo", *repo, "--keyring", str(ring), env=env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert set(_listing(repo, env, ring)) == {"bookworm", "bookworm-staging"}

    retired = invoke("repo.rotate-key", "--repo", *repo, "--retire", old, env=env)
    assert retired.returncode == 0, retired.stdout + retired.stderr
    final = urllib.request.urlopen(f"{url}/{KEYRING_NAME}", timeout=30).read()
    assert [k.fingerprint for k in keyring_keys(final)] == [new]
    refused = invoke("repo.verify", "--repo", *repo, "--keyring", str(old_ring), env=env)
    assert refused.returncode != 0
    ok = invoke("repo.verify", "--repo", *repo, "--keyring", str(new_ring), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the audit log of the stable suite names every step
    log = _audit_actions(repo, env)
    assert {"promote", "rotate-key", "retire-key"} <= set(log)
    # retiring the only key left is refused and changes nothing
    only = invoke("repo.rotate-key", "--repo", *repo, "--retire", new, env=env)
    assert only.returncode != 0
    assert urllib.request.urlopen(f"{url}/{KEYRING_NAME}", timeout=30).read() == final


def _audit_actions(repo, env) -> list[str]:
    import boto3
    bucket, prefix = repo[0][len("s3://"):].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=repo[2], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/log/bookworm/") for o in page.get("Contents", [])
        if o["Key"].endswith(".json")]          # not the .committed markers
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())["action"]
            for k in keys]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
