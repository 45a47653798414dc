"""One suite for both architectures, on a local repository with real .debs (host
dpkg-deb) and real signatures: binary-<arch> per architecture, Architectures the union of
what the suite holds, a publish of one architecture never touching the other's index,
and verify / promote / remove / clean / retention over both."""
import pytest

from mxbuild.errors import RepoError
from mxbuild.repo import index, ops, retention
from mxbuild.repo.ops import promote, staging_suite
from mxbuild.repo.publish import (Upload, published_entries, read_indexes, read_state,
                                  publish)
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import copy_gnupg_home, make_deb

V = "1.9.1-5~deb12"


@pytest.fixture(scope="module")
def signer(tmp_path_factory, signing_key):
    with Signer(copy_gnupg_home(signing_key, tmp_path_factory.mktemp("key") / "gnupg")) as s:
        yield s


def _debs(tmp_path, version=V):
    return {arch: make_deb(tmp_path, "libmxnet", version, f"{arch} {version}".encode(),
                           arch=arch) for arch in ("amd64", "arm64")}


def _release(storage, signer, suite="bookworm"):
    return index.parse_release(read_state(storage, suite, signer.public_keyring()).release_text)


def test_an_amd64_only_suite_looks_as_it_always_did(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(_debs(tmp_path)["amd64"], "bookworm", "cpu")])
    assert _release(storage, signer)["Architectures"] == "amd64"
    state = read_state(storage, "bookworm", signer.public_keyring())
    assert sorted(state.files) == ["cpu/Contents-amd64", "cpu/Contents-amd64.gz"] + [
        f"cpu/binary-amd64/Packages{x}" for x in ("", ".gz", ".xz")]


def test_publishing_arm64_keeps_every_amd64_entry_and_file(tmp_path, signer):
    """The single-arch suite is upgraded in place: the amd64 index files (same hashes)
    stay named by the Release, binary-arm64 joins them, Architectures is the union."""
    storage = LocalStorage(tmp_path / "repo")
    debs = _debs(tmp_path)
    publish(storage, signer, [Upload(debs["amd64"], "bookworm", "cpu", "1.9.1-cpu-debian12")])
    keyring = signer.public_keyring()
    amd64_files = {n: f for n, f in read_state(storage, "bookworm", keyring).files.items()}
    result = publish(storage, signer, [Upload(debs["arm64"], "bookworm", "cpu",
                                              "1.9.1-cpu-debian12-arm64")])
    assert result.added == [f"bookworm/cpu/libmxnet_{V}_arm64"]
    state = read_state(storage, "bookworm", keyring)
    assert {n: state.files[n] for n in amd64_files} == amd64_files
    assert _release(storage, signer)["Architectures"] == "amd64 arm64"
    by_arch = read_indexes(storage, state, "cpu")
    assert {a: [(e["Package"], e["Version"], e["Architecture"]) for e in entries]
            for a, entries in by_arch.items()} == {
        "amd64": [("libmxnet", V, "amd64")], "arm64": [("libmxnet", V, "arm64")]}
    # pool file names carry the architecture: both live side by side
    assert sorted(o.key for o in storage.list("pool/")) == [
        f"pool/cpu/libm/libmxnet/libmxnet_{V}_amd64.deb",
        f"pool/cpu/libm/libmxnet/libmxnet_{V}_arm64.deb"]
    assert ops.verify(storage, keyring) == []          # audit log replays both commits
    listing = ops.list_repo(storage, keyring)
    assert listing.rows() == [("bookworm", "cpu", "libmxnet", V)]
    assert listing.arches[("bookworm", "cpu", "libmxnet", V)] == ["amd64", "arm64"]
    # and the other way round: a new amd64 version leaves the arm64 index alone
    arm64_files = {n: f for n, f in state.files.items() if "/binary-arm64/" in n}
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.9.1-6~deb12",
                                              arch="amd64"), "bookworm", "cpu")])
    after = read_state(storage, "bookworm", keyring).files
    assert {n: after[n] for n in arm64_files} == arm64_files
    assert ops.verify(storage, keyring) == []


def test_both_architectures_in_one_publish_are_one_commit(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    result = publish(storage, signer, [Upload(d, "bookworm", "cpu")
                                       for d in _debs(tmp_path).values()])
    assert result.attempts == 1 and len(result.added) == 2
    # one commit record (and its .committed marker), naming both packages
    records = [o for o in storage.list("log/bookworm/") if o.key.endswith(".json")]
    assert len(records) == 1
    assert [o.key for o in storage.list("log/bookworm/") if o.key.endswith(".committed")] == [
        records[0].key.removesuffix(".json") + ".committed"]


def test_a_deb_whose_name_hides_its_architecture_is_refused(tmp_path, signer):
    """…before anything is uploaded, also the well-named .debs of the same publish."""
    debs = _debs(tmp_path)
    renamed = debs["arm64"].rename(tmp_path / "libmxnet.deb")
    storage = LocalStorage(tmp_path / "repo")
    with pytest.raises(RepoError, match="does not end with _arm64.deb"):
        publish(storage, signer, [Upload(debs["amd64"], "bookworm", "cpu"),
                                  Upload(renamed, "bookworm", "cpu")])
    assert storage.list("pool/") == [] and storage.list("dists/") == []


def test_verify_names_an_entry_in_another_architectures_index(tmp_path, signer):
    """An index listing a package of another architecture (written by hand here) is a
    problem verify names."""
    from mxbuild.repo.publish import update_suite
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(_debs(tmp_path)["arm64"], "bookworm", "cpu")])
    state = read_state(storage, "bookworm", keyring)
    wrong = read_indexes(storage, state, "cpu")["arm64"][0].copy()
    wrong["Architecture"] = "amd64"     # claims amd64 but is the arm64 file

    def mislabel(entries):
        return [wrong], [wrong]
    update_suite(storage, signer, "bookworm", {"cpu": mislabel}, keyring)
    problems = ops.verify(storage, keyring)
    assert any("Architecture amd64 listed in bookworm/cpu/binary-amd64/Packages" in p
               for p in problems), problems


