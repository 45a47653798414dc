"""Run cells through their stages: image → recipe → package → publish → smoke."""
from __future__ import annotations


from . import client as thin_client, compile as compile_recipe, deb, engine, images, recipes, smoke
from .errors import MxbuildError, StageError
from .matrix import Cell, load as load_matrix
from .options import Options
from .repo.publish import Upload, publish
from .repo.sign import KEYRING_NAME, Signer
from .report import Axes, Report

STAGES = ["image", "recipe", "package", "publish", "smoke"]


def build(cells: list[Cell], opts: Options, *, storage=None, do_smoke: bool = True) -> Report:
    """Build every selected cell, publish to `storage` (None: do not publish) and smoke-test
    from there. A failed cell does not stop the others. Raises the first StageError after
    the reports are written."""
    return _run(cells, opts, STAGES, lambda client, cell, report, signer: _build_cell(
        client, cell, opts, report, storage, signer, do_smoke))


def smoke_built(cells: list[Cell], opts: Options, storage) -> Report:
    """Publish the already built .debs (out/debs/<cell>/) to `storage` and smoke-test them
    from there: the second half of `build`, for a GPU agent or a staging repository."""
    return _run(cells, opts, ["image", "publish", "smoke"], lambda client, cell, report,
                signer: _smoke_built_cell(client, cell, opts, report, storage, signer))


def _run(cells, opts, stages, per_cell) -> Report:
    client = engine.client()
    report = Report(opts.out_dir, opts.logs_dir, Axes.of(load_matrix(opts.matrix_path).cells))
    signer = Signer(opts.gnupg_home)
    with report.live(cells):
        for cell in cells:
            try:
                per_cell(client, cell, report, signer)
            except StageError:
                report.skip_rest(cell, stages)
            finally:
                report.write()
    report.summary()
    failed = [r.error for r in report.cells.values() if r.error]
    if failed:
        raise failed[0]
    return report


def _build_cell(client, cell, opts, report, storage, signer, do_smoke):
    record = report.cell(cell)
    with report.stage(cell, "image") as logf:
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
            payload = recipes.harvest_wheel(client, cell, build_image, opts, logf)
    with report.stage(cell, "package") as logf:
        result = deb.build(client, cell, payload, build_image, opts, logf,
                           opts.out_dir / "debs" / cell.id)
        logf.write(result.lintian_output)
        if result.lintian_errors:
            raise MxbuildError(f"lintian reports {result.lintian_errors} error(s)",
                               f"see {result.path.parent / 'lintian.txt'}")
    record.artifacts["deb"] = {"path": str(result.path), "size": result.size,
                               "sha256": result.sha256,
                               "lintian": {"errors": result.lintian_errors,
                                           "warnings": result.lintian_warnings}}
    if storage is None:
        return
    thin = _publish(cell, result.path, opts, report, storage, signer)
    if do_smoke:
        _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer)


def _smoke_built_cell(client, cell, opts, report, storage, signer):
    record = report.cell(cell)
    with report.stage(cell, "image") as logf:
        base = images.ensure_base(client, cell.distro, opts, logf)
        runtime = images.ensure_runtime_image(client, cell, base, opts, logf)
        built = deb.built_deb(opts.out_dir / "debs" / cell.id, cell)
        payload = deb.payload_of(built, cell, opts)
        logf.write(f"{built.name}: built {payload.source}\n")
    record.artifacts["deb"] = {"path": str(built), "size": built.stat().st_size}
    thin = _publish(cell, built, opts, report, storage, signer)
    _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer)


def _publish(cell, deb_path, opts, report, storage, signer):
    with report.stage(cell, "publish") as logf:
        suite = cell.suite(opts.staging)
        published = publish(storage, signer, [Upload(deb_path, suite, cell.component)])
        logf.write(f"added: {published.added}\nskipped: {published.skipped}\n")
        thin = thin_client.thin_wheel_for(cell, opts)
        changed = thin_client.publish_thin(storage, thin)
        logf.write(f"thin client {thin.name}: {'published' if changed else 'already there'}\n")
    report.cell(cell).artifacts["repo"] = {
        "location": storage.describe(), "suite": suite, "component": cell.component,
        "keyring": KEYRING_NAME, "client": thin.name}
    return thin


def _smoke(client, cell, runtime, payload, thin, opts, report, storage, signer):
    with report.stage(cell, "smoke") as logf:
        client_image = images.ensure_client_image(client, cell, runtime, payload.wheel, opts,
                                                  logf)
        counts = smoke.run(client, cell, client_image, payload, opts, logf,
                           opts.work_dir / cell.id / "smoke", storage,
                           signer.public_keyring(), thin_client.wheel_version(thin))
    report.cell(cell).artifacts["smoke"] = {
        **counts.as_dict(), "junit": str(opts.work_dir / cell.id / "smoke" / "junit.xml")}
