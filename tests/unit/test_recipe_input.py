"""A recipe with an input of its own — a URL and its sha256, in the recipe's own block of a
build in the matrix (`builds[i].<recipe name>`) — registered from this test module with no
edit anywhere else: the matrix gives the block to the recipe, the recipe parses it, the
cell carries what it made of it (Cell.recipe_config, which names no recipe), and the
recipe fetches its input, verified, when it produces the payload."""
from __future__ import annotations

import copy
import hashlib
import http.server
import re
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import yaml

from mxbuild import matrix, plugins, recipes
from mxbuild.errors import ChecksumError, MatrixError
from mxbuild.fetch import fetch_pinned, sha256_file
from mxbuild.payload import Payload

from ..conftest import ROOT

NAME = "toy-input"
BLOB = b"\x7fELF toy libmxnet, fetched by its recipe\n"


@dataclass(frozen=True)
class ToyInput:
    url: str
    sha256: str


class ToyInputRecipe(recipes.Recipe):
    """libmxnet.so is a file at a URL, pinned by its sha256 in the recipe's own block."""
    name = NAME

    def parse_config(self, block, key, check):
        spec = check.mapping(block, key, {"url": "an http(s) URL of the library",
                                          "sha256": "64 lowercase hex"})
        return ToyInput(
            check.string(spec["url"], f"{key}.url", re.compile(r"^https?://\S+$"),
                         "an http(s) URL"),
            check.string(spec["sha256"], f"{key}.sha256", re.compile(r"^[0-9a-f]{64}$"),
                         "64 lowercase hex digits"))

    def cache_inputs(self, ctx, cell, build_ref):
        return {"input": cell.recipe_config.sha256}

    def produce(self, ctx, cell, images, logf):
        pin = cell.recipe_config
        got = fetch_pinned(pin.url, pin.sha256, ctx.opts.cache_dir / "downloads")
        out = ctx.opts.work_dir / cell.id / "payload"
        out.mkdir(parents=True)
        (out / "libmxnet.so").write_bytes(got.read_bytes())
        return recipes.Produced(Payload(out, {"libmxnet.so": sha256_file(out / "libmxnet.so")},
                                        {}, pin.url, 1652763094))


@pytest.fixture(scope="module", autouse=True)
def registered():
    recipes.register(ToyInputRecipe())
    yield
    plugins.unregister_recipe(NAME)
    plugins.unregister_recipe("toy-plain")


@pytest.fixture
def served(tmp_path):
    """BLOB at an URL of a loopback HTTP server (port 0: the kernel picks a free one)."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "libtoy.so").write_bytes(BLOB)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/libtoy.so", tmp_path / "www"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _doc(block, recipe=NAME):
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    cpu = copy.deepcopy(doc["variants"]["cpu"])
    build = dict(cpu["builds"][0], recipe=recipe, distros=["debian12"])
    if block is not None:
        build[NAME] = block
    cpu["builds"] = [build]
    doc["variants"] = {"cpu": cpu}
    return doc


SHA = hashlib.sha256(BLOB).hexdigest()


def test_the_recipe_parses_its_own_block_into_the_cell():
    (cell,) = matrix.parse(_doc({"url": "https://example.org/libtoy.so", "sha256": SHA})).cells
    assert cell.recipe == NAME
    assert cell.recipe_config == ToyInput("https://example.org/libtoy.so", SHA)


def test_the_recipe_s_own_checks_name_the_key():
    with pytest.raises(MatrixError) as err:
        matrix.parse(_doc({"url": "https://example.org/libtoy.so", "sha256": "abc"}))
    assert err.value.key_path == f"variants.cpu.builds[0].{NAME}.sha256"
    with pytest.raises(MatrixError) as err:
        matrix.parse(_doc({"url": "https://example.org/libtoy.so"}))
    assert err.value.key_path == f"variants.cpu.builds[0].{NAME}.sha256"


def test_a_block_belongs_to_the_build_s_own_recipe_only():
    """Another recipe's build may not carry the block (an unknown key there)."""
    with pytest.raises(MatrixError) as err:
        matrix.parse(_doc({"url": "https://example.org/libtoy.so", "sha256": SHA},
                          recipe="wheel"))
    assert err.value.key_path == f"variants.cpu.builds[0].{NAME}"
    assert "unknown key" in err.value.message


def test_a_recipe_named_like_a_build_key_keeps_that_key():
    """"wheel" is also a build's key (the official wheel's pin): it stays the pin."""
    (cell,) = matrix.parse(_doc(None, recipe="wheel")).cells
    assert cell.recipe_config is None and cell.official_wheel is not None


def test_a_recipe_that_parses_no_block_refuses_one():
    class Plain(recipes.Recipe):
        name = "toy-plain"
    recipes.register(Plain())
    doc = _doc(None, recipe="toy-plain")
    doc["variants"]["cpu"]["builds"][0]["toy-plain"] = {"url": "https://example.org/x"}
    with pytest.raises(MatrixError) as err:
        matrix.parse(doc)
    assert err.value.key_path == "variants.cpu.builds[0].toy-plain"


def test_the_recipe_fetches_its_input_verified(served, tmp_path):
    url, www = served
    (cell,) = matrix.parse(_doc({"url": url, "sha256": SHA})).cells
    ctx = SimpleNamespace(opts=SimpleNamespace(cache_dir=tmp_path / "cache",
                                               work_dir=tmp_path / "work"))
    recipe = recipes.get(NAME)
    produced = recipe.produce(ctx, cell, None, None)
    assert (produced.payload.dir / "libmxnet.so").read_bytes() == BLOB
    assert recipe.cache_inputs(ctx, cell, "ref") == {"input": SHA}

    (www / "libtoy.so").write_bytes(BLOB + b"tampered")
    ctx = SimpleNamespace(opts=SimpleNamespace(cache_dir=tmp_path / "cache2",
                                               work_dir=tmp_path / "work2"))
    with pytest.raises(ChecksumError):
        recipe.produce(ctx, cell, None, None)