def test_promote_of_one_architecture_leaves_the_other_in_staging(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(d, staging_suite("bookworm"), "cpu")
                              for d in _debs(tmp_path).values()])
    assert promote(storage, signer, "bookworm", "cpu", ["libmxnet"], V, "arm64") == [
        f"bookworm/cpu/libmxnet_{V}_arm64"]
    assert [e["Architecture"] for e in published_entries(storage, keyring, "bookworm", "cpu",
                                                         "libmxnet", V)] == ["arm64"]
    assert _release(storage, signer)["Architectures"] == "arm64"
    assert promote(storage, signer, "bookworm", "cpu", ["libmxnet"], V, "amd64") == [
        f"bookworm/cpu/libmxnet_{V}_amd64"]
    assert _release(storage, signer)["Architectures"] == "amd64 arm64"
    assert promote(storage, signer, "bookworm", "cpu", ["libmxnet"], V) == []  # both there
    with pytest.raises(RepoError, match=r"\(riscv64\) is not in bookworm-staging/cpu"):
        promote(storage, signer, "bookworm", "cpu", ["libmxnet"], V, "riscv64")
    assert ops.verify(storage, keyring) == []


def test_remove_one_architecture_or_every_one_then_clean(tmp_path, signer):
    """repo.remove --arch arm64 drops that package alone; without --arch the version goes
    from every architecture (one commit); clean then finds both pool files."""
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(d, "bookworm", "cpu") for d in _debs(tmp_path).values()])
    publish(storage, signer, [Upload(d, "bookworm", "cpu")
                              for d in _debs(tmp_path, "1.9.1-6~deb12").values()])
    assert ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", V, "arm64") == [
        f"bookworm/cpu/libmxnet_{V}_arm64"]
    with pytest.raises(RepoError, match=r"\(arm64\) is not published"):
        ops.remove(storage, signer, "bookworm", "cpu", "libmxnet", V, "arm64")
    left = {(e["Version"], e["Architecture"]) for e in published_entries(
        storage, keyring, "bookworm", "cpu", "libmxnet", V)}
    assert left == {(V, "amd64")}
    assert sorted(ops.remove(storage, signer, "bookworm", "cpu", "libmxnet",
                             "1.9.1-6~deb12")) == [
        "bookworm/cpu/libmxnet_1.9.1-6~deb12_amd64", "bookworm/cpu/libmxnet_1.9.1-6~deb12_arm64"]
    assert ops.verify(storage, keyring) == []
    garbage = {g.key.rsplit("/", 1)[1] for g in ops.garbage(storage, keyring, 0)
               if g.key.startswith("pool/")}
    assert garbage == {f"libmxnet_{V}_arm64.deb", "libmxnet_1.9.1-6~deb12_amd64.deb",
                       "libmxnet_1.9.1-6~deb12_arm64.deb"}
    # the arm64 index is still named (empty): apt on arm64 hosts reads it without error
    state = read_state(storage, "bookworm", keyring)
    assert read_indexes(storage, state, "cpu")["arm64"] == []
    assert _release(storage, signer)["Architectures"] == "amd64 arm64"


def test_retention_keeps_the_newest_versions_per_architecture(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    keyring = signer.public_keyring()
    for version in ("1.9.1-4~deb12", V):
        publish(storage, signer, [Upload(d, "bookworm", "cpu")
                                  for d in _debs(tmp_path, version).values()])
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.9.1-6~deb12",
                                              arch="arm64"), "bookworm", "cpu")])
    drops = retention.plan(storage, keyring, 1)
    assert sorted((d.version, d.filename.rsplit("_", 1)[1]) for d in drops) == [
        ("1.9.1-4~deb12", "amd64.deb"), ("1.9.1-4~deb12", "arm64.deb"), (V, "arm64.deb")]
    retention.apply(storage, signer, 1)
    state = read_state(storage, "bookworm", keyring)
    assert {a: [e["Version"] for e in entries]
            for a, entries in read_indexes(storage, state, "cpu").items()} == {
        "amd64": [V], "arm64": ["1.9.1-6~deb12"]}
    assert ops.verify(storage, keyring) == []
