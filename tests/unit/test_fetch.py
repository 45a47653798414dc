import hashlib

import pytest

from mxbuild.errors import ChecksumError, ImageError
from mxbuild.fetch import cas_path, fetch_wheel, verify
from mxbuild.bootstrap import verify_archive_key
from mxbuild.matrix import BootstrapSpec, WheelPin


def _pin(data: bytes, sha=None) -> WheelPin:
    return WheelPin("mxnet", "1.9.1", "mxnet-1.9.1-py3-none-any.whl",
                    sha or hashlib.sha256(data).hexdigest(), ())


def test_verify_mismatch_names_both_hashes_and_the_fix(tmp_path):
    f = tmp_path / "w.whl"
    f.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError) as info:
        verify(f, "0" * 64, "w.whl")
    assert hashlib.sha256(b"corrupt").hexdigest() in info.value.message
    assert "0" * 64 in info.value.message
    assert info.value.exit_code == 4


def test_corrupt_wheel_never_enters_the_cache(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    good = b"the real wheel"
    pin = _pin(good)
    (src / pin.filename).write_bytes(b"the real whee1")   # one byte flipped
    monkeypatch.setenv("MXBUILD_WHEEL_DIR", str(src))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError):
        fetch_wheel(pin, cache)
    assert not cas_path(cache, pin.sha256, pin.filename).exists()
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_an_interrupted_download_leaves_no_half_file(tmp_path):
    from mxbuild.fetch import _store

    def interrupted(f):
        f.write(b"half a wheel")
        raise KeyboardInterrupt
    dest = tmp_path / "cache/ab/w.whl"
    with pytest.raises(KeyboardInterrupt):
        _store(dest, "0" * 64, "w.whl", interrupted)
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_good_wheel_is_cached_by_content(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    pin = _pin(b"wheel bytes")
    (src / pin.filename).write_bytes(b"wheel bytes")
    monkeypatch.setenv("MXBUILD_WHEEL_DIR", str(src))
    path = fetch_wheel(pin, tmp_path / "cache")
    assert path == cas_path(tmp_path / "cache", pin.sha256, pin.filename)
    (src / pin.filename).unlink()
    assert fetch_wheel(pin, tmp_path / "cache") == path   # served from the cache
    path.write_bytes(b"rotted")
    with pytest.raises(ChecksumError, match="cached"):
        fetch_wheel(pin, tmp_path / "cache")


def test_archive_key_must_be_in_the_keyring(tmp_path):
    spec = BootstrapSpec("bookworm", "http://deb.debian.org/debian",
                         "/usr/share/keyrings/debian-archive-keyring.gpg",
                         "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8", ("main",))
    out = verify_archive_key(spec, tmp_path / "k.gpg")
    assert out.stat().st_size > 0
    wrong = BootstrapSpec(spec.suite, spec.mirror, spec.keyring, "0" * 40, ("main",))
    with pytest.raises(ImageError, match="is not in"):
        verify_archive_key(wrong, tmp_path / "k2.gpg")
    missing = BootstrapSpec(spec.suite, spec.mirror, str(tmp_path / "none.gpg"),
                            spec.key_fingerprint, ("main",))
    with pytest.raises(ImageError, match="does not exist"):
        verify_archive_key(missing, tmp_path / "k3.gpg")


def test_pinned_download_is_refused_on_mismatch(tmp_path):
    import functools
    import http.server
    import threading
    from mxbuild.fetch import fetch_pinned
    (tmp_path / "www").mkdir()
    (tmp_path / "www/keyring_1_all.deb").write_bytes(b"not the pinned bytes")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/keyring_1_all.deb"
        with pytest.raises(ChecksumError):
            fetch_pinned(url, "0" * 64, tmp_path / "cache")
        assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
        good = hashlib.sha256(b"not the pinned bytes").hexdigest()
        path = fetch_pinned(url, good, tmp_path / "cache")
        assert path.read_bytes() == b"not the pinned bytes"
    finally:
        server.shutdown()
        server.server_close()


def test_a_shared_wheel_directory_is_hard_linked_not_copied(tmp_path, monkeypatch):
    """GPU wheels are up to 1.3 GB: an agent's cache links the shared copy (same
    filesystem), still checked against the pin."""
    src = tmp_path / "shared"
    src.mkdir()
    pin = _pin(b"big wheel")
    (src / pin.filename).write_bytes(b"big wheel")
    monkeypatch.setenv("MXBUILD_WHEEL_DIR", str(src))
    path = fetch_wheel(pin, tmp_path / "cache")
    assert path.read_bytes() == b"big wheel"
    assert path.stat().st_ino == (src / pin.filename).stat().st_ino
    assert [p.name for p in path.parent.iterdir()] == [pin.filename]   # no temporary left
