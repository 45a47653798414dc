import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from mxbuild import bootstrap
from mxbuild.matrix import BootstrapSpec

from ..require import need_tools, skip_or_fail

EPOCH = 1704067200          # 2024-01-01T00:00:00Z
DIFF = "ab" * 32
BOOKWORM_KEY = "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def spec(**kw) -> BootstrapSpec:
    values = dict(suite="bookworm", mirror="http://deb.debian.org/debian",
                  keyring=str(DEBIAN_KEYRING), key_fingerprint=BOOKWORM_KEY,
                  components=("main",))
    values.update(kw)
    return BootstrapSpec(**values)


# ------------------------------------------------------------------ package_drift

def test_drift_names_changed_added_and_removed_packages_sorted():
    old = {"libc6": "2.36-9+deb12u7", "bar": "2.0", "same": "1"}
    new = {"libc6": "2.36-9+deb12u9", "foo": "1.0", "same": "1"}
    assert bootstrap.package_drift(old, new) == [
        "-bar 2.0", "+foo 1.0", "libc6 2.36-9+deb12u7 → 2.36-9+deb12u9"]


def test_no_drift_for_equal_sets():
    assert bootstrap.package_drift({"a": "1"}, {"a": "1"}) == []
    assert bootstrap.package_drift({}, {}) == []


# ------------------------------------------------------------------ image config

def test_image_config_is_canonical_and_has_what_the_image_needs():
    config = bootstrap.image_config(DIFF, EPOCH, "mmdebstrap bookworm (mxbuild)")
    assert config == bootstrap.image_config(DIFF, EPOCH, "mmdebstrap bookworm (mxbuild)")
    doc = json.loads(config)
    assert doc["created"] == "2024-01-01T00:00:00Z"
    assert doc["architecture"] == "amd64" and doc["os"] == "linux"
    assert doc["config"] == {"Env": ["LANG=C.UTF-8"], "Cmd": ["/bin/bash"]}
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{DIFF}"]}
    assert doc["history"][0]["created"] == doc["created"]
    # canonical: sorted keys, no whitespace; nothing from the clock or the machine
    assert config == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in config.replace(b"mmdebstrap bookworm (mxbuild)", b"")


def test_image_id_is_the_config_digest_without_an_engine():
    config = bootstrap.image_config(DIFF, EPOCH, bootstrap.created_by(spec()))
    assert bootstrap.image_id_for(spec(), DIFF, EPOCH) == \
        "sha256:" + hashlib.sha256(config).hexdigest()
    assert json.loads(config)["history"][0]["created_by"] == "mmdebstrap bookworm (mxbuild)"


def test_image_config_changes_with_the_layer_and_the_epoch():
    base = bootstrap.image_config(DIFF, EPOCH, "x")
    assert bootstrap.image_config("cd" * 32, EPOCH, "x") != base
    assert bootstrap.image_config(DIFF, EPOCH + 1, "x") != base


def test_manifest_points_at_the_config_by_its_digest():
    config = bootstrap.image_config(DIFF, EPOCH, "x")
    doc = json.loads(bootstrap.manifest(config, DIFF, "mxbuild/base:t"))
    assert doc == [{"Config": hashlib.sha256(config).hexdigest() + ".json",
                    "RepoTags": ["mxbuild/base:t"], "Layers": [f"{DIFF}/layer.tar"]}]
    assert bootstrap.manifest(config, DIFF, "mxbuild/base:t") == \
        bootstrap.manifest(config, DIFF, "mxbuild/base:t")


def test_docker_archive_bytes_depend_only_on_layer_config_tag_epoch(tmp_path):
    layer = tmp_path / "layer.tar"
    layer.write_bytes(b"\0" * 10240)
    config = bootstrap.image_config(bootstrap.sha256_file(layer), EPOCH, "x")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    bootstrap.write_docker_archive(layer, config, "mxbuild/base:t", EPOCH, first)
    later = layer.stat().st_mtime + 3600
    os.utime(layer, (later, later))                  # the layer file touched an hour later
    bootstrap.write_docker_archive(layer, config, "mxbuild/base:t", EPOCH, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        sha = bootstrap.sha256_file(layer)
        assert f"{sha}/layer.tar" in names and "manifest.json" in names
        assert tar.extractfile(f"{hashlib.sha256(config).hexdigest()}.json").read() == config
        assert {m.mtime for m in tar.getmembers()} == {EPOCH}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in tar.getmembers()} == {(0, 0, "", "")}


