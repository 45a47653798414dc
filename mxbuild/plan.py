"""`invoke plan`: what a build of the selected cells would do per stage — build, reuse or
skip, and why — without doing any of it (no image is built, nothing is downloaded)."""
from __future__ import annotations

from dataclasses import dataclass

from . import images
from .cache import StageCache
from .errors import DockerEngineError
from .fetch import cas_path
from .matrix import Cell
from .options import Options
from .repo.publish import published_entries
from .smoke import gpu_present


@dataclass(frozen=True)
class Step:
    cell: str
    stage: str
    action: str      # build | reuse | run | skip | fail
    reason: str


AUTO = object()   # find the Docker engine; None: plan as if none answered


def plan(cells: list[Cell], opts: Options, *, storage=None, keyring: bytes | None = None,
         do_smoke: bool = True, client=AUTO) -> list[Step]:
    """storage None: nothing is published (and so no smoke)."""
    if client is AUTO:
        try:
            from .engine import client as engine_client
            client = engine_client(timeout=10)
        except DockerEngineError:
            client = None
    gpu = gpu_present()
    steps: list[Step] = []
    for cell in cells:
        planned = images.planned_images(client, cell, opts) if client is not None else None
        steps.append(_image_step(cell, planned))
        build_ref = _build_ref(planned)
        recipe_manifest = _cached("recipe", cell, opts, build_ref, None)
        steps.append(_recipe_step(cell, opts) if recipe_manifest is None else
                     Step(cell.id, "recipe", "reuse", "stage cache: same wheel, script, "
                          "patchelf and build image"))
        if recipe_manifest is not None and \
                _cached("package", cell, opts, build_ref, recipe_manifest) is not None:
            steps.append(Step(cell.id, "package", "reuse", "stage cache: same payload, "
                              "packaging files, matrix entry and build image"))
        else:
            steps.append(Step(cell.id, "package", "run",
                              "dpkg-shlibdeps, dpkg-deb and lintian in the build image"))
        steps.append(_publish_step(cell, storage, keyring, cell.suite(opts.staging)))
        steps.append(_smoke_step(cell, storage, do_smoke, gpu))
    return steps


def _build_ref(planned: list[tuple[str, str, bool]] | None) -> str | None:
    """The build image's tag if it is there (stage-cache keys depend on it)."""
    tag, present = {role: (t, p) for role, t, p in planned or []}.get("build", (None, False))
    return tag if present else None


def _cached(stage: str, cell: Cell, opts: Options, build_ref: str | None,
            recipe_manifest: dict | None) -> dict | None:
    """The stage cache's manifest for this cell's stage, if the build would reuse it."""
    from .pipeline import package_key, recipe_key
    if build_ref is None or cell.recipe != "wheel":
        return None
    cache = StageCache.of(opts)
    key = (recipe_key(cell, opts, build_ref) if stage == "recipe"
           else package_key(cell, opts, build_ref, recipe_manifest))
    return cache.has(stage, key)


def _image_step(cell: Cell, planned: list[tuple[str, str, bool]] | None) -> Step:
    """planned: images.planned_images(), or None when no Docker engine answers."""
    if planned is None:
        return Step(cell.id, "image", "build", "no Docker engine answers: cannot tell what "
                    "is there (the build itself would fail)")
    missing = [f"{role} {tag}" for role, tag, present in planned if not present]
    if not missing:
        return Step(cell.id, "image", "reuse", ", ".join(t for _, t, _ in planned))
    how = ("debootstrap of " + (cell.distro.base.bootstrap.suite if cell.distro.base.bootstrap
                                else cell.distro.base.image)
           if not planned[0][2] else "docker build")
    return Step(cell.id, "image", "build", f"missing {'; '.join(missing)} ({how})")


def _recipe_step(cell: Cell, opts: Options) -> Step:
    downloads = opts.cache_dir / "downloads"
    if cell.recipe == "compile":
        if opts.source_dir:
            return Step(cell.id, "recipe", "run", f"compile {opts.source_dir} with "
                        f"{cell.compile.preset} (ccache volume {opts.ccache_volume})")
        if cell.source is None and not opts.source_tarball:
            return Step(cell.id, "recipe", "fail", f"no source release pinned for "
                        f"{cell.mxnet}: pass --source-tarball or --source-dir")
        return Step(cell.id, "recipe", "run", f"compile the {cell.mxnet} source release with "
                    f"{cell.compile.preset}")
    pin = cell.wheel
    cached = cas_path(downloads, pin.sha256, pin.filename).is_file()
    return Step(cell.id, "recipe", "run",
                f"harvest {pin.filename} ({'cached' if cached else 'to download'}, "
                f"sha256 {pin.sha256[:12]}…)")


def _publish_step(cell: Cell, storage, keyring: bytes | None, suite: str) -> Step:
    if storage is None:
        return Step(cell.id, "publish", "skip", "--publish none")
    where = f"{storage.describe()} {suite}/{cell.component}"
    if keyring is not None and published_entries(storage, keyring, suite, cell.component,
                                                 cell.package.name, cell.deb_version):
        return Step(cell.id, "publish", "reuse",
                    f"{cell.deb_version} is already in {where}: a no-op if the new "
                    ".deb is identical (different bytes are refused)")
    return Step(cell.id, "publish", "run", f"add {cell.deb_version} to {where}")


def _smoke_step(cell: Cell, storage, do_smoke: bool, gpu: bool) -> Step:
    if storage is None or not do_smoke:
        return Step(cell.id, "smoke", "skip", "--no-smoke" if storage is not None
                    else "nothing published to install from")
    if cell.cuda and not gpu:
        return Step(cell.id, "smoke", "run", "no GPU here: GPU checks will be skipped, CUDA "
                    "packages reported as not installable")
    return Step(cell.id, "smoke", "run", f"fresh {cell.distro.name} container, apt + "
                "mxnet-thin from the repository")
