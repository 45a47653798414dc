"""Index generation (golden files) and the publish protocol on a local directory,
with real .debs (host dpkg-deb) and real signatures (gpg)."""
import gzip
import hashlib
import lzma
import subprocess

import pytest
from debian.deb822 import Packages

from mxbuild.errors import PoolConflictError, RepoError, SigningError
from mxbuild.repo import index
from mxbuild.repo.publish import Upload, finish, publish, read_packages, read_state
from mxbuild.repo.sign import KEYRING_NAME, Signer
from mxbuild.repo.storage import CasConflict, LocalStorage

from ..conftest import Stopped, WriteStop, copy_gnupg_home, make_deb, quick_key

DATE = "Sat, 21 Nov 2026 12:00:00 UTC"


def entry(name, version, sha="0" * 64, depends=None):
    e = Packages()
    e["Package"] = name
    e["Version"] = version
    e["Architecture"] = "amd64"
    e["Maintainer"] = "mxbuild tests <tests@example.org>"
    if depends:
        e["Depends"] = depends
    e["Description"] = f"test {name}\n multi-line description"
    e["Filename"] = index.pool_key("cpu", name, f"{name}_{version}_amd64.deb")
    e["Size"] = "1234"
    e["MD5sum"] = "1" * 32
    e["SHA256"] = sha
    e["SHA512"] = "2" * 128
    return e


def test_packages_golden(golden):
    merged, added = index.merge([], [entry("libmxnet", "1.9.1-1~deb12", depends="libc6 (>= 2.34)"),
                                     entry("libmxnet", "1.10.0-1~deb12", "a" * 64),
                                     entry("libmxnet", "1.6.0-1~deb12", "b" * 64)])
    assert [e["Version"] for e in merged] == ["1.6.0-1~deb12", "1.9.1-1~deb12", "1.10.0-1~deb12"]
    golden("Packages", index.render_packages(merged).decode())


def test_release_golden(golden):
    files = index.compressed_variants(index.render_packages([entry("libmxnet", "1.9.1-1~deb12")]))
    text = index.render_release("bookworm", ["cpu"], [index.IndexFile.of(f"cpu/binary-amd64/{n}", d)
                                                      for n, d in files.items()], DATE)
    golden("Release", text)
    rel = index.parse_release(text)
    for field in ("Origin", "Label", "Suite", "Codename", "Date", "Architectures", "Components",
                  "Acquire-By-Hash", "SHA256", "SHA512"):
        assert field in rel, field
    assert rel["Date"].endswith("UTC")


def test_compressed_variants_are_deterministic_and_decompress():
    raw = index.render_packages([entry("libmxnet", "1.9.1-1~deb12")])
    a, b = index.compressed_variants(raw), index.compressed_variants(raw)
    assert a == b
    assert gzip.decompress(a["Packages.gz"]) == raw
    assert lzma.decompress(a["Packages.xz"]) == raw


def test_merge_keeps_old_versions_and_refuses_changed_content():
    merged, _ = index.merge([entry("libmxnet", "1.9.1-1~deb12")], [entry("libmxnet", "1.9.1-2~deb12")])
    assert len(merged) == 2
    same, added = index.merge(merged, [entry("libmxnet", "1.9.1-1~deb12")])
    assert added == [] and len(same) == 2
    with pytest.raises(RepoError, match="different content"):
        index.merge(merged, [entry("libmxnet", "1.9.1-1~deb12", "f" * 64)])


def test_pool_key_layout():
    assert index.pool_key("cpu", "libmxnet", "x.deb") == "pool/cpu/libm/libmxnet/x.deb"
    assert index.pool_key("cu112", "mxnet-thin", "y.deb") == "pool/cu112/m/mxnet-thin/y.deb"


# ------------------------------------------------------------------ storage

def test_local_storage_put_new_and_cas(tmp_path):
    s = LocalStorage(tmp_path / "repo")
    assert s.put_new("pool/a.deb", b"one") is True
    assert s.put_new("pool/a.deb", b"one") is False
    with pytest.raises(PoolConflictError) as info:
        s.put_new("pool/a.deb", b"two")
    assert "already exists with different content" in info.value.message
    assert (tmp_path / "repo/pool/a.deb").read_bytes() == b"one"
    token = s.put_cas("dists/x/InRelease", b"v1", None)
    with pytest.raises(CasConflict):
        s.put_cas("dists/x/InRelease", b"v2", None)
    with pytest.raises(CasConflict):
        s.put_cas("dists/x/InRelease", b"v2", "stale")
    s.put_cas("dists/x/InRelease", b"v2", token)
    assert s.get("dists/x/InRelease")[0] == b"v2"
    with pytest.raises(RepoError, match="escapes"):
        s.get("../outside")
    with pytest.raises(RepoError, match="escapes"):
        s.get("pool/../../outside/a.deb")


