"""Contents indices (`<component>/Contents-<arch>.gz`, for apt-file) on a local repository
with real .debs (host dpkg-deb) and real signatures: the format, the Release entries and
by-hash copies, incremental upkeep through publish / remove / promote, and repo.verify
finding a Contents that disagrees with the packages."""
import gzip

import pytest

from mxbuild.repo import contents, index, ops
from mxbuild.repo.ops import promote, staging_suite
from mxbuild.repo.publish import (Upload, finish, inrelease_key, publish, read_state)
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import copy_gnupg_home, make_deb

LIB = "usr/lib/x86_64-linux-gnu/libmxnet.so"
NAME = "cpu/Contents-amd64.gz"


@pytest.fixture(scope="module")
def signer(tmp_path_factory, signing_key):
    with Signer(copy_gnupg_home(signing_key, tmp_path_factory.mktemp("key") / "gnupg")) as s:
        yield s


def _lib(tmp_path, version, extra=None, arch="amd64"):
    files = {LIB: version.encode(), **(extra or {})}
    return make_deb(tmp_path, "libmxnet", version, version.encode(), arch=arch, files=files,
                    section="libs")


def _contents(storage, suite="bookworm", name=NAME) -> str:
    return gzip.decompress((storage.root / f"dists/{suite}/{name}").read_bytes()).decode()


def _lines(text):
    return [line.split() for line in text.splitlines()]


def test_format_paths_without_dot_sorted_section_qualified(tmp_path):
    deb = make_deb(tmp_path, "libmxnet-dev", "1.0-1", files={
        "usr/include/mxnet/c_api.h": b"h", "usr/lib/x86_64-linux-gnu/libmxnet.a": b"a"},
        section="libdevel")
    paths = contents.deb_paths(deb)
    assert paths == {"usr/include/mxnet/c_api.h", "usr/lib/x86_64-linux-gnu/libmxnet.a",
                     "usr/share/doc/libmxnet-dev/payload"}          # no directories, no ./
    raw = contents.render({"libmxnet-dev": paths, "libmxnet": {LIB, "usr/share/doc/x"},
                           "other": {"usr/share/doc/x"}},
                          {"libmxnet-dev": "libdevel", "libmxnet": "libs"})
    text = raw.decode()
    assert _lines(text) == [
        ["usr/include/mxnet/c_api.h", "libdevel/libmxnet-dev"],
        ["usr/lib/x86_64-linux-gnu/libmxnet.a", "libdevel/libmxnet-dev"],
        [LIB, "libs/libmxnet"],
        ["usr/share/doc/libmxnet-dev/payload", "libdevel/libmxnet-dev"],
        ["usr/share/doc/x", "libs/libmxnet,misc/other"]]             # shared path: one line
    assert all(not line.startswith(("./", "/")) for line in text.splitlines())
    assert contents.parse(contents.compress(raw))["other"] == {"usr/share/doc/x"}
    assert contents.compress(raw) == contents.compress(raw)         # deterministic bytes


def test_release_names_contents_with_hashes_and_by_hash_copies(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1"), "bookworm", "cpu")])
    state = read_state(storage, "bookworm", signer.public_keyring())
    named = state.files[NAME]
    data = (storage.root / "dists/bookworm" / NAME).read_bytes()
    assert (named.size, named.sha256, named.sha512) == (
        len(data), index.digest("sha256", data), index.digest("sha512", data))
    for field in ("SHA256", "SHA512"):
        assert (storage.root / named.by_hash_key("bookworm", field)).read_bytes() == data
    assert named.by_hash_key("bookworm", "SHA256") == \
        f"dists/bookworm/cpu/by-hash/SHA256/{named.sha256}"
    # apt looks the target up by its uncompressed name (listed, and served like Packages)
    plain = state.files["cpu/Contents-amd64"]
    assert gzip.decompress(data) == (storage.root / "dists/bookworm/cpu/Contents-amd64"
                                     ).read_bytes()
    assert plain.sha256 == index.digest("sha256", gzip.decompress(data))
    release = index.parse_release(state.release_text)
    assert release["Architectures"] == "amd64"                      # Contents is no arch index
    assert [LIB, "libs/libmxnet"] in _lines(_contents(storage))
    assert ops.verify(storage, signer.public_keyring()) == []


def test_each_architecture_has_its_own_contents_and_keeps_it(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1"), "bookworm", "cpu")])
    amd64 = read_state(storage, "bookworm", keyring).files[NAME]
    arm_lib = "usr/lib/aarch64-linux-gnu/libmxnet.so"
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1", arch="arm64",
                                              files={arm_lib: b"arm"}), "bookworm", "cpu")])
    files = read_state(storage, "bookworm", keyring).files
    assert files[NAME] == amd64                                    # untouched, same bytes
    arm = _contents(storage, name="cpu/Contents-arm64.gz")
    assert arm_lib in arm and LIB not in arm
    assert arm_lib not in _contents(storage)


