"""`invoke plan`: what a build of the selected cells would do per stage — build, reuse or
skip, and why — without doing any of it (no image is built, nothing is downloaded)."""
from __future__ import annotations

from dataclasses import dataclass

from . import images, recipes
from .context import RunContext
from .errors import DockerEngineError
from .matrix import Cell
from .repo.publish import published_entries
from .upstream.stage import not_here


@dataclass(frozen=True)
class Step:
    cell: str
    stage: str
    action: str      # build | load | reuse | run | skip | fail
    reason: str


def engine_or_none():
    """The Docker engine, or None: plan as if none answered."""
    try:
        from .engine import client
        return client(timeout=10)
    except DockerEngineError:
        return None


def plan(cells: list[Cell], ctx: RunContext, *, keyring: bytes | None = None,
         do_smoke: bool = True) -> list[Step]:
    """ctx.storage None: nothing is published (and so no smoke); ctx.docker None: no
    engine answers."""
    from .pipeline import package_key, recipe_key
    steps: list[Step] = []
    for cell in cells:
        planned = images.planned_images(ctx, cell) if ctx.docker is not None else None
        steps.append(_image_step(cell, planned))
        build_ref = _build_ref(planned)
        recipe = recipes.get(cell.recipe)
        key = recipe_key(ctx, cell, build_ref) if build_ref else None
        recipe_manifest = ctx.cache.has("recipe", key) if key else None
        if recipe_manifest is None:
            steps.append(Step(cell.id, "recipe", *recipe.plan(ctx, cell)))
        else:
            steps.append(Step(cell.id, "recipe", "reuse", recipe.reuse_reason))
        if recipe_manifest is not None and ctx.cache.has(
                "package", package_key(ctx, cell, build_ref, recipe_manifest)) is not None:
            steps.append(Step(cell.id, "package", "reuse", "stage cache: same payload, "
                              "packaging files, matrix entry and build image"))
        else:
            steps.append(Step(cell.id, "package", "run", f"{', '.join(cell.package_names)}: "
                              "dpkg-shlibdeps, dpkg-deb and lintian in the build image"))
        steps.append(_publish_step(cell, ctx, keyring))
        steps.append(_smoke_step(cell, ctx, do_smoke))
        if cell.upstream_tests is not None and recipe.runs_upstream_tests:
            steps.append(_upstream_step(cell, ctx, do_smoke))
    return steps


def _build_ref(planned: list[tuple[str, str, str | None]] | None) -> str | None:
    """The build image's tag if it is known (stage-cache keys depend on it)."""
    tag, where = {role: (t, w) for role, t, w in planned or []}.get("build", (None, None))
    return tag if where else None


def _image_step(cell: Cell, planned: list[tuple[str, str, str | None]] | None) -> Step:
    """planned: images.planned_images(), or None when no Docker engine answers."""
    if planned is None:
        return Step(cell.id, "image", "build", "no Docker engine answers: cannot tell what "
                    "is there (the build itself would fail)")
    missing = [f"{role} {tag}" for role, tag, where in planned if not where]
    cached = [f"{role} {tag}" for role, tag, where in planned if where == "artifact cache"]
    if not missing and not cached:
        return Step(cell.id, "image", "reuse", ", ".join(t for _, t, _ in planned))
    if not missing:
        return Step(cell.id, "image", "load", f"from the artifact cache: {'; '.join(cached)}")
    how = ("bootstrap of " + (cell.distro.base.bootstrap.suite if cell.distro.base.bootstrap
                              else cell.distro.base.image)
           if not planned[0][2] else "docker build")
    loads = f"; load {'; '.join(cached)}" if cached else ""
    return Step(cell.id, "image", "build", f"missing {'; '.join(missing)} ({how}){loads}")


def _publish_step(cell: Cell, ctx: RunContext, keyring: bytes | None) -> Step:
    storage, suite = ctx.storage, cell.suite(ctx.opts.staging)
    if storage is None:
        return Step(cell.id, "publish", "skip", "--publish none")
    where = f"{storage.describe()} {suite}/{cell.component} ({cell.arch.name})"
    what = f"{', '.join(cell.package_names)} {cell.deb_version}"
    if keyring is not None and all(published_entries(storage, keyring, suite, cell.component,
                                                     name, cell.deb_version, cell.arch.name)
                                   for name in cell.package_names):
        return Step(cell.id, "publish", "reuse",
                    f"{what} is already in "
                    f"{where}: a no-op if the new .debs are identical (different bytes are "
                    "refused)")
    return Step(cell.id, "publish", "run", f"add {what} to {where}")


def _smoke_step(cell: Cell, ctx: RunContext, do_smoke: bool) -> Step:
    if ctx.storage is None or not do_smoke:
        return Step(cell.id, "smoke", "skip", "--no-smoke" if ctx.storage is not None
                    else "nothing published to install from")
    if cell.cuda and not ctx.gpu:
        return Step(cell.id, "smoke", "run", "no GPU here: GPU checks will be skipped, CUDA "
                    "packages reported as not installable")
    where = (f"{cell.distro.name} {cell.arch.name} container" if cell.arch.primary else
             f"{cell.distro.name} {cell.arch.name} container under emulation "
             f"({cell.arch.qemu})")
    return Step(cell.id, "smoke", "run", f"fresh {where}, apt + thin clients from the "
                "repository")


def _upstream_step(cell: Cell, ctx: RunContext, do_smoke: bool) -> Step:
    if ctx.storage is None or not do_smoke:
        return Step(cell.id, "upstream", "skip", "--no-smoke" if ctx.storage is not None
                    else "nothing published to install from")
    spec = cell.upstream_tests
    why_not = not_here(ctx, cell)
    if why_not:
        return Step(cell.id, "upstream", "skip", why_not)
    return Step(cell.id, "upstream", "run", f"{len(spec.files)} of MXNet's own test files on "
                f"the installed packages and on {cell.official_wheel.filename} (the reference; "
                "from the stage cache when run before)")
