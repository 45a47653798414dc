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