def test_versions_union_and_removal_drops_only_what_no_kept_version_ships(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1", {"usr/bin/old-tool": b"o"}),
                                     "bookworm", "cpu")])
    publish(storage, signer, [Upload(make_deb(tmp_path, "other", "2.0-1"), "bookworm", "cpu")])
    publish(storage, signer, [Upload(_lib(tmp_path, "1.1-1", {"usr/bin/new-tool": b"n"}),
                                     "bookworm", "cpu")])
    text = _contents(storage)
    assert "usr/bin/old-tool" in text and "usr/bin/new-tool" in text
    assert "usr/share/doc/other/payload" in text
    # dropping 1.0-1: its own file goes, what 1.1-1 ships too stays (read from the pool)
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.0-1")
    text = _contents(storage)
    assert "usr/bin/old-tool" not in text and "usr/bin/new-tool" in text and LIB in text
    ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", "1.1-1")
    assert "libmxnet" not in _contents(storage)
    assert "misc/other" in _contents(storage)
    assert ops.verify(storage, keyring) == []


def test_promote_carries_the_files_to_the_stable_suite(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1"), staging_suite("bookworm"),
                                     "cpu")])
    promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "1.0-1")
    assert [LIB, "libs/libmxnet"] in _lines(_contents(storage))
    assert ops.verify(storage, signer.public_keyring()) == []


def _recommit(storage, signer, suite, change):
    """Commit, signed, a Release whose file list is change(files): what a repository made
    by another tool (or an older mxbuild) could hold."""
    keyring = signer.public_keyring()
    state = read_state(storage, suite, keyring)
    files = change(dict(state.files))
    signed = signer.clearsign(index.render_release(suite, state.components,
                                                   list(files.values()),
                                                   index.release_date()))
    storage.put_cas(inrelease_key(suite), signed, state.token)
    finish(storage, signer, suite, keyring)


def _with_contents(storage, suite, by_package):
    data = contents.compress(contents.render(by_package, {}))
    described = index.IndexFile.of(NAME, data)
    for field in ("SHA256", "SHA512"):
        storage.put_new(described.by_hash_key(suite, field), data)

    def change(files):
        files[NAME] = described
        return files
    return change


def test_verify_finds_a_signed_contents_that_disagrees_with_the_packages(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1"), "bookworm", "cpu")])
    # hashes all agree with the signed Release, the content does not: a ghost, no libmxnet
    _recommit(storage, signer, "bookworm", _with_contents(storage, "bookworm",
                                                          {"ghost": {"usr/bin/ghost"}}))
    problems = ops.verify(storage, keyring)
    assert any("Contents-amd64.gz: lists ghost" in p for p in problems), problems
    assert any("Contents-amd64.gz: lists no file of libmxnet" in p for p in problems), problems
    # bytes that differ from the Release are found like any index's
    named = read_state(storage, "bookworm", keyring).files[NAME]
    (storage.root / named.by_hash_key("bookworm", "SHA256")).write_bytes(b"\x1f\x8bjunk")
    problems = ops.verify(storage, keyring)
    assert any("by-hash/SHA256" in p and "does not match InRelease" in p for p in problems)


def test_a_suite_without_contents_gets_it_at_its_next_publish(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(_lib(tmp_path, "1.0-1"), "bookworm", "cpu")])
    _recommit(storage, signer, "bookworm",
              lambda files: {n: f for n, f in files.items() if "Contents" not in n})
    notes = []
    assert not [p for p in ops.verify(storage, keyring, notes) if "Contents" in p]
    assert any("Contents-amd64.gz: none" in n for n in notes)
    # the next publish lists the packages already there too (read from the pool)
    publish(storage, signer, [Upload(make_deb(tmp_path, "other", "2.0-1"), "bookworm", "cpu")])
    text = _contents(storage)
    assert LIB in text and "usr/share/doc/other/payload" in text


