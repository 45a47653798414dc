"""Key rotation and retention as real apt clients see them: fresh runtime containers
reading the repository over http on loopback with signed-by, the tasks run as a user
would run them (invoke)."""
import os
import subprocess
import sys

import pytest

from mxbuild.repo import audit
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import KEYRING_NAME, Signer, keyring_keys
from mxbuild.repo.storage import LocalStorage
from mxbuild.smoke import serve_directory

from ..conftest import ROOT, make_deb
from .conftest import apt_box, point_apt

# the GnuPG homes of these tests lie under tmp_path: their agents stop after each test
pytestmark = pytest.mark.usefixtures("gnupg_stopped")


def invoke(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def madison(box) -> set[str]:
    out = box.run(["apt-cache", "madison", "mxbuild-probe"], check=False).output
    return {line.split("|")[1].strip() for line in out.splitlines() if "|" in line}


def test_rotation_keeps_old_hosts_updating_until_the_old_key_is_retired(
        docker_client, cell_images, tmp_path):
    home = tmp_path / "gnupg"
    repo = tmp_path / "repo"
    storage = LocalStorage(repo)
    env = {**os.environ, "MXBUILD_GNUPGHOME": str(home), "MXBUILD_OUT_DIR": str(tmp_path / "o")}
    env.pop("MXBUILD_SIGNING_KEY", None)
    publish(storage, Signer(home), [Upload(make_deb(tmp_path, "mxbuild-probe", "1.0-1"),
                                           "bookworm", "cpu")])
    old_ring = (repo / KEYRING_NAME).read_bytes()
    (old,) = [k.fingerprint for k in keyring_keys(old_ring)]

    rotated = invoke("repo.rotate-key", "--repo", str(repo), env=env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new_ring = (repo / KEYRING_NAME).read_bytes()
    fprs = [k.fingerprint for k in keyring_keys(new_ring)]
    assert fprs[0] == old and len(fprs) == 2
    new = fprs[1]
    assert new in rotated.stdout + rotated.stderr
    new_only = Signer(home).with_keys([new]).own_keyring()
    publish(storage, Signer(home), [Upload(make_deb(tmp_path, "mxbuild-probe", "2.0-1"),
                                           "bookworm", "cpu")])
    image = cell_images[2].ref
    for d in ("h-old", "h-new", "h-b"):
        (tmp_path / d).mkdir()
    with serve_directory(repo) as url, \
            apt_box(docker_client, image, old_ring, tmp_path / "h-old") as old_host, \
            apt_box(docker_client, image, new_ring, tmp_path / "h-new") as new_host, \
            apt_box(docker_client, image, new_only, tmp_path / "h-b") as b_host:
        hosts = {"old keyring": old_host, "new keyring": new_host, "new key only": b_host}
        for name, box in hosts.items():                      # the overlap: everyone updates
            point_apt(box, url)
            update = box.run(["apt-get", "update", "--error-on=any"], check=False)
            assert update.exit_code == 0, f"{name} during the overlap:\n{update.output}"
            assert madison(box) == {"1.0-1", "2.0-1"}, name

        # bad input first: retiring the only key of another repository, a junk keyring
        junk = tmp_path / "junk.gpg"
        junk.write_bytes(b"not a keyring\n")
        bad = invoke("repo.verify", "--repo", str(repo), "--keyring", str(junk), env=env)
        assert bad.returncode == 8 and "is not an OpenPGP keyring" in bad.stdout + bad.stderr

        retired = invoke("repo.rotate-key", "--repo", str(repo), "--retire", old, env=env)
        assert retired.returncode == 0, retired.stdout + retired.stderr
        assert [k.fingerprint for k in keyring_keys((repo / KEYRING_NAME).read_bytes())] == [new]
        again = invoke("repo.rotate-key", "--repo", str(repo), "--retire", new, env=env)
        assert again.returncode == 10, again.stdout + again.stderr
        assert "only signing key" in again.stdout + again.stderr
        assert "fix: run `invoke repo.rotate-key` first" in again.stdout + again.stderr
        publish(storage, Signer(home), [Upload(make_deb(tmp_path, "mxbuild-probe", "3.0-1"),
                                               "bookworm", "cpu")])
        for name in ("new keyring", "new key only"):
            box = hosts[name]
            box.run(["apt-get", "update", "--error-on=any"])
            assert madison(box) == {"1.0-1", "2.0-1", "3.0-1"}, name
        refused = old_host.run(["apt-get", "update", "--error-on=any"], check=False)
        assert refused.exit_code != 0
        assert "NO_PUBKEY" in refused.output or "not signed" in refused.output, refused.output
        assert "3.0-1" not in madison(old_host)
    verified = invoke("repo.verify", "--repo", str(repo), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    actions = sorted(d["action"] for d in audit.read_records(storage, "bookworm").values())
    assert actions == ["publish", "publish", "publish", "retire-key", "rotate-key"]


def test_retention_through_the_task_and_apt(docker_client, cell_images, tmp_path):
    home = tmp_path / "gnupg"
    repo = tmp_path / "repo"
    storage = LocalStorage(repo)
    env = {**os.environ, "MXBUILD_GNUPGHOME": str(home), "MXBUILD_OUT_DIR": str(tmp_path / "o")}
    env.pop("MXBUILD_SIGNING_KEY", None)
    for v in ("1.0-1", "2.0-1", "3.0-1"):
        publish(storage, Signer(home), [Upload(make_deb(tmp_path, "mxbuild-probe", v),
                                               "bookworm", "cpu")])
    before = sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file())
    zero = invoke("repo.clean", "--repo", str(repo), "--keep", "0", "--apply", env=env)
    assert zero.returncode == 10 and "--keep 1 or more" in zero.stdout + zero.stderr
    dry = invoke("repo.clean", "--repo", str(repo), "--keep", "1", env=env)
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout + dry.stderr
    assert "would drop mxbuild-probe 1.0-1 from bookworm/cpu" in out
    assert "would drop mxbuild-probe 2.0-1" in out and "dry run" in out
    assert sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file()) == before
    applied = invoke("repo.clean", "--repo", str(repo), "--keep", "1", "--apply", "--grace",
                     "0s", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    pool = repo / "pool/cpu/m/mxbuild-probe"
    assert sorted(p.name for p in pool.iterdir()) == ["mxbuild-probe_3.0-1_amd64.deb"]
    with serve_directory(repo) as url, \
            apt_box(docker_client, cell_images[2].ref, (repo / KEYRING_NAME).read_bytes(),
                    tmp_path) as box:
        point_apt(box, url)
        box.run(["apt-get", "update", "--error-on=any"])
        assert madison(box) == {"3.0-1"}
        box.run(["apt-get", "install", "-y", "mxbuild-probe"])
    assert invoke("repo.verify", "--repo", str(repo), env=env).returncode == 0
