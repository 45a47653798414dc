"""The interface every recipe provides, and its registration in the plug-in table
(mxbuild/plugins.py)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING

from .. import plugins
from ..errors import SelectionError
from ..matrix import Cell, PackageSpec
from ..payload import Payload

if TYPE_CHECKING:
    from ..context import RunContext
    from ..images import ImageRef
    from ..matrix import BuildScope


@dataclass(frozen=True)
class CellImages:
    """What the image stage made for a cell."""
    base: "ImageRef"
    build: "ImageRef"
    runtime: "ImageRef"


@dataclass(frozen=True)
class Produced:
    payload: Payload
    report: dict = field(default_factory=dict)   # extra report.json keys, e.g. "compile"


class Recipe:
    """One way to produce a cell's payload. Subclasses set `name` and implement
    `produce`; the rest has defaults."""
    name: str = ""
    # what `invoke plan` says when the stage cache holds this recipe's output
    reuse_reason: str = "stage cache: same inputs"
    # whether --source-tarball / --source-dir mean anything to it
    takes_source: bool = False
    # whether it builds libmxnet.so from the source, so that MXNet's own tests
    # (matrix `upstream_tests`) must pass on it: the upstream stage
    runs_upstream_tests: bool = False

    # the matrix.yaml keys this recipe parses itself (parse_inputs), by where they are
    # ("matrix": top level, "variant": variants.<v>, "build": a build), with the form
    # each expects (the schema lets them through, the reference lists them)
    matrix_keys: Mapping[str, Mapping[str, str]] = {}

    @property
    def input_name(self) -> str:
        """What its inputs are called in Cell.inputs: its name (recipes of one module that
        parse the same keys share one)."""
        return self.name

    def parse_inputs(self, scope: "BuildScope", check) -> object:
        """What this recipe makes of its matrix_keys for the cells of one build (a frozen
        value the cells carry: `inputs(cell)`), or None. `scope`: the build, its variant
        and the matrix, raw; `check`: the schema's checker, whose failures name the file,
        the key path and the expected form. Default: none."""
        return None

    def inputs(self, cell: Cell) -> object:
        """What parse_inputs made for `cell`, or None."""
        return cell.input_of(self.input_name)

    def pinned_images(self, cell: Cell) -> tuple[str, ...]:
        """Registry images (name:tag) this recipe builds `cell` FROM, whose digests
        `invoke lock` records in pins.lock. Default: none."""
        return ()

    def unfit(self, cell: Cell) -> tuple[str, str] | None:
        """Why this recipe cannot build `cell` — (problem, fix) — or None."""
        return None

    def parse_config(self, block, key: str, check) -> object:
        """This recipe's own block of a build (`builds[i].<name>` in the matrix) as its cells
        carry it (Cell.recipe_config: a frozen value). `check`: the schema's checker
        (mapping, string, str_list, version, fail), whose failures name `key`.
        Default: the recipe takes no block of its own."""
        check.fail(key, "is given", f"no such block: recipe {self.name} takes none")

    def builds_for(self, cell: Cell) -> str | None:
        """Why this recipe cannot make natives for `cell.arch` (what it takes them from), or
        None. Default: any architecture."""
        return None

    def arch_unfit(self, cell: Cell) -> tuple[str, str] | None:
        """`builds_for` as an unfit (problem, fix): the fix names the recipes that serve
        the architecture."""
        why = self.builds_for(cell)
        if why is None:
            return None
        serving = [n for n in plugins.recipe_names()
                   if plugins.recipe(n).builds_for(cell) is None]
        if serving:
            fix = (f"{cell.arch.name} cells are built by recipe {' or '.join(serving)}: "
                   f"--recipe {serving[0]}, or that recipe in the build of matrix.yaml")
        else:
            fix = f"drop {cell.arch.name} from the build's architectures"
        return f"recipe {self.name} cannot build {cell.arch.name}: {why}", fix

    def adapt(self, cell: Cell, catalog: Mapping[str, PackageSpec]) -> Cell:
        """The cell as this recipe builds it when chosen with --recipe: a recipe that makes
        more than the matrix's build ships adds those packages from `catalog` (matrix.yaml
        `packages:`). Default: the cell as it is."""
        return cell

    def cache_inputs(self, ctx: "RunContext", cell: Cell, build_ref: str) -> dict | None:
        """Everything the payload depends on (its stage-cache key), or None: never cached
        (the compile recipe has ccache instead)."""
        return None

    def produce(self, ctx: "RunContext", cell: Cell, images: CellImages,
                logf: IO[str]) -> Produced:
        raise NotImplementedError

    def plan(self, ctx: "RunContext", cell: Cell) -> tuple[str, str]:
        """(action, why) of `invoke plan` when nothing is cached: run | fail."""
        return "run", f"recipe {self.name}"

    def package_image(self, ctx: "RunContext", cell: Cell, images: CellImages,
                      logf: IO[str]) -> "ImageRef":
        """The image the package stage runs dpkg-shlibdeps in: it must have installed
        every library the payload links that the distro ships (the build image has the
        runtime libraries an official binary needs)."""
        return images.build


def register(recipe: Recipe) -> Recipe:
    """Recipes are code; they register once at import, like entry points (the plug-in
    table names the built-in ones' modules)."""
    if not recipe.name:
        raise ValueError("a recipe needs a name")
    plugins.register_recipe(recipe)
    return recipe


def names() -> tuple[str, ...]:
    return plugins.recipe_names()


def get(name: str) -> Recipe:
    return plugins.recipe(name)


def with_recipe(cell: Cell, name: str,
                catalog: Mapping[str, PackageSpec] | None = None) -> Cell:
    """This cell built by another recipe (adapted to what it ships, from `catalog`: the
    matrix's packages); SelectionError if the matrix cannot."""
    recipe = get(name)
    cell = recipe.adapt(cell, catalog or {})
    unfit = recipe.unfit(cell)
    if unfit:
        raise SelectionError(f"{cell.id}: {unfit[0]}", unfit[1])
    # another recipe's own block means nothing to this one
    return cell if name == cell.recipe else replace(cell, recipe=name, recipe_config=None)
