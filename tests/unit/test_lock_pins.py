"""`invoke lock` writes every pin pins.lock holds, the CUDA toolkit images too, and no
error sends anyone to edit pins.lock by hand: each points to the `invoke lock` command."""
import ast
import dataclasses
import json
import re
from types import SimpleNamespace

import pytest

from mxbuild import images
from mxbuild.errors import ImageError
from mxbuild.matrix import load
from mxbuild.recipes.compile import compile_spec
from mxbuild.pins import Pins

from ..conftest import ROOT

MATRIX = load(ROOT / "matrix.yaml")
CU113 = "nvidia/cuda:11.3.0-cudnn8-devel-ubuntu20.04"
CU116 = "nvidia/cuda:11.6.0-cudnn8-devel-ubuntu20.04"
OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def _cells(distro):
    return [c for c in MATRIX.cells if c.distro.name == distro]


def test_the_toolkit_images_lock_resolves_are_those_of_the_selected_cells():
    assert images.toolkit_images(_cells("ubuntu20")) == [CU113, CU116]
    assert images.toolkit_images(_cells("debian12")) == []
    # every toolkit image the matrix names is one pins.lock holds (written by lock)
    assert images.toolkit_images(MATRIX.cells) == sorted(Pins.load(ROOT / "pins.lock").toolkits)


def test_lock_writes_the_toolkit_digests_it_resolves(tmp_path):
    path = tmp_path / "pins.lock"
    pins = Pins(path, {"debian12": {"id": "sha256:base"}}, {CU113: OLD})
    pins, news = images.lock_toolkits(pins, [CU113, CU116], {CU113: OLD, CU116: NEW}.__getitem__)
    pins.write()
    doc = json.loads(path.read_text())
    assert doc["toolkits"] == {CU113: OLD, CU116: NEW}
    assert doc["bases"] == {"debian12": {"id": "sha256:base"}}
    assert news == [f"= {CU113}: {OLD} (unchanged)", f"✓ {CU116}: {NEW}"]
    assert Pins.load(path).toolkit_ref(CU116) == f"{CU116}@{NEW}"


def test_a_changed_toolkit_digest_replaces_the_old_one(tmp_path):
    pins = Pins(tmp_path / "pins.lock", {}, {CU113: OLD})
    pins, news = images.lock_toolkits(pins, [CU113], lambda image: NEW)
    assert pins.toolkits == {CU113: NEW}
    assert news == [f"✓ {CU113}: {NEW} (was {OLD})"]


def _unreachable(docker_client):
    # a registry on a loopback port nothing listens on: the engine's pull fails at once
    return lambda image: images.registry_digest(docker_client, image, "load it")


def test_an_unreachable_pinned_toolkit_keeps_its_pin(docker_client, tmp_path):
    image = "127.0.0.1:9/mxbuild-test/toolkit:1"
    pins = Pins(tmp_path / "pins.lock", {}, {image: OLD})
    pins, news = images.lock_toolkits(pins, [image], _unreachable(docker_client))
    assert pins.toolkits == {image: OLD}
    assert len(news) == 1 and news[0].startswith(f"! {image}: kept {OLD} (cannot resolve")


def test_an_unreachable_unpinned_toolkit_fails_after_writing_the_rest(docker_client, tmp_path):
    image = "127.0.0.1:9/mxbuild-test/toolkit:1"
    path = tmp_path / "pins.lock"
    pins = Pins(path, {"debian12": {"id": "sha256:base"}}, {})
    with pytest.raises(ImageError) as err:
        images.lock_toolkits(pins, [CU113, image],
                             lambda i: NEW if i == CU113 else _unreachable(docker_client)(i))
    assert image in err.value.message and "invoke lock" in err.value.hint
    written = json.loads(path.read_text())
    assert written["bases"] == {"debian12": {"id": "sha256:base"}}
    assert written["toolkits"] == {CU113: NEW}


def test_an_unpinned_toolkit_points_to_invoke_lock(tmp_path):
    spec, cell = next((compile_spec(c), c) for c in MATRIX.cells
                      if compile_spec(c) and compile_spec(c).toolkit_image)
    ctx = SimpleNamespace(opts=SimpleNamespace(pins_path=tmp_path / "empty.lock"))
    with pytest.raises(ImageError) as err:
        images.ensure_compile_image(ctx, cell, None, None, spec.toolkit_image)
    assert err.value.hint == (f"pin it: invoke lock --distro {cell.distro.name} (pulls it and "
                              "records its digest)")


def test_an_unpinned_registry_base_points_to_invoke_lock(tmp_path):
    distro = dataclasses.replace(MATRIX.distros["debian12"],
                                 base=dataclasses.replace(MATRIX.distros["debian12"].base,
                                                          image="debian:12", bootstrap=None))
    with pytest.raises(ImageError) as err:
        images._registry_base(None, distro, Pins(tmp_path / "pins.lock"))
    assert err.value.hint.startswith("pin it: invoke lock --distro debian12")
    assert "by hand" not in err.value.hint


def _error_calls(path):
    """(source text of each XxxError(...) call in a module)."""
    text = path.read_text()
    data = text.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith("Error"):
            # ast.get_source_segment splits the whole text again for every call (seconds
            # over the package); offsets are UTF-8 byte columns
            yield data[starts[node.lineno - 1] + node.col_offset:
                       starts[node.end_lineno - 1] + node.end_col_offset].decode()


def test_no_fix_hint_asks_to_edit_pins_lock():
    """Every error that names pins.lock points to `invoke lock` (its one writer) or to git,
    never to an edit by hand."""
    offenders = [f"{path.relative_to(ROOT)}: {call[:100]}"
                 for path in sorted((ROOT / "mxbuild").rglob("*.py"))
                 for call in _error_calls(path)
                 if re.search(r"pins\.lock|pins file", call)
                 and (re.search(r"by hand|add it under|\bedit", call) or (
                     "invoke lock" not in call and "restore it from git" not in call))]
    assert offenders == []
