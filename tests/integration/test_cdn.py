"""CDN-safe commits (`--cdn`): each command invalidates, after its commit, exactly the
mutable paths it rewrote, on a CloudFront distribution (moto's CloudFront API, reached
through boto3's standard AWS_ENDPOINT_URL_CLOUDFRONT); and apt reading the repository
through a caching proxy (a CDN edge honouring Cache-Control) never sees a mismatch while
publishes run, with or without the invalidation."""
import os
import threading
import time
from dataclasses import dataclass, field

import boto3
import pytest

from mxbuild.repo import cdn, keys, maven, ops, retention
from mxbuild.client import publish_thin
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.s3 import S3Storage, S3Target
from mxbuild.repo.sign import Signer

from .. import maven_tools
from ..conftest import make_bucket, make_deb, run_cli
from .caching_proxy import CachingProxy
from .conftest import apt_box, point_apt


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    with Signer(tmp_path_factory.mktemp("gnupg")) as s:
        s.public_keyring()
        yield s


@pytest.fixture
def cloudfront(moto_endpoint, monkeypatch):
    """moto's CloudFront, where mxbuild's own client finds it (boto3's per-service
    endpoint variable), and a distribution whose origin is the test bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFRONT", moto_endpoint)
    return boto3.client("cloudfront")


def distribution(cf, bucket: str) -> str:
    got = cf.create_distribution(DistributionConfig={
        "CallerReference": f"{bucket}-{time.time_ns()}", "Comment": "mxbuild test",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{
            "Id": "repo", "DomainName": f"{bucket}.s3.amazonaws.com",
            "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "repo", "ViewerProtocolPolicy": "allow-all",
                                 "MinTTL": 0, "ForwardedValues": {
                                     "QueryString": False, "Cookies": {"Forward": "none"}}}})
    return got["Distribution"]["Id"]


def invalidated(cf, dist: str) -> list[list[str]]:
    """The paths of each invalidation moto recorded, oldest first."""
    items = cf.list_invalidations(DistributionId=dist)["InvalidationList"].get("Items", [])
    batches = [cf.get_invalidation(DistributionId=dist, Id=i["Id"])["Invalidation"]
               for i in items]
    batches.sort(key=lambda b: b["CreateTime"])
    return [b["InvalidationBatch"]["Paths"].get("Items", []) for b in batches]


def storage_for(endpoint, bucket, dist=None) -> S3Storage:
    return S3Storage(S3Target.parse(f"s3://{bucket}/apt", endpoint_url=endpoint,
                                    path_style=True, cdn_distribution=dist))


def suite_paths(suite: str, contents: bool = True) -> list[str]:
    base = f"/apt/dists/{suite}"
    return sorted([f"{base}/InRelease", f"{base}/Release", f"{base}/Release.gpg",
                   *(f"{base}/cpu/binary-amd64/Packages{ext}" for ext in ("", ".gz", ".xz")),
                   *([f"{base}/cpu/Contents-amd64", f"{base}/cpu/Contents-amd64.gz"]
                     if contents else [])])


def test_each_command_invalidates_exactly_the_mutable_paths_it_rewrote_after_its_commit(
        moto_endpoint, s3_bucket, cloudfront, signer, tmp_path):
    dist = distribution(cloudfront, s3_bucket)
    storage = storage_for(moto_endpoint, s3_bucket, dist)
    calls = []     # every PUT/DELETE and CreateInvalidation, in the order they were sent
    storage.client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **kw: calls.append(params["Key"]))
    storage.client.meta.events.register(
        "provide-client-params.s3.DeleteObject",
        lambda params, **kw: calls.append("DELETE " + params["Key"]))
    cf = boto3.client("cloudfront")
    cf.meta.events.register("provide-client-params.cloudfront.CreateInvalidation",
                            lambda params, **kw: calls.append("CreateInvalidation"))

    def run(command) -> list[str]:
        """The paths the command invalidated; none when it invalidated nothing."""
        before = len(invalidated(cloudfront, dist))
        calls.clear()
        with cdn.invalidating(storage, cf):
            command()
        if "CreateInvalidation" in calls:     # after every write of the command
            assert calls[-1] == "CreateInvalidation" and calls.count("CreateInvalidation") == 1
        got = invalidated(cloudfront, dist)[before:]
        assert len(got) <= 1
        return sorted(got[0]) if got else []

    debs = {v: make_deb(tmp_path, "libmxnet", v) for v in ("1.0-1", "2.0-1")}

    def publish_version(version, suite="bookworm-staging"):
        return lambda: publish(storage, signer, [Upload(debs[version], suite, "cpu")])

    # the first publish to a suite: InRelease, Release(.gpg) and every plain-path index
    assert run(publish_version("1.0-1")) == suite_paths("bookworm-staging")
    assert "apt/dists/bookworm-staging/InRelease" in calls     # the commit came first
    # another version of the same package: its Contents (same paths) did not change
    assert run(publish_version("2.0-1")) == suite_paths("bookworm-staging", contents=False)
    assert run(publish_version("2.0-1")) == []                   # nothing new: no request
    assert run(lambda: ops.promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "2.0-1",
                                   "amd64")) == suite_paths("bookworm")
    # clean --keep 1: a commit per suite that changes (staging drops 1.0-1)
    assert run(lambda: retention.apply(storage, signer, 1)) == \
        suite_paths("bookworm-staging", contents=False)
    # clean: deletes only immutable objects (pool, by-hash), so nothing to invalidate
    garbage = ops.garbage(storage, signer.public_keyring(), grace_seconds=0)
    assert garbage and run(lambda: ops.delete_garbage(storage, garbage)) == []
    assert any(c.startswith("DELETE ") for c in calls)
    # rotate-key: the keyring and every suite's signed files (the indexes do not change)
    rotated = run(lambda: keys.rotate(storage, signer, None))
    assert rotated == sorted(["/apt/mxbuild-archive-keyring.gpg",
                              *(f"/apt/dists/{s}/{name}" for s in ("bookworm",
                                                                   "bookworm-staging")
                                for name in ("InRelease", "Release", "Release.gpg"))])
    # the PEP 503 pages a thin-client publish rewrote (the wheel is immutable)
    wheel = tmp_path / "mxnet_thin-1.9.1-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    assert run(lambda: publish_thin(storage, wheel)) == [
        "/apt/simple/", "/apt/simple/index.html", "/apt/simple/mxnet-thin/",
        "/apt/simple/mxnet-thin/index.html"]
    # a command that fails after its commit still invalidates what it changed, then fails
    before = len(invalidated(cloudfront, dist))
    with pytest.raises(RuntimeError, match="after the commit"):
        with cdn.invalidating(storage, cf):
            ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "2.0-1")
            raise RuntimeError("failed after the commit")
    assert [sorted(p) for p in invalidated(cloudfront, dist)[before:]] == \
        [suite_paths("bookworm")]
    # a Maven version (immutable) and the metadata it rewrote, with its checksums
    version = maven_tools.coords("1.9.1")
    metadata = "/apt/" + maven.metadata_key(version.group_id, version.artifact_id)
    assert run(lambda: maven.publish_artifact(
        storage, version, maven_tools.make_jar(tmp_path / "jar", "1.9.1"),
        maven_tools.make_pom(version))) == \
        sorted([metadata, *(f"{metadata}.{d}" for d in maven.DIGESTS)])
    assert ops.verify(storage, signer.public_keyring()) == []


def test_a_failed_invalidation_says_the_commit_stands_and_exits_non_zero(
        moto_endpoint, s3_bucket, cloudfront, signer, tmp_path, monkeypatch):
    storage = storage_for(moto_endpoint, s3_bucket)
    for version in ("1.0-1", "2.0-1", "3.0-1"):
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", version),
                                         "bookworm", "cpu")])
    monkeypatch.setenv("MXBUILD_GNUPGHOME", str(signer.home))

    def remove(version, *more):
        return run_cli("repo.remove", "--suite", "bookworm", "--component", "cpu",
                       "--version", version, "--repo", f"s3://{s3_bucket}/apt",
                       "--endpoint-url", moto_endpoint, "--path-style", *more)

    def listed():
        return [row[3] for row in ops.list_repo(storage, signer.public_keyring()).rows()]
    got = remove("1.0-1", "--cdn", "ENOSUCHDIST")
    assert got.returncode != 0
    assert "CloudFront distribution ENOSUCHDIST does not exist" in got.stderr
    assert "the commit itself succeeded" in got.stderr
    assert "fix: " in got.stderr and "aws cloudfront create-invalidation --distribution-id " \
        "ENOSUCHDIST --paths /apt/dists/bookworm/InRelease" in " ".join(got.stderr.split())
    # the remove was committed, and the repository is consistent
    assert listed() == ["2.0-1", "3.0-1"]
    assert ops.verify(storage, signer.public_keyring()) == []
    # the task with a distribution that exists: its paths, invalidated once
    dist = distribution(cloudfront, s3_bucket)
    got = remove("2.0-1", "--cdn", dist)
    assert got.returncode == 0, got.stderr
    assert invalidated(cloudfront, dist) == [suite_paths("bookworm", contents=False)]
    assert listed() == ["3.0-1"]
    # the setting works like the flag; a malformed ID is refused before anything
    monkeypatch.setenv("MXBUILD_CDN_DISTRIBUTION", "d111.cloudfront.net")
    got = remove("3.0-1")
    assert got.returncode != 0 and "'d111.cloudfront.net' is malformed" in got.stderr
    assert listed() == ["3.0-1"]


@pytest.fixture(params=("moto", "seaweedfs"))
def origin(request, moto_endpoint):
    """The S3 server behind the edge (CloudFront's API is moto's in both cases): moto, and
    SeaweedFS, a production server."""
    if request.param == "moto":
        return moto_endpoint, request.getfixturevalue("s3_bucket")
    server = request.getfixturevalue("seaweedfs")
    return server.endpoint, make_bucket(server.endpoint, f"cdn-apt-{os.getpid()}")


def apt_update(box, *options: str):
    """apt-get update from scratch (no lists kept), through the edge."""
    box.run(["sh", "-c", "rm -rf /var/lib/apt/lists/*"])
    return box.run(["apt-get", "update", "--error-on=any", *options], check=False)


def visible(box) -> set[str]:
    out = box.run(["apt-cache", "madison", "libcdn"], check=False).output
    return {line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


@dataclass
class Reads:
    """What apt saw while a publish ran: updates done, the publish's steps, failures."""
    updates: int = 0
    steps: list = field(default_factory=list)
    failures: list = field(default_factory=list)