# ------------------------------------------------------------------ the rootfs tar

def make_tree(root: Path, order: list[str], mtime: float) -> None:
    root.mkdir()
    for name in order:
        if name == "dir":
            (root / "dir/sub").mkdir(parents=True)
            (root / "dir/sub/deep").write_text("deep")
        elif name == "file":
            (root / "file").write_text("content")
            os.chmod(root / "file", 0o640)
        elif name == "link":
            os.symlink("file", root / "link")
        elif name == "hard":
            (root / "zz-hard-a").write_text("same inode")
            os.link(root / "zz-hard-a", root / "aa-hard-b")
        elif name == "fifo":
            os.mkfifo(root / "fifo")
        elif name == "old":
            (root / "old").write_text("older than the epoch")
            os.utime(root / "old", (EPOCH - 1000, EPOCH - 1000))
    for path in [root, *root.rglob("*")]:
        if path.name != "old":
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def test_rootfs_tar_is_the_same_whatever_the_creation_order_and_time(tmp_path):
    make_tree(tmp_path / "a", ["dir", "file", "link", "hard", "fifo", "old"], time.time())
    make_tree(tmp_path / "b", ["old", "fifo", "hard", "link", "file", "dir"], EPOCH + 99999)
    sha_a = bootstrap.pack_rootfs(tmp_path / "a", tmp_path / "a.tar", EPOCH)
    sha_b = bootstrap.pack_rootfs(tmp_path / "b", tmp_path / "b.tar", EPOCH)
    assert sha_a == sha_b == bootstrap.sha256_file(tmp_path / "a.tar")
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]     # tarfile drops a directory's trailing "/"
    assert names == [".", "./aa-hard-b", "./dir", "./dir/sub", "./dir/sub/deep", "./fifo",
                     "./file", "./link", "./old", "./zz-hard-a"]
    raw = (tmp_path / "a.tar").read_bytes()
    assert raw[:3] == b"./\0" and raw[512:524] == b"./aa-hard-b\0"
    by = {m.name: m for m in members}
    assert by["./zz-hard-a"].islnk() and by["./zz-hard-a"].linkname == "./aa-hard-b"
    assert by["./link"].issym() and by["./link"].linkname == "file"
    assert by["./fifo"].isfifo()
    assert by["./file"].mode == 0o640
    assert by["./old"].mtime == EPOCH - 1000           # older: kept
    assert by["./file"].mtime == EPOCH                  # newer: clamped
    assert all(m.uname == "" and m.gname == "" for m in members)


def test_rootfs_tar_keeps_numeric_owners(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "owned").write_text("x")
    os.chown(root / "owned", 1234, 4321)
    bootstrap.pack_rootfs(root, tmp_path / "r.tar", EPOCH)
    with tarfile.open(tmp_path / "r.tar") as tar:
        owned = tar.getmember("./owned")
    assert (owned.uid, owned.gid) == (1234, 4321)


def test_tidy_removes_caches_logs_and_host_files_and_clamps_shadow(tmp_path):
    root = tmp_path / "rootfs"
    for rel in ["var/cache/apt/archives/a_1_amd64.deb", "var/cache/apt/pkgcache.bin",
                "var/lib/apt/lists/x_Packages", "var/log/dpkg.log", "var/log/apt/term.log",
                "etc/resolv.conf", "etc/hostname", "dev/null-ish", "tmp/t", "run/r",
                "var/cache/ldconfig/aux-cache", "etc/keep.conf"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "etc/shadow").write_text("root:*:19700:0:99999:7:::\nnobody:*::0:99999:7:::\n")
    os.chmod(root / "etc/shadow", 0o640)
    bootstrap.tidy_rootfs(root, EPOCH, io.StringIO())
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["etc/keep.conf", "etc/machine-id", "etc/shadow"]
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "etc/shadow").read_text() == \
        f"root:*:{EPOCH // 86400}:0:99999:7:::\nnobody:*::0:99999:7:::\n"
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert (root / "var/cache/apt/archives").is_dir() and (root / "dev").is_dir()


