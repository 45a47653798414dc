"""The cell model names no recipe: what a recipe takes from matrix.yaml (a jar pin, a source
release, a compile preset, where scala-package is built) is parsed by the recipe and
carried generically (Cell.inputs, Cell.recipe_config). A toy recipe with an input of its
own at the top level of the matrix is registered from this module with no edit elsewhere:
the schema lets its key through, the recipe parses it (its complaints naming the key
path), the cells carry it, and an unregistered recipe's key stays an unknown key."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from mxbuild import matrix, plugins, recipes
from mxbuild.errors import MatrixError
from mxbuild.matrix import Cell

from ..conftest import ROOT

MATRIX = matrix.load(ROOT / "matrix.yaml")
TOY = "toy-mirror"
KEY = "toy_mirrors"      # the toy recipe's own top-level key


def _recipes():
    plugins.load_all()
    return [plugins.recipe(name) for name in plugins.recipe_names()]


def _owned_keys(found) -> set[str]:
    return {key for r in found for level in r.matrix_keys.values() for key in level}


def test_no_field_of_a_cell_is_named_after_a_recipe_or_its_inputs():
    found = _recipes()
    names = {f.name for f in dataclasses.fields(Cell)}
    words = {r.name for r in found} | {r.input_name for r in found} | _owned_keys(found)
    words |= {w.replace("-", "_") for w in words}
    assert names.isdisjoint(words), names & words
    # the owned keys are those the recipes of the table parse today
    assert {"sources", "compile", "jar", "jvm_build"} <= _owned_keys(found)


def _with_a_maven_build() -> matrix.Matrix:
    """The matrix with one more cell, built by recipe maven (matrix.yaml has none today)."""
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    build = dict(doc["variants"]["cpu"]["builds"][0], recipe="maven", mxnet="1.5.1",
                 distros=["debian12"], packages=["libmxnet", "libmxnet-scala"],
                 jar={"group": "org.apache.mxnet", "version": "1.5.1", "sha256": "a" * 64,
                      "artifact": "mxnet-full_2.11-linux-x86_64-cpu"})
    doc["variants"]["cpu"]["builds"].append(build)
    return matrix.parse(doc)


WITH_MAVEN = _with_a_maven_build()


def test_no_field_of_a_cell_has_a_recipe_s_input_type():
    """The types the recipes parse their inputs into are theirs: Cell's annotations do not
    name them, and the matrix package does not define them."""
    inputs = [value for cell in WITH_MAVEN.cells for _, value in cell.inputs]
    inputs += [v for value in inputs for v in vars(value).values()]
    # the types defined by the recipes' modules
    types = {type(v).__name__ for v in inputs
             if type(v).__module__.startswith("mxbuild.recipes.")}
    assert {"CompileInputs", "CompileSpec", "SourcePin", "JarPin", "JvmBuildSpec"} <= types
    annotations = " ".join(str(f.type) for f in dataclasses.fields(Cell))
    assert not [t for t in types if re.search(rf"\b{t}\b", annotations)]
    assert not [t for t in types if hasattr(matrix, t)]


def test_every_recipe_reaches_its_inputs_through_itself():
    cpu = WITH_MAVEN.select(cell="1.9.1-cpu-debian12")[0]
    compile_recipe = recipes.get("compile")
    assert compile_recipe.inputs(cpu).spec.preset == "linux_cpu"
    assert compile_recipe.inputs(cpu).source.version == "1.9.1"
    maven = next(c for c in WITH_MAVEN.cells if c.recipe == "maven")
    assert recipes.get("maven").inputs(maven).artifact == "mxnet-full_2.11-linux-x86_64-cpu"
    assert recipes.get("maven").inputs(cpu) is None       # its build pins no jar
    # the two JVM recipes parse one key once: one input, under one name
    assert recipes.get("wheel-jvm").inputs(cpu) is recipes.get("compile-jvm").inputs(cpu)
    assert recipes.get("wheel-jvm").inputs(cpu).jdk
    assert recipes.get("wheel").inputs(cpu) is None       # it harvests cell.official_wheel


@dataclasses.dataclass(frozen=True)
class ToyMirror:
    url: str


class ToyMirrorRecipe(recipes.Recipe):
    """Takes a mirror per MXNet version from a top-level key of its own."""
    name = TOY
    matrix_keys = {"matrix": {KEY: "a mapping of mxnet version to a mirror URL"}}

    def parse_inputs(self, scope, check):
        if KEY not in scope.doc:
            return None
        mirrors = scope.once(KEY, lambda: _mirrors(check, scope.doc[KEY]))
        return mirrors.get(scope.mxnet)


def _mirrors(check, spec) -> dict[str, ToyMirror]:
    if not isinstance(spec, dict):
        check.fail(KEY, f"is {spec!r}", "a mapping of mxnet version to a mirror URL")
    return {version: ToyMirror(check.string(url, f"{KEY}.{version}", re.compile(r"^https?://"),
                                            "an http(s) URL"))
            for version, url in spec.items()}


def _doc(mirrors):
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    cpu = doc["variants"]["cpu"]
    cpu["builds"] = [dict(cpu["builds"][0], recipe=TOY, distros=["debian12"])]
    doc["variants"] = {"cpu": cpu}
    if mirrors is not None:
        doc[KEY] = mirrors
    return doc


@pytest.fixture
def toy():
    recipes.register(ToyMirrorRecipe())
    yield recipes.get(TOY)
    plugins.unregister_recipe(TOY)


def test_a_toy_recipe_s_top_level_key_reaches_its_cells(toy):
    version = _doc(None)["variants"]["cpu"]["builds"][0]["mxnet"]
    (cell,) = matrix.parse(_doc({version: "https://mirror.example.org/mxnet"})).cells
    assert cell.recipe == TOY and toy.inputs(cell) == ToyMirror("https://mirror.example.org/mxnet")
    # another recipe chosen for the cell still sees it (--recipe keeps every input)
    assert recipes.with_recipe(cell, "wheel").input_of(TOY) == toy.inputs(cell)


def test_a_toy_recipe_s_complaints_name_its_key(toy):
    with pytest.raises(MatrixError) as err:
        matrix.parse(_doc({"1.9.1": "ftp://mirror.example.org"}))
    assert err.value.key_path == f"{KEY}.1.9.1" and "http(s) URL" in err.value.hint


def test_an_unregistered_recipe_s_key_is_unknown():
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    doc[KEY] = {"1.9.1": "https://mirror.example.org/mxnet"}
    with pytest.raises(MatrixError) as err:
        matrix.parse(doc)
    assert err.value.key_path == KEY and "unknown key" in err.value.message
