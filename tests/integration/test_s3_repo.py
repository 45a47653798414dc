"""The S3 backend of the publish protocol against real S3-compatible servers on loopback,
read by a real apt-get in a container. The protocol tests (apt e2e, 8 concurrent
publishers, a kill at every write, injected faults) run against moto and against SeaweedFS,
a production server (`s3_server`); the rest against moto."""
import os
import subprocess
import sys

import boto3
import pytest

from mxbuild.errors import ConfigError, PoolConflictError, RepoError
from mxbuild.fetch import sha256_file
from mxbuild.repo import ops
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.s3 import S3Storage, S3Target
from mxbuild.repo.sign import Signer

from ..conftest import CACHE_LONG, CACHE_SHORT, ROOT, S3_KEY_ID, S3_SECRET, make_deb
from .conftest import apt_box, point_apt
from .fault_proxy import FaultProxy
from .s3_publisher import attempts_of, publish_concurrently



def storage_for(endpoint, bucket, prefix="apt", **kw) -> S3Storage:
    return S3Storage(S3Target.parse(f"s3://{bucket}/{prefix}", endpoint_url=endpoint,
                                    path_style=True, **kw))


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    with Signer(tmp_path_factory.mktemp("gnupg")) as s:
        s.public_keyring()  # make the key once, before processes share the directory
        yield s


def visible(box, package: str) -> set[str]:
    out = box.run(["apt-cache", "madison", package], check=False).output
    return {line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def test_apt_installs_from_s3_with_signed_by_and_plus_in_version(
        docker_client, cell_images, s3_server, server_bucket, signer, tmp_path):
    storage = storage_for(s3_server.endpoint, server_bucket)
    deb = make_deb(tmp_path, "mxbuild-probe", "1.9.1+really1-1~deb12", b"plus")
    result = publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
    assert result.added == ["bookworm/cpu/mxbuild-probe_1.9.1+really1-1~deb12_amd64"]
    assert ops.verify(storage, signer.public_keyring()) == []
    with apt_box(docker_client, cell_images[2].ref, signer.public_keyring(), tmp_path) as box:
        point_apt(box, storage.target.public_url())
        box.run(["apt-get", "update", "--error-on=any"])
        box.run(["apt-get", "install", "-y", "mxbuild-probe"])
        assert box.run(["dpkg-query", "-W", "-f", "${Version}", "mxbuild-probe"]).output \
            == "1.9.1+really1-1~deb12"


def test_objects_have_content_type_cache_control_and_no_acl(moto_endpoint, s3_bucket, signer,
                                                           tmp_path):
    storage = storage_for(moto_endpoint, s3_bucket, sse="AES256")
    sent = []
    storage.client.meta.events.register("before-call.s3.*",
                                        lambda model, **kw: sent.append(model.name))
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    assert not any("Acl" in op for op in sent), sent
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)

    def head(key):
        return s3.head_object(Bucket=s3_bucket, Key=f"apt/{key}")
    deb = head("pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb")
    assert deb["ContentType"] == "application/vnd.debian.binary-package"
    assert deb["CacheControl"] == CACHE_LONG
    assert deb["ServerSideEncryption"] == "AES256"
    inrelease = head("dists/bookworm/InRelease")
    assert inrelease["CacheControl"] == CACHE_SHORT and inrelease["ContentType"].startswith("text/plain")
    assert head("dists/bookworm/Release.gpg")["ContentType"] == "application/pgp-signature"
    assert head("dists/bookworm/cpu/binary-amd64/Packages.xz")["CacheControl"] == CACHE_SHORT
    listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="apt/dists/bookworm/cpu/binary-amd64/by-hash/")
    for obj in listing["Contents"]:
        h = s3.head_object(Bucket=s3_bucket, Key=obj["Key"])
        assert h["CacheControl"] == CACHE_LONG
        assert h["ContentType"] in ("text/plain; charset=utf-8", "application/gzip",
                                    "application/x-xz")


