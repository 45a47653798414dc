"""The local repository as a real apt client sees it: in a fresh runtime container,
over http on loopback, with signed-by."""
import contextlib

import pytest

from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage
from mxbuild.smoke import serve_directory

from ..conftest import make_deb
from .conftest import apt_box, point_apt

@contextlib.contextmanager
def apt_client(docker_client, image, repo_dir, keyring_bytes, tmp_path, install=()):
    """A fresh runtime container reading the local repository over http on loopback."""
    with serve_directory(repo_dir) as url, \
            apt_box(docker_client, image, keyring_bytes, tmp_path, install) as box:
        point_apt(box, url)
        yield box


@pytest.fixture
def repo(tmp_path, gnupg_home):
    signer = Signer(gnupg_home)
    storage = LocalStorage(tmp_path / "repo")
    return signer, storage


def test_publish_twice_keeps_both_versions_installable(docker_client, cell_images, repo,
                                                        tmp_path):
    signer, storage = repo
    publish(storage, signer, [Upload(make_deb(tmp_path, "mxbuild-probe", "1.0-1~deb12", b"1"),
                                     "bookworm", "cpu")])
    publish(storage, signer, [Upload(make_deb(tmp_path, "mxbuild-probe", "1.0+2-1~deb12", b"2"),
                                     "bookworm", "cpu")])
    with apt_client(docker_client, cell_images[2].ref, storage.root, signer.public_keyring(),
                    tmp_path) as box:
        box.run(["apt-get", "update", "--error-on=any"])
        madison = box.run(["apt-cache", "madison", "mxbuild-probe"]).output
        assert "1.0-1~deb12" in madison and "1.0+2-1~deb12" in madison
        box.run(["apt-get", "install", "-y", "mxbuild-probe=1.0-1~deb12"])
        box.run(["apt-get", "install", "-y", "mxbuild-probe"])   # upgrades to the newest
        assert box.run(["dpkg-query", "-W", "-f", "${Version}", "mxbuild-probe"]).output \
            == "1.0+2-1~deb12"


def test_tampered_packages_index_is_rejected_by_apt(docker_client, cell_images, repo, tmp_path):
    signer, storage = repo
    publish(storage, signer, [Upload(make_deb(tmp_path, "mxbuild-probe", "1.0-1"), "bookworm",
                                     "cpu")])
    # An attacker rewrites every copy of the index (plain paths and by-hash files).
    index_dir = storage.root / "dists/bookworm/cpu/binary-amd64"
    import gzip
    import lzma
    evil = (index_dir / "Packages").read_bytes().replace(b"mxbuild-probe", b"mxbuild-evil!")
    for path in index_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data.startswith(b"\x1f\x8b"):
                path.write_bytes(gzip.compress(evil))
            elif data.startswith(b"\xfd7zXZ"):
                path.write_bytes(lzma.compress(evil))
            else:
                path.write_bytes(evil)
    with apt_client(docker_client, cell_images[2].ref, storage.root, signer.public_keyring(),
                    tmp_path) as box:
        result = box.run(["apt-get", "update", "--error-on=any"], check=False)
        assert result.exit_code != 0
        assert "Hash Sum mismatch" in result.output or "unexpected size" in result.output
        assert box.run(["apt-cache", "show", "mxbuild-evil!"], check=False).exit_code != 0


def test_repository_signed_by_another_key_is_refused(docker_client, cell_images, repo,
                                                     tmp_path, tmp_path_factory):
    signer, storage = repo
    publish(storage, signer, [Upload(make_deb(tmp_path, "mxbuild-probe", "1.0-1"), "bookworm",
                                     "cpu")])
    with Signer(tmp_path_factory.mktemp("stranger-gnupg")) as stranger:
        stranger_ring = stranger.public_keyring()
    with apt_client(docker_client, cell_images[2].ref, storage.root, stranger_ring,
                    tmp_path) as box:
        result = box.run(["apt-get", "update", "--error-on=any"], check=False)
        assert result.exit_code != 0
        assert "NO_PUBKEY" in result.output or "not signed" in result.output
        assert box.run(["apt-cache", "show", "mxbuild-probe"], check=False).exit_code != 0


def test_apt_file_finds_the_package_that_ships_libmxnet_so(docker_client, cell_images, repo,
                                                           tmp_path):
    """apt-file reads the component's Contents-amd64.gz through by-hash (the plain paths
    are deleted first) and names the package."""
    signer, storage = repo
    lib = "usr/lib/x86_64-linux-gnu/libmxnet.so"
    publish(storage, signer, [
        Upload(make_deb(tmp_path, "libmxnet", "1.9.1-1~deb12", files={lib: b"\x7fELF"},
                        section="libs"), "bookworm", "cpu"),
        Upload(make_deb(tmp_path, "mxbuild-probe", "1.0-1"), "bookworm", "cpu")])
    for plain in ("Contents-amd64", "Contents-amd64.gz"):
        (storage.root / "dists/bookworm/cpu" / plain).unlink()
    with apt_client(docker_client, cell_images[2].ref, storage.root, signer.public_keyring(),
                    tmp_path, install=("apt-file",)) as box:
        box.run(["apt-file", "update"])
        found = box.run(["apt-file", "search", "libmxnet.so"]).output
        assert f"libmxnet: /{lib}" in found.splitlines(), found
        assert "mxbuild-probe" not in found
        listed = box.run(["apt-file", "list", "mxbuild-probe"]).output
        assert "mxbuild-probe: /usr/share/doc/mxbuild-probe/payload" in listed