def test_apt_source_names_mirror_suite_and_components(tmp_path):
    (tmp_path / "etc/apt").mkdir(parents=True)
    s = spec(suite="focal", mirror="http://archive.ubuntu.com/ubuntu",
             components=("main", "universe"))
    bootstrap.ensure_apt_source(tmp_path, s, io.StringIO())
    assert (tmp_path / "etc/apt/sources.list").read_text() == \
        "deb http://archive.ubuntu.com/ubuntu focal main universe\n"


def test_installed_packages_reads_the_rootfs_dpkg_status(tmp_path):
    admin = tmp_path / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    stanza = ("Package: {0}\nStatus: {2}\nPriority: required\nArchitecture: {3}\n"
              "Version: {1}\nMaintainer: m <m@example.org>\nDescription: d\n")
    admin.joinpath("status").write_text("\n".join([
        stanza.format("libc6", "2.36-9+deb12u9", "install ok installed", "amd64"),
        stanza.format("base-files", "12.4+deb12u9", "install ok installed", "amd64"),
        stanza.format("gone", "1.0", "deinstall ok config-files", "amd64"),
        stanza.format("libfoo", "1.0", "install ok installed", "i386"),
        stanza.format("tzdata", "2024a-0+deb12u1", "install ok installed", "all"),
    ]))
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                            text=True).stdout.strip()
    assert native == "amd64"
    assert bootstrap.installed_packages(tmp_path) == {
        "base-files": "12.4+deb12u9", "libc6": "2.36-9+deb12u9", "libfoo:i386": "1.0",
        "tzdata": "2024a-0+deb12u1"}


# ------------------------------------------------------------------ archive key

@pytest.fixture
def debian_keyring():
    """The host's Debian archive keyring, read with gpg (./setup.sh installs both)."""
    need_tools("gpg", hint="apt-get install gnupg")
    if not DEBIAN_KEYRING.is_file():
        skip_or_fail("tools", f"{DEBIAN_KEYRING} is missing (apt-get install "
                              "debian-archive-keyring)")


@pytest.mark.usefixtures("debian_keyring")
def test_only_the_pinned_key_is_exported(tmp_path):
    out = bootstrap.verify_archive_key(spec(), tmp_path / "key.gpg")
    fprs = bootstrap.key_fingerprints(out)
    assert BOOKWORM_KEY in fprs
    # the primary key and its subkeys, nothing of the other archive keys
    assert "1F89983E0081FDE018F3CC9673A4F27B8DD47936" not in fprs


@pytest.mark.usefixtures("debian_keyring")
def test_apt_in_the_image_must_trust_the_pinned_key(tmp_path):
    key = bootstrap.verify_archive_key(spec(), tmp_path / "key.gpg")
    root = tmp_path / "rootfs"
    (root / "etc/apt/trusted.gpg.d").mkdir(parents=True)
    # a keyring package that holds the key: used as it is
    shutil.copy(key, root / "etc/apt/trusted.gpg.d/debian-archive-bookworm-automatic.gpg")
    log = io.StringIO()
    assert bootstrap.ensure_apt_trusts(root, spec(), key, log) == \
        "etc/apt/trusted.gpg.d/debian-archive-bookworm-automatic.gpg"
    # none that does: the pinned key is installed
    (root / "etc/apt/trusted.gpg.d/debian-archive-bookworm-automatic.gpg").unlink()
    rel = bootstrap.ensure_apt_trusts(root, spec(), key, log)
    assert rel == f"etc/apt/trusted.gpg.d/{bootstrap.PINNED_KEY_NAME}"
    assert (root / rel).read_bytes() == key.read_bytes()


def test_tool_and_method_per_suite():
    assert bootstrap.tool_for(spec()) == "mmdebstrap"
    assert bootstrap.tool_for(spec(suite="xenial")) == "debootstrap"
    assert bootstrap.method(spec()) != bootstrap.method(spec(suite="xenial"))