def test_pool_is_immutable(moto_endpoint, s3_bucket, signer, tmp_path):
    storage = storage_for(moto_endpoint, s3_bucket)
    deb = make_deb(tmp_path / "a", "libmxnet", "1.0-1", b"A")
    publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
    puts = []
    storage.client.meta.events.register("before-parameter-build.s3.PutObject",
                                        lambda params, **kw: puts.append(params["Key"]))
    publish(storage, signer, [Upload(deb, "bookworm", "cpu")])     # same bytes: skipped
    assert puts == []                                               # nothing at all
    other = make_deb(tmp_path / "b", "libmxnet", "1.0-1", b"B")
    with pytest.raises(PoolConflictError, match="already published with other bytes"):
        publish(storage, signer, [Upload(other, "bookworm", "cpu")])
    got = storage.get("pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb")
    assert got[0] == deb.read_bytes()


def _put_count(storage, signer, tmp_path, n):
    debs = [make_deb(tmp_path / f"n{n}", f"pkg{i:04d}", "1.0-1") for i in range(n)]
    publish(storage, signer, [Upload(d, "bookworm", "cpu") for d in debs])
    puts = []
    storage.client.meta.events.register("before-parameter-build.s3.PutObject",
                                        lambda params, **kw: puts.append(params["Key"]))
    publish(storage, signer, [Upload(make_deb(tmp_path / f"n{n}", "zz-new", "1.0-1"),
                                     "bookworm", "cpu")])
    prefix = storage.target.prefix + "/"
    return sorted(k[len(prefix):] for k in puts)


def test_adding_one_package_costs_a_constant_number_of_uploads(moto_endpoint, s3_bucket,
                                                               signer, tmp_path):
    small = _put_count(storage_for(moto_endpoint, s3_bucket, "small"), signer, tmp_path, 5)
    large = _put_count(storage_for(moto_endpoint, s3_bucket, "large"), signer, tmp_path, 60)
    assert len(small) == len(large) == 21
    # the pool file, 3 Packages + 2 Contents × 2 by-hash copies, the audit record,
    # InRelease, its committed mark, 5 plain indexes, Release(.gpg)
    assert sum(k.startswith("pool/") for k in large) == 1
    assert sum(k.startswith("log/") for k in large) == 2
    assert sum("/by-hash/" in k for k in large) == 10


def test_concurrent_publishers_lose_nothing(docker_client, cell_images, s3_server,
                                            server_bucket, signer, tmp_path):
    endpoint, s3_bucket = s3_server.endpoint, server_bucket
    debs = [[make_deb(tmp_path / f"p{p}", f"pkg-{p}-{i}", "1.0-1") for i in range(5)]
            for p in range(8)]
    results = publish_concurrently(endpoint, f"s3://{s3_bucket}/apt", signer.home, debs)
    for code, _, err in results:
        assert code == 0, err
    attempts = attempts_of(results)
    print(f"{s3_server.name}: 8 publishers x 5 packages: {attempts} attempts for 40 commits "
          f"({attempts - 40} conflicts resolved)")
    # the barrier made all 8 first commits swap against the same state: one wins, the
    # other 7 must each lose at least once and merge again
    assert attempts >= 40 + 7
    storage = storage_for(endpoint, s3_bucket)
    listing = ops.list_repo(storage, signer.public_keyring())
    assert len(listing.rows()) == 40
    assert ops.verify(storage, signer.public_keyring()) == []
    with apt_box(docker_client, cell_images[2].ref, signer.public_keyring(), tmp_path) as box:
        point_apt(box, storage.target.public_url())
        box.run(["apt-get", "update", "--error-on=any"])
        names = box.run(["sh", "-c", "apt-cache pkgnames pkg- | sort"]).output.split()
        assert len(names) == 40