# ------------------------------------------------------------------ publish protocol

@pytest.fixture(scope="module")
def signer(tmp_path_factory, signing_key):
    with Signer(copy_gnupg_home(signing_key, tmp_path_factory.mktemp("key") / "gnupg")) as s:
        yield s


def test_publish_twice_keeps_both_versions_and_signs(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    v1 = make_deb(tmp_path, "libmxnet", "1.9.1-1~deb12", b"one")
    v2 = make_deb(tmp_path, "libmxnet", "1.9.1-2~deb12", b"two")
    r1 = publish(storage, signer, [Upload(v1, "bookworm", "cpu")])
    assert r1.added == ["bookworm/cpu/libmxnet_1.9.1-1~deb12_amd64"]
    r2 = publish(storage, signer, [Upload(v2, "bookworm", "cpu")])
    assert r2.added == ["bookworm/cpu/libmxnet_1.9.1-2~deb12_amd64"]
    state = read_state(storage, "bookworm", signer.public_keyring())
    assert [e["Version"] for e in read_packages(storage, state, "cpu")] == [
        "1.9.1-1~deb12", "1.9.1-2~deb12"]
    repo = tmp_path / "repo"
    assert (repo / "pool/cpu/libm/libmxnet" / v1.name).read_bytes() == v1.read_bytes()
    assert (repo / KEYRING_NAME).read_bytes() == signer.public_keyring()
    # Release.gpg verifies Release; InRelease carries the same text
    ring = tmp_path / "ring.gpg"
    ring.write_bytes(signer.public_keyring())
    subprocess.run(["gpgv", "--keyring", str(ring), str(repo / "dists/bookworm/Release.gpg"),
                    str(repo / "dists/bookworm/Release")], check=True, capture_output=True)
    assert state.release_text == (repo / "dists/bookworm/Release").read_text()
    # every index named by Release exists at its plain path and under by-hash, hashes match
    for name, named in state.files.items():
        plain = (repo / "dists/bookworm" / name).read_bytes()
        assert hashlib.sha256(plain).hexdigest() == named.sha256 and len(plain) == named.size
        by_hash = repo / "dists/bookworm" / name.rsplit("/", 1)[0] / "by-hash"
        assert (by_hash / "SHA256" / named.sha256).read_bytes() == plain
        assert (by_hash / "SHA512" / named.sha512).read_bytes() == plain
    # the old generation of the index is still there for clients holding the old InRelease
    assert len(list((repo / "dists/bookworm/cpu/binary-amd64/by-hash/SHA256").iterdir())) == 6


def test_republishing_same_deb_is_a_noop(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    deb = make_deb(tmp_path, "libmxnet", "1.9.1-1~deb12")
    publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
    before = (tmp_path / "repo/dists/bookworm/InRelease").read_bytes()
    result = publish(storage, signer, [Upload(deb, "bookworm", "cpu")])
    assert result.added == [] and result.skipped
    assert (tmp_path / "repo/dists/bookworm/InRelease").read_bytes() == before


def test_different_content_under_existing_pool_name_is_refused(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path / "a", "libmxnet", "1.9.1-1~deb12", b"A"),
                                     "bookworm", "cpu")])
    inrelease = (tmp_path / "repo/dists/bookworm/InRelease").read_bytes()
    other = make_deb(tmp_path / "b", "libmxnet", "1.9.1-1~deb12", b"B")
    with pytest.raises(PoolConflictError) as info:
        publish(storage, signer, [Upload(other, "bookworm", "cpu")])
    assert "bump the packaging revision" in info.value.hint
    assert (tmp_path / "repo/dists/bookworm/InRelease").read_bytes() == inrelease


def test_concurrent_commit_is_merged_not_lost(tmp_path, signer):
    """A publisher whose CAS loses re-reads the state and merges again."""
    storage = LocalStorage(tmp_path / "repo")
    first = make_deb(tmp_path, "libmxnet", "1.0-1")
    sneaky = make_deb(tmp_path, "libother", "2.0-1")
    raced = []

    def race(key):
        # right after our by-hash writes, another publisher commits first (once)
        if key == "by-hash" and not raced:
            raced.append(True)
            publish(storage, signer, [Upload(sneaky, "bookworm", "cpu")])
    result = publish(storage, signer, [Upload(first, "bookworm", "cpu")], after_write=race)
    assert result.attempts == 2
    state = read_state(storage, "bookworm", signer.public_keyring())
    assert sorted(e["Package"] for e in read_packages(storage, state, "cpu")) == [
        "libmxnet", "libother"]


