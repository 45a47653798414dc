"""The stage cache: keys, atomic entries, forcing."""
from __future__ import annotations

from mxbuild.cache import StageCache, key_of, tree_digest


def test_key_changes_with_any_input_and_not_with_order():
    a = key_of("package", {"deb": "x", "packaging": "p1"})
    assert a == key_of("package", {"packaging": "p1", "deb": "x"})
    assert a != key_of("package", {"deb": "x", "packaging": "p2"})
    assert a != key_of("recipe", {"deb": "x", "packaging": "p1"})


def test_tree_digest_sees_content_and_names(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a").write_text("1")
    one = tree_digest(tmp_path / "d")
    (tmp_path / "d/a").write_text("2")
    two = tree_digest(tmp_path / "d")
    (tmp_path / "d/a").rename(tmp_path / "d/b")
    assert len({one, two, tree_digest(tmp_path / "d")}) == 3


def test_put_then_get_and_force(tmp_path):
    src = tmp_path / "lib.so"
    src.write_bytes(b"payload")
    cache = StageCache(tmp_path / "cache")
    key = key_of("recipe", {"wheel": "abc"})
    assert cache.get("recipe", key) is None
    entry = cache.put("recipe", key, {"payload/lib.so": src}, {"files": {"lib.so": "h"}})
    got_entry, manifest = cache.get("recipe", key)
    assert got_entry == entry and manifest == {"files": {"lib.so": "h"}}
    assert (entry / "payload/lib.so").read_bytes() == b"payload"
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".tmp-")]
    assert StageCache(tmp_path / "cache", frozenset({"recipe"})).get("recipe", key) is None
    assert StageCache(tmp_path / "cache", frozenset({"all"})).get("recipe", key) is None
    assert StageCache(tmp_path / "cache", frozenset({"smoke"})).get("recipe", key) is not None


def test_an_entry_without_manifest_is_not_served(tmp_path):
    cache = StageCache(tmp_path / "cache")
    key = key_of("package", {})
    (tmp_path / "cache/package" / key[:2] / key).mkdir(parents=True)   # a stopped writer
    assert cache.get("package", key) is None
    src = tmp_path / "x.deb"
    src.write_bytes(b"deb")
    cache.put("package", key, {"x.deb": src}, {"deb": "x.deb"})     # replaces the leftover
    assert cache.get("package", key)[1] == {"deb": "x.deb"}


def _entry_files(tmp_path):
    src = tmp_path / "src"
    (src / "payload").mkdir(parents=True)
    (src / "payload/lib.so").write_bytes(b"payload" * 1000)
    (src / "lintian.txt").write_text("lintian-exit=0\n")
    return {"payload/lib.so": src / "payload/lib.so", "lintian.txt": src / "lintian.txt"}


def test_artifact_cache_serves_an_empty_machine(tmp_path):
    """Agent A builds and stores; agent B, with an empty local cache, fetches instead of
    building (here the artifact cache is a shared directory; S3: integration tier)."""
    from mxbuild.repo.storage import LocalStorage
    shared = LocalStorage(tmp_path / "shared")
    key = key_of("package", {"deb": "x"})
    a = StageCache(tmp_path / "a", remote=shared)
    a.put("package", key, _entry_files(tmp_path), {"deb": "x.deb", "size": 7000})
    assert any(o.key.endswith("/index.json") for o in shared.list("stages/package"))

    b = StageCache(tmp_path / "b", remote=shared)
    assert b.has("package", key) == {"deb": "x.deb", "size": 7000}
    assert not (tmp_path / "b").exists()                  # has() downloads nothing
    entry, manifest = b.get("package", key)
    assert manifest == {"deb": "x.deb", "size": 7000}
    assert (entry / "payload/lib.so").read_bytes() == b"payload" * 1000
    assert str(entry).startswith(str(tmp_path / "b"))   # now local: the next get is local
    assert StageCache(tmp_path / "b").get("package", key)[1] == manifest
    assert StageCache(tmp_path / "c", frozenset({"package"}), remote=shared).get(
        "package", key) is None                            # --force-stage package
    assert StageCache(tmp_path / "c", remote=shared).get("recipe", key) is None


def test_artifact_cache_entry_with_wrong_bytes_is_not_used(tmp_path, caplog):
    from mxbuild.repo.storage import LocalStorage
    shared = LocalStorage(tmp_path / "shared")
    key = key_of("package", {"deb": "y"})
    StageCache(tmp_path / "a", remote=shared).put("package", key, _entry_files(tmp_path), {})
    (next(p for p in (tmp_path / "shared").rglob("lib.so"))).write_bytes(b"tampered")
    b = StageCache(tmp_path / "b", remote=shared)
    assert b.get("package", key) is None
    assert "not the bytes its index names" in caplog.text
    assert b._local("package", key) is None


def test_unreachable_artifact_cache_is_a_warning_not_a_failure(tmp_path, caplog):
    from mxbuild.repo.s3 import S3Storage, S3Target
    down = S3Storage(S3Target.parse("s3://cache/x", endpoint_url="http://127.0.0.1:9",
                                    region="us-east-1", path_style=True),
                     max_attempts=1, rounds=1)
    cache = StageCache(tmp_path / "a", remote=down)
    key = key_of("package", {"deb": "z"})
    assert cache.get("package", key) is None
    entry = cache.put("package", key, _entry_files(tmp_path), {"deb": "z.deb"})
    assert (entry / "lintian.txt").is_file()               # stored locally all the same
    assert cache.get("package", key)[1] == {"deb": "z.deb"}
    assert "artifact cache s3://cache/x" in caplog.text