def test_killed_publisher_leaves_a_readable_repo_at_every_write(docker_client, cell_images,
                                                                s3_server, server_bucket,
                                                                signer, tmp_path):
    endpoint, s3_bucket = s3_server.endpoint, server_bucket
    old = make_deb(tmp_path / "old", "mxbuild-probe", "1.0-1")
    new = make_deb(tmp_path / "new", "mxbuild-probe", "2.0-1")
    positions = 0
    with apt_box(docker_client, cell_images[2].ref, signer.public_keyring(), tmp_path) as box:
        for kill_after in range(1, 40):
            prefix = f"kill{kill_after}"
            storage = storage_for(endpoint, s3_bucket, prefix)
            publish(storage, signer, [Upload(old, "bookworm", "cpu")])
            proc = subprocess.run(
                [sys.executable, "-m", "tests.integration.s3_publisher", "--endpoint",
                 endpoint, "--target", f"s3://{s3_bucket}/{prefix}", "--gnupg",
                 str(signer.home), "--kill-after", str(kill_after), str(new)],
                cwd=ROOT, capture_output=True, text=True)
            if proc.returncode == 0:
                break                       # fewer writes than kill_after: all positions done
            assert proc.returncode == -9, proc.stderr
            positions += 1
            point_apt(box, storage.target.public_url())
            update = box.run(["apt-get", "update", "--error-on=any"], check=False)
            assert update.exit_code == 0, f"after write {kill_after}:\n{update.output}"
            assert visible(box, "mxbuild-probe") in ({"1.0-1"}, {"1.0-1", "2.0-1"}), kill_after
            publish(storage, signer, [Upload(new, "bookworm", "cpu")])  # re-run completes
            assert ops.verify(storage, signer.public_keyring()) == [], kill_after
            point_apt(box, storage.target.public_url())
            box.run(["apt-get", "update", "--error-on=any"])
            assert visible(box, "mxbuild-probe") == {"1.0-1", "2.0-1"}
    print(f"{s3_server.name}: killed at {positions} write positions; each left a repo apt "
          "reads")
    assert positions >= 10, f"only {positions} write positions were exercised"


def test_publish_survives_30_percent_faults(s3_server, server_bucket, signer, tmp_path):
    endpoint, s3_bucket = s3_server.endpoint, server_bucket
    with FaultProxy(endpoint, rate=0.3, seed=7) as proxy:
        storage = storage_for(proxy.url, s3_bucket)
        for i in range(4):
            publish(storage, signer, [Upload(make_deb(tmp_path, f"pkg{i}", "1.0-1"),
                                             "bookworm", "cpu")])
    print(f"{s3_server.name}: fault proxy: {proxy.counts}")
    assert proxy.counts["requests"] > 50
    assert min(proxy.counts[k] for k in ("503", "500", "reset-before", "reset-after")) > 0
    direct = storage_for(endpoint, s3_bucket)
    assert ops.verify(direct, signer.public_keyring()) == []
    assert len(ops.list_repo(direct, signer.public_keyring()).rows()) == 4


def test_publish_that_cannot_get_through_fails_clearly_and_leaves_the_repo_valid(
        moto_endpoint, s3_bucket, signer, tmp_path):
    direct = storage_for(moto_endpoint, s3_bucket)
    publish(direct, signer, [Upload(make_deb(tmp_path, "pkg0", "1.0-1"), "bookworm", "cpu")])
    with FaultProxy(moto_endpoint, rate=1.0, seed=3) as proxy:
        storage = S3Storage(S3Target.parse(f"s3://{s3_bucket}/apt", endpoint_url=proxy.url,
                                           path_style=True), max_attempts=2, rounds=2)
        with pytest.raises(RepoError) as info:
            publish(storage, signer, [Upload(make_deb(tmp_path, "pkg1", "1.0-1"), "bookworm",
                                             "cpu")])
    assert info.value.message.startswith("S3 ")
    assert f"s3://{s3_bucket}/apt/" in info.value.message
    assert ops.verify(direct, signer.public_keyring()) == []
    assert ops.list_repo(direct, signer.public_keyring()).rows() == [
        ("bookworm", "cpu", "pkg0", "1.0-1")]