def test_finish_completes_an_interrupted_publish(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    with pytest.raises(Stopped):          # stopped right after the commit (InRelease)
        publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm",
                                         "cpu")],
                after_write=WriteStop(when=lambda key: key.endswith("InRelease")))
    assert not (tmp_path / "repo/dists/bookworm/Release").exists()
    finish(storage, signer, "bookworm", signer.public_keyring())
    assert (tmp_path / "repo/dists/bookworm/Release").exists()
    assert (tmp_path / "repo/dists/bookworm/cpu/binary-amd64/Packages.xz").exists()


def test_tampered_inrelease_is_refused(tmp_path, signer):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    path = tmp_path / "repo/dists/bookworm/InRelease"
    path.write_text(path.read_text().replace("Label: mxbuild", "Label: evil"))
    with pytest.raises(SigningError, match="does not verify"):
        read_state(storage, "bookworm", signer.public_keyring())


def test_repository_of_another_key_is_refused(tmp_path, signer, short_tmp):
    storage = LocalStorage(tmp_path / "repo")
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", "1.0-1"), "bookworm", "cpu")])
    home = quick_key(short_tmp / "other-gnupg")      # a key that is not the repo's
    with Signer(home) as other, pytest.raises(SigningError, match="another key"):
        publish(storage, other, [Upload(make_deb(tmp_path, "libmxnet", "2.0-1"), "bookworm", "cpu")])


def test_junit_counts_report_gpu_checks(tmp_path):
    from mxbuild.smoke import junit_counts
    xml = tmp_path / "junit.xml"
    xml.write_text('<testsuites><testsuite tests="6" failures="0" errors="0" skipped="4">'
                   '</testsuite></testsuites>')
    cpu = junit_counts(xml)
    assert (cpu.tests, cpu.passed, cpu.skipped, cpu.gpu_checks) == (6, 2, 4, None)
    gpu = junit_counts(xml, {"libcudart.so.9.0": "cuda-cudart-9-0", "libcuda.so.1": "driver"},
                       gpu=False)
    assert gpu.gpu_checks == "skipped: no GPU"
    assert gpu.not_installable == ["cuda-cudart-9-0", "driver"]


def test_promote_copies_a_version_from_staging_without_uploading(tmp_path, signer):
    from mxbuild.errors import RepoError
    from mxbuild.repo import ops
    from mxbuild.repo.ops import promote, staging_suite
    storage = LocalStorage(tmp_path / "repo")
    deb = make_deb(tmp_path, "libmxnet", "1.9.1-1~deb12")
    publish(storage, signer, [Upload(deb, staging_suite("bookworm"), "cpu")])
    assert "bookworm" not in ops.suites(storage)
    pool_before = storage.list("pool/")
    added = promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "1.9.1-1~deb12")
    assert added == ["bookworm/cpu/libmxnet_1.9.1-1~deb12_amd64"]
    assert storage.list("pool/") == pool_before
    rows = ops.list_repo(storage, signer.public_keyring()).rows()
    assert ("bookworm", "cpu", "libmxnet", "1.9.1-1~deb12") in rows
    assert ("bookworm-staging", "cpu", "libmxnet", "1.9.1-1~deb12") in rows
    assert ops.verify(storage, signer.public_keyring()) == []
    assert promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "1.9.1-1~deb12") == []
    with pytest.raises(RepoError, match="not in bookworm-staging/cpu"):
        promote(storage, signer, "bookworm", "cpu", ["libmxnet"], "1.9.1-2~deb12")


def test_indexes_are_reproducible(tmp_path, signer):
    """The same .deb published into two fresh repositories gives byte-identical Packages
    files and Release files that differ only in their Date (signatures aside: an OpenPGP
    signature carries its own creation time)."""
    deb = make_deb(tmp_path, "libmxnet", "1.9.1-2~deb12")
    texts = []
    for name, date in (("a", "Sat, 21 Nov 2026 10:00:00 UTC"), ("b", "Sun, 22 Nov 2026 11:00:00 UTC")):
        storage = LocalStorage(tmp_path / name)
        publish(storage, signer, [Upload(deb, "bookworm", "cpu")], date=date)
        base = tmp_path / name / "dists/bookworm"
        texts.append(((base / "cpu/binary-amd64/Packages").read_bytes(),
                      (base / "cpu/binary-amd64/Packages.xz").read_bytes(),
                      (base / "Release").read_text()))
    (pa, xa, ra), (pb, xb, rb) = texts
    assert pa == pb and xa == xb
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("Date:")]  # noqa: E731
    assert ra != rb and strip(ra) == strip(rb)
