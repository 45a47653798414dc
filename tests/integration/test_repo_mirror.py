"""repo.mirror between S3 servers on loopback (moto and SeaweedFS): a mirror process
SIGKILLed after each of its writes leaves a mirror a real apt-get (in a container) updates
from and installs from, and a re-run finishes it (repo.verify clean); an incremental update
of one package PUTs only that package's pool file and the changed indexes; pool and by-hash
PUTs are create-only."""
import os
import subprocess
import sys

import pytest

from mxbuild.repo import ops
from mxbuild.repo.mirror import MirrorOptions, mirror
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage
from mxbuild.repo.target import S3Options, open_storage

from ..conftest import ROOT, make_bucket, make_deb
from .conftest import apt_box, point_apt


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    with Signer(tmp_path_factory.mktemp("gnupg")) as s:
        s.public_keyring()
        yield s


def s3(endpoint, bucket, prefix):
    return open_storage(f"s3://{bucket}/{prefix}", S3Options(endpoint_url=endpoint,
                                                             path_style=True))


def visible(box, package: str) -> set[str]:
    out = box.run(["apt-cache", "madison", package], check=False).output
    return {line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def recorded_writes(storage) -> list[tuple[str, str, dict]]:
    """(operation, key, conditional headers) of every S3 call the storage makes from now."""
    calls = []

    def record(params, model, **kw):
        cond = {k: params[k] for k in ("IfNoneMatch", "IfMatch") if k in params}
        calls.append((model.name, params.get("Key", params.get("Prefix", "")), cond,
                      params.get("Delimiter")))
    storage.client.meta.events.register("before-parameter-build.s3.*", record)
    return calls


@pytest.mark.parametrize("s3_server", ["moto", "seaweedfs"], indirect=True)
def test_killed_mirror_leaves_an_apt_readable_mirror_at_every_write(
        docker_client, cell_images, s3_server, server_bucket, signer, tmp_path):
    endpoint, bucket = s3_server.endpoint, server_bucket
    keyring = signer.public_keyring()
    ring = tmp_path / "keyring.gpg"
    ring.write_bytes(keyring)
    source = s3(endpoint, bucket, "source")
    publish(source, signer, [Upload(make_deb(tmp_path / "a", "mxbuild-probe", "1.0-1"),
                                    "bookworm", "cpu"),
                             Upload(make_deb(tmp_path / "a", "gone", "1.0-1"), "bookworm",
                                    "cpu")])
    before = LocalStorage(tmp_path / "state1")          # the mirror's starting point
    mirror(source, before, keyring, MirrorOptions(name="snap"))
    publish(source, signer, [Upload(make_deb(tmp_path / "b", "mxbuild-probe", "2.0-1"),
                                    "bookworm", "cpu")])
    ops.remove(source, signer, "bookworm", "cpu", "gone", "1.0-1")
    ops.delete_garbage(source, ops.garbage(source, keyring, grace_seconds=0))
    want = ops.list_repo(source, keyring)
    positions, kinds = 0, []
    with apt_box(docker_client, cell_images[2].ref, keyring, tmp_path) as box:
        for kill_after in range(1, 80):
            prefix = f"mirror{kill_after}"
            dest = s3(endpoint, bucket, prefix)
            mirror(before, dest, keyring, MirrorOptions(name="snap"))
            proc = subprocess.run(
                [sys.executable, "-m", "tests.integration.s3_mirrorer", "--endpoint", endpoint,
                 "--from", f"s3://{bucket}/source", "--to", f"s3://{bucket}/{prefix}",
                 "--keyring", str(ring), "--kill-after", str(kill_after)],
                cwd=ROOT, capture_output=True, text=True,
                # SIGKILL leaves the mirror's scratch dir: in the test's dir, not the run's
                env={**os.environ, "TMPDIR": str(tmp_path)})
            if proc.returncode == 0:
                break                       # fewer writes than kill_after: all positions done
            assert proc.returncode == -9, proc.stderr
            kinds.append(proc.stdout.split("(")[-1].rstrip(")\n"))
            positions += 1
            point_apt(box, dest.target.public_url())
            update = box.run(["apt-get", "update", "--error-on=any"], check=False)
            assert update.exit_code == 0, f"after write {kill_after}:\n{update.output}"
            assert visible(box, "mxbuild-probe") in ({"1.0-1"}, {"1.0-1", "2.0-1"}), kill_after
            box.run(["apt-get", "install", "-y", "--allow-downgrades", "mxbuild-probe"],
                    env={"DEBIAN_FRONTEND": "noninteractive"})
            mirror(source, dest, keyring, MirrorOptions(name="test-mirror"))   # re-run
            assert ops.verify(dest, keyring) == [], kill_after
            assert ops.list_repo(dest, keyring) == want
            assert not dest.exists("pool/cpu/g/gone/gone_1.0-1_amd64.deb")
    print(f"{s3_server.name}: killed at {positions} write positions ({' '.join(kinds)}); "
          "each left a mirror apt installs from")
    assert positions >= 20 and kinds[-1] == "trace", kinds
    assert kinds.index("pool") < kinds.index("by-hash") < kinds.index("InRelease") \
        < kinds.index("delete"), kinds


@pytest.mark.parametrize("s3_server", ["moto", "seaweedfs"], indirect=True)
def test_incremental_mirror_of_one_package_puts_its_pool_file_and_the_changed_indexes(
        s3_server, server_bucket, signer, tmp_path):
    endpoint, bucket = s3_server.endpoint, server_bucket
    keyring = signer.public_keyring()
    source = s3(endpoint, bucket, "source")
    publish(source, signer, [Upload(make_deb(tmp_path, f"pkg{i:03d}", "1.0-1"), "bookworm", "cpu")
                             for i in range(50)])
    dest = s3(endpoint, make_bucket(endpoint, f"{bucket}-m"), "apt")     # another bucket
    first = recorded_writes(dest)
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    assert ops.verify(dest, keyring) == []
    for op, key, cond, _ in first:
        if op == "PutObject" and ("/pool/" in key or "/by-hash/" in key):
            assert cond == {"IfNoneMatch": "*"}, (key, cond)
    publish(source, signer, [Upload(make_deb(tmp_path, "zz-new", "1.0-1"), "bookworm", "cpu")])
    calls, reads = recorded_writes(dest), recorded_writes(source)
    mirror(source, dest, keyring, MirrorOptions(name="m"))
    puts = [key.split("/", 1)[1] for op, key, _, _ in calls if op == "PutObject"
            and not key.split("/", 1)[1].startswith(".mxbuild")]
    print(f"{s3_server.name}: {len(puts)} PUTs for one new package: {puts}")
    assert [k for k in puts if k.startswith("pool/")] == ["pool/cpu/z/zz-new/zz-new_1.0-1_amd64.deb"]
    assert sum("/by-hash/" in k for k in puts) == 10           # Packages ×3, Contents ×2, ×2 hashes
    assert len(puts) == 23, puts
    assert [k for op, k, _, _ in reads if op == "GetObject" and "/pool/" in k] == \
        ["source/pool/cpu/z/zz-new/zz-new_1.0-1_amd64.deb"]
    lists = [(k, d) for op, k, _, d in calls + reads if op == "ListObjectsV2"]
    assert all(d == "/" or not k.split("/", 1)[1].startswith(("pool", "dists"))
               for k, d in lists), lists
    assert ops.verify(dest, keyring) == []


def test_s3_to_a_directory_and_back_keeps_the_pep503_pages_and_their_aliases(
        moto_endpoint, s3_bucket, signer, tmp_path):
    keyring = signer.public_keyring()
    source = s3(moto_endpoint, s3_bucket, "source")
    publish(source, signer, [Upload(make_deb(tmp_path, "a", "1.0-1"), "bookworm", "cpu")])
    for key, text in (("simple/index.html", b"root\n"), ("simple/mxnet-thin/index.html",
                                                        b"project\n")):
        source.put(key, text)
        source.put(key[:-len("index.html")], text)       # S3 serves dir/ from this alias
    directory = LocalStorage(tmp_path / "mirror")
    mirror(source, directory, keyring, MirrorOptions(name="dir"))
    assert ops.verify(directory, keyring) == []
    assert (tmp_path / "mirror/simple/mxnet-thin/index.html").read_bytes() == b"project\n"
    back = s3(moto_endpoint, s3_bucket, "back")
    mirror(directory, back, keyring, MirrorOptions(name="back"))
    assert ops.verify(back, keyring) == []
    assert back.get("simple/mxnet-thin/")[0] == b"project\n"      # the alias made again
    assert back.get("simple/")[0] == b"root\n"
    assert back.get("project/trace/dir") is not None           # the chain of traces
    trace = back.get("project/trace/back")[0].decode()
    assert f"Upstream-mirror: {directory.describe()}\n" in trace