def test_remove_and_clean(moto_endpoint, s3_bucket, signer, tmp_path):
    storage = storage_for(moto_endpoint, s3_bucket)
    for v in ("1.0-1", "2.0-1"):
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", v), "bookworm", "cpu")])
    keyring = signer.public_keyring()
    assert ops.garbage(storage, keyring, grace_seconds=0) != []   # generation 1's by-hash
    removed = ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    assert removed == ["bookworm/cpu/libmxnet_1.0-1_amd64"]
    assert ops.list_repo(storage, keyring).rows() == [("bookworm", "cpu", "libmxnet", "2.0-1")]
    assert ops.verify(storage, keyring) == []
    assert ops.garbage(storage, keyring, grace_seconds=3600) == []  # all inside the grace
    found = ops.garbage(storage, keyring, grace_seconds=0)
    keys = {g.key for g in found}
    assert "pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb" in keys
    assert all("/by-hash/" in k or k.startswith("pool/") for k in keys)
    for g in found:
        storage.delete(g.key)
    assert ops.verify(storage, keyring) == []
    assert ops.garbage(storage, keyring, grace_seconds=0) == []
    with pytest.raises(RepoError, match="is not published"):
        ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")


def test_verify_names_each_problem(moto_endpoint, s3_bucket, signer, tmp_path):
    storage = storage_for(moto_endpoint, s3_bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    storage.delete("pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb")
    storage.put("dists/bookworm/cpu/binary-amd64/Packages.gz", b"garbage")
    problems = ops.verify(storage, signer.public_keyring())
    assert any("libmxnet_1.0-1_amd64.deb: missing" in p for p in problems), problems
    assert any("Packages.gz: differs from InRelease" in p for p in problems), problems
    with Signer(tmp_path / "stranger") as stranger:
        problems = ops.verify(storage, stranger.public_keyring())
    assert any("does not verify" in p for p in problems), problems


def test_credentials_never_appear_in_output(moto_endpoint, s3_bucket, signer, tmp_path):
    import os
    env = {**os.environ, "MXBUILD_GNUPGHOME": str(signer.home),
           "MXBUILD_OUT_DIR": str(tmp_path / "out")}
    storage = storage_for(moto_endpoint, s3_bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    runs = [
        ["repo.list", "--repo", f"s3://{s3_bucket}/apt", "--endpoint-url", moto_endpoint,
         "--path-style"],
        ["repo.verify", "--repo", f"s3://{s3_bucket}/apt", "--endpoint-url", moto_endpoint,
         "--path-style"],
        ["repo.verify", "--repo", f"s3://{s3_bucket}/apt", "--endpoint-url",
         "http://127.0.0.1:9", "--path-style"],                   # unreachable: error path
        ["repo.list", "--repo", "s3://no-such-bucket-xyz/apt", "--endpoint-url", moto_endpoint,
         "--path-style"],
    ]
    codes = []
    for args in runs:
        proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        codes.append(proc.returncode)
        for secret in (S3_SECRET, S3_KEY_ID):
            assert secret not in proc.stdout + proc.stderr, args
    assert codes[:2] == [0, 0] and codes[2] == 7 and codes[3] == 7


def _writes(storage) -> list[dict]:
    """The PutObject requests this storage's client sends from now on (their parameters)."""
    sent = []
    storage.client.meta.events.register(
        "before-parameter-build.s3.PutObject",
        lambda params, **kw: sent.append({k: v for k, v in params.items() if k != "Body"}))
    return sent


def test_pool_and_by_hash_are_create_only_and_other_bytes_are_refused_before_any_write(
        s3_server, server_bucket, signer, tmp_path):
    storage = storage_for(s3_server.endpoint, server_bucket)
    keyring = signer.public_keyring()
    deb = make_deb(tmp_path / "a", "libmxnet", "1.0-1", b"A",
                   files={"usr/lib/x86_64-linux-gnu/libmxnet.so": b"A"})
    sent = _writes(storage)
    publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
    immutable = [p for p in sent if "/pool/" in p["Key"] or "/by-hash/" in p["Key"]]
    assert {p["Key"].rsplit("/", 1)[-1] for p in immutable if "/pool/" in p["Key"]} == \
        {deb.name}
    assert sum("/cpu/by-hash/" in p["Key"] for p in immutable) == 4     # Contents (2 forms)
    assert all(p.get("IfNoneMatch") == "*" for p in immutable), immutable
    inrelease = storage.get("dists/bookworm/InRelease")[0]

    # a second build of the same file name, in a publish with a new package too
    other = make_deb(tmp_path / "b", "libmxnet", "1.0-1", b"B")
    new = make_deb(tmp_path / "b", "mxbuild-new", "1.0-1")
    sent.clear()
    with pytest.raises(PoolConflictError) as info:
        publish(storage, signer, [Upload(new, "bookworm", "cpu"), Upload(other, "bookworm", "cpu")])
    rendered = info.value.render()
    assert sha256_file(deb) in rendered and sha256_file(other) in rendered
    assert "nothing was written" in rendered and "\n  fix: " in rendered
    assert sent == []                                          # nothing of it, anywhere
    assert storage.get("dists/bookworm/InRelease")[0] == inrelease
    assert storage.get(f"pool/cpu/libm/libmxnet/{deb.name}")[0] == deb.read_bytes()
    assert ops.verify(storage, keyring) == []


def test_a_pool_file_written_meanwhile_by_another_publisher_is_refused_by_the_server(
        s3_server, server_bucket, signer, tmp_path):
    """Between mxbuild's check and its upload another publisher creates the same pool key
    with other bytes: the server refuses the create-only PUT (412), nothing is committed."""
    storage = storage_for(s3_server.endpoint, server_bucket)
    publish(storage, signer, [Upload(make_deb(tmp_path, "seed", "1.0-1"), "bookworm", "cpu")])
    inrelease = storage.get("dists/bookworm/InRelease")[0]
    ours = make_deb(tmp_path / "a", "libmxnet", "1.0-1", b"ours")
    theirs = make_deb(tmp_path / "b", "libmxnet", "1.0-1", b"theirs")
    rival = storage_for(s3_server.endpoint, server_bucket)
    key = f"pool/cpu/libm/libmxnet/{ours.name}"

    def race(params, **kw):
        if params["Key"].endswith(key) and not rival.exists(key):
            rival.put_new(key, src=theirs)
    storage.client.meta.events.register("before-parameter-build.s3.PutObject", race)
    with pytest.raises(PoolConflictError) as info:
        publish(storage, signer, [Upload(ours, "bookworm", "cpu")])
    assert sha256_file(ours) in info.value.message and sha256_file(theirs) in info.value.message
    assert "nothing of this publish was committed" in info.value.message
    assert storage.get(key)[0] == theirs.read_bytes()        # the first writer's bytes stay
    assert storage.get("dists/bookworm/InRelease")[0] == inrelease


def test_contents_on_s3_follow_publish_and_remove(moto_endpoint, s3_bucket, signer, tmp_path):
    """A removal that keeps another version re-reads that version's .deb from the bucket."""
    import gzip
    storage = storage_for(moto_endpoint, s3_bucket)
    for version, tool in (("1.0-1", "old-tool"), ("1.1-1", "new-tool")):
        publish(storage, signer, [Upload(make_deb(tmp_path / version, "libmxnet", version,
                                                  files={f"usr/bin/{tool}": b"t"}),
                                         "bookworm", "cpu")])
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    text = gzip.decompress(storage.get("dists/bookworm/cpu/Contents-amd64.gz")[0]).decode()
    assert "usr/bin/new-tool" in text and "usr/bin/old-tool" not in text
    assert ops.verify(storage, signer.public_keyring()) == []


@pytest.mark.parametrize("s3_server", ["moto", "seaweedfs"], indirect=True)
def test_clean_keeps_what_object_lock_retains(s3_server, signer, tmp_path, request):
    """On a bucket with Object Lock (default retention, as an operator sets it), clean
    lists the unreferenced pool file but does not DELETE it: that would only hide the
    retained version behind a delete marker."""
    import time
    name = _locked_bucket(s3_server.endpoint, f"locked-{request.node.callspec.id[:4]}-"
                                              f"{os.getpid()}", default_days=1)
    storage = storage_for(s3_server.endpoint, name)
    keyring = signer.public_keyring()
    for v in ("1.0-1", "2.0-1"):
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", v), "bookworm", "cpu")])
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    found = {g.key: g for g in ops.garbage(storage, keyring, grace_seconds=0)}
    old = "pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb"
    assert found[old].retained_until > time.time() + 23 * 3600
    assert ops.delete_garbage(storage, list(found.values())) == []
    assert storage.get(old) is not None                    # still there, no delete marker
    assert ops.verify(storage, keyring) == []


def _locked_bucket(endpoint: str, name: str, default_days: int | None = None) -> str:
    from tests.s3servers import public_read_policy
    admin = boto3.client("s3", endpoint_url=endpoint)
    admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    if default_days:
        admin.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": default_days}}})
    admin.put_bucket_policy(Bucket=name, Policy=public_read_policy(name))
    return name


@pytest.mark.parametrize("s3_server", ["moto", "seaweedfs"], indirect=True)
def test_pool_retention_locks_pool_files_only(s3_server, signer, tmp_path, request):
    """MXBUILD_POOL_RETENTION_DAYS: each new pool file is written with Object Lock
    (GOVERNANCE, N days); indexes and by-hash files are not; clean keeps the pool file."""
    import time
    name = _locked_bucket(s3_server.endpoint, f"retain-{request.node.callspec.id[:4]}-"
                                              f"{os.getpid()}")
    storage = storage_for(s3_server.endpoint, name, pool_retention_days=3)
    keyring = signer.public_keyring()
    for v in ("1.0-1", "2.0-1"):
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", v), "bookworm", "cpu")])
    old = "pool/cpu/libm/libmxnet/libmxnet_1.0-1_amd64.deb"
    until = storage.retained_until(old)
    assert 3 * 86400 - 600 < until - time.time() <= 3 * 86400
    by_hash = [o.key for o in storage.list("dists/") if "/by-hash/" in o.key]
    assert by_hash and all(storage.retained_until(k) is None for k in by_hash)
    assert storage.retained_until("dists/bookworm/InRelease") is None
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    found = ops.garbage(storage, keyring, grace_seconds=0)
    deleted = {g.key for g in ops.delete_garbage(storage, found)}
    assert old in {g.key for g in found} and old not in deleted
    assert deleted and all("/by-hash/" in k for k in deleted)   # unlocked garbage goes
    assert storage.get(old) is not None
    assert ops.verify(storage, keyring) == []


def test_pool_retention_without_object_lock_is_refused_before_any_write(
        moto_endpoint, s3_bucket, signer, tmp_path):
    storage = storage_for(moto_endpoint, s3_bucket, pool_retention_days=3)
    with pytest.raises(ConfigError, match="has no S3 Object Lock") as info:
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"),
                                         "bookworm", "cpu")])
    assert "MXBUILD_POOL_RETENTION_DAYS" in info.value.hint
    assert boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(
        Bucket=s3_bucket).get("KeyCount") == 0