# ------------------------------------------------------------------ immutable pool
# (here because these tests share the module's key and .debs with real file lists)

def _state_of(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not p.name.startswith(".mxbuild"))


def test_other_bytes_under_a_published_name_refuse_the_whole_publish_first(tmp_path, signer):
    from mxbuild.errors import PoolConflictError
    from mxbuild.fetch import sha256_file
    storage = LocalStorage(tmp_path / "repo")
    first = _lib(tmp_path / "a", "1.0-1")
    publish(storage, signer, [Upload(first, "bookworm", "cpu")])
    before = {p: (storage.root / p).read_bytes() for p in _state_of(storage.root)}
    rebuilt = make_deb(tmp_path / "b", "libmxnet", "1.0-1", b"rebuilt", files={LIB: b"2"},
                       section="libs")
    with pytest.raises(PoolConflictError) as info:
        publish(storage, signer, [Upload(make_deb(tmp_path / "b", "other", "1.0-1"),
                                         "bookworm", "cpu"), Upload(rebuilt, "bookworm", "cpu")])
    text = info.value.render()
    assert f"published sha256 {sha256_file(first)}, this file sha256 " \
           f"{sha256_file(rebuilt)}" in text
    assert "nothing was written" in text and "\n  fix: " in text and "revision" in text
    assert {p: (storage.root / p).read_bytes() for p in _state_of(storage.root)} == before


def test_two_builds_of_one_name_in_one_publish_write_nothing(tmp_path, signer):
    from mxbuild.errors import PoolConflictError
    storage = LocalStorage(tmp_path / "repo")
    with pytest.raises(PoolConflictError, match="two different files"):
        publish(storage, signer, [Upload(_lib(tmp_path / "a", "1.0-1"), "bookworm", "cpu"),
                                  Upload(_lib(tmp_path / "b", "1.0-1", {"x": b"y"}),
                                         "bookworm-staging", "cpu")])
    assert _state_of(storage.root) == []                  # not even the keyring


class RivalFirst(LocalStorage):
    """Another publisher creates `key` with its bytes just before this one's upload."""

    def __init__(self, root, key, rival_deb):
        super().__init__(root)
        self.key, self.rival_deb = key, rival_deb

    def put_new(self, key, data=None, src=None, sha256=None):
        if key == self.key and not self.exists(key):
            super().put_new(key, src=self.rival_deb)
        return super().put_new(key, data, src, sha256)


def test_a_rival_write_between_check_and_upload_is_refused_and_nothing_committed(tmp_path,
                                                                                signer):
    from mxbuild.errors import PoolConflictError
    ours, theirs = _lib(tmp_path / "a", "1.0-1"), _lib(tmp_path / "b", "1.0-1", {"x": b"y"})
    key = f"pool/cpu/libm/libmxnet/{ours.name}"
    storage = RivalFirst(tmp_path / "repo", key, theirs)
    publish(storage, signer, [Upload(make_deb(tmp_path, "seed", "1.0-1"), "bookworm", "cpu")])
    inrelease = (storage.root / "dists/bookworm/InRelease").read_bytes()
    with pytest.raises(PoolConflictError, match="nothing of this publish was committed"):
        publish(storage, signer, [Upload(ours, "bookworm", "cpu")])
    assert (storage.root / key).read_bytes() == theirs.read_bytes()
    assert (storage.root / "dists/bookworm/InRelease").read_bytes() == inrelease