def publish_while_apt_reads(box, publishing) -> Reads:
    """Run publishing(after_write) in a thread while apt-get update (from scratch, through
    the edge) runs in a loop; after each step's writes the publisher waits until one update
    ran entirely after them, so apt reads every intermediate state."""
    reads, done, updated = Reads(), threading.Event(), threading.Condition()

    def read_twice(kind):
        reads.steps.append(kind)
        with updated:
            seen = reads.updates
            if not updated.wait_for(lambda: reads.updates >= seen + 2, timeout=120):
                reads.failures.append(f"no apt-get update after step {kind}")

    def publisher():
        try:
            publishing(read_twice)
        except Exception as exc:        # reported with apt's failures
            reads.failures.append(f"publisher: {exc!r}")
        finally:
            done.set()
    thread = threading.Thread(target=publisher)
    thread.start()
    while not done.is_set():
        got = apt_update(box)
        with updated:
            reads.updates += 1
            updated.notify_all()
        if got.exit_code != 0:
            reads.failures.append(got.output)
    thread.join()
    return reads


def test_apt_through_a_caching_cdn_never_sees_a_mismatch_and_invalidation_shows_new_at_once(
        docker_client, cell_images, origin, cloudfront, signer, tmp_path):
    endpoint, bucket = origin
    dist = distribution(cloudfront, bucket)
    plain = storage_for(endpoint, bucket)              # publishes without --cdn
    with_cdn = storage_for(endpoint, bucket, dist)
    cf = boto3.client("cloudfront")
    purged = []

    def deb(version):
        return [Upload(make_deb(tmp_path, "libcdn", version), "bookworm", "cpu")]
    publish(plain, signer, deb("1.0-1"))
    with CachingProxy(f"{endpoint}/{bucket}") as edge, \
            apt_box(docker_client, cell_images[2].ref, signer.public_keyring(),
                    tmp_path) as box:
        # the edge applies an invalidation when CloudFront accepts it
        cf.meta.events.register("after-call.cloudfront.CreateInvalidation",
                                lambda parsed, **kw: purged.extend(edge.purge(
                                    parsed["Invalidation"]["InvalidationBatch"]["Paths"]
                                    ["Items"])))
        point_apt(box, f"{edge.url}/apt")
        assert apt_update(box).exit_code == 0 and visible(box) == {"1.0-1"}   # cached now

        # without invalidation: the edge serves the old InRelease (max-age 60) and apt,
        # which follows it by hash to immutable files, sees the old state, whole
        publish(plain, signer, deb("2.0-1"))
        assert apt_update(box).exit_code == 0 and visible(box) == {"1.0-1"}
        box.run(["apt-get", "install", "-y", "libcdn"])
        # the same edge, read by plain path (what by-hash avoids): old InRelease, new index
        broken = apt_update(box, "-o", "Acquire::By-Hash=no")
        assert broken.exit_code != 0
        assert "Hash Sum mismatch" in broken.output or "unexpected size" in broken.output

        # with invalidation, apt reading at every step: never a mismatch, and the new
        # state is visible as soon as the command returns (the edge still held the old
        # InRelease until the invalidation purged it)
        def with_invalidation(after_write):
            with cdn.invalidating(with_cdn, cf):
                publish(with_cdn, signer, deb("3.0-1"), after_write=after_write)
        cached = publish_while_apt_reads(box, with_invalidation)
        assert cached.failures == [] and "InRelease" in cached.steps
        assert "/apt/dists/bookworm/InRelease" in purged
        assert apt_update(box).exit_code == 0 and visible(box) == {"1.0-1", "2.0-1", "3.0-1"}
        assert apt_update(box, "-o", "Acquire::By-Hash=no").exit_code == 0
        box.run(["apt-get", "install", "-y", "libcdn"])
        assert box.run(["dpkg-query", "-W", "-f", "${Version}", "libcdn"]).output == "3.0-1"

        # an edge whose copies expire within a second (its maximum TTL), no invalidation:
        # InRelease turns over in the middle of the publish, and still no mismatch
        edge.max_ttl = 1.0
        expiring = publish_while_apt_reads(
            box, lambda after_write: publish(plain, signer, deb("4.0-1"),
                                             after_write=after_write))
        assert expiring.failures == []
        time.sleep(1.1)
        assert apt_update(box).exit_code == 0 and "4.0-1" in visible(box)
    assert invalidated(cloudfront, dist) == [suite_paths("bookworm", contents=False)]
    print(f"apt-get update through the edge: {cached.updates} during the publish with "
          f"invalidation ({len(cached.steps)} steps), {expiring.updates} during the one "
          f"with 1 s TTL ({len(expiring.steps)} steps); edge hits {edge.hits}, misses "
          f"{edge.misses}")
