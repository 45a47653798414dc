"""The upstream stage of a cell whose libmxnet.so is built from a source tree: a subset
of MXNet's own Python tests (matrix `upstream_tests`), like Debian's autopkgtest runs a
package's own tests —

- against the installed packages, in a fresh container of the cell's distro set up as
  the smoke suite's is (apt-get install from the published repository with signed-by,
  mxnet-thin from its index);
- against the official wheel of the same version (the reference: pip-installed in a
  container of the same image), cached per wheel, tests and subset;

and compared per test (compare.py). Every bad outcome that matrix.yaml does not list as
known, and every test whose outcome differs from the wheel's, fails the stage."""
from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import asdict
from pathlib import Path
from typing import IO

from .. import plugins, recipes, smoke
from ..cache import key_of
from ..containers import Container
from ..errors import ConfigError, MxbuildError
from ..fetch import cached_wheel
from ..images import ImageRef
from ..matrix import Cell
from ..paths import module_digest
from ..repo import keys
from . import compare, image, outcomes, recorder, runner, tree
from .outcomes import FileRun

REFERENCE_LOG = "upstream-wheel.log"


def prepare(ctx, cell: Cell, out_dir: Path, logf: IO[str]) -> Path | None:
    """The cell's upstream tests next to its .debs (tree.TESTS_TAR), when its recipe
    builds libmxnet.so from source and matrix.yaml lists tests for its version; else
    none (a stale file is removed)."""
    dest = out_dir / tree.TESTS_TAR
    spec = cell.upstream_tests
    if spec is None or not recipes.get(cell.recipe).runs_upstream_tests:
        dest.unlink(missing_ok=True)
        return None
    from ..recipes import compile as compile_recipe
    source = compile_recipe.resolve_source(cell, ctx.opts, logf)
    tree.collect(source.path, source.is_dir, spec, dest)
    logf.write(f"upstream tests: {dest.name} ({dest.stat().st_size} bytes, sha256 "
               f"{tree.digest(dest)[:16]}…) from {source.description}: "
               f"{', '.join(f.path.rsplit('/', 1)[-1] for f in spec.files)}\n")
    return dest


def tests_of(out_dir: Path) -> Path | None:
    """The upstream tests that came with a cell's .debs, if any."""
    path = out_dir / tree.TESTS_TAR
    return path if path.is_file() else None


def run(ctx, cell: Cell, runtime: ImageRef, clients, debs, logf: IO[str]) -> dict:
    """Run the stage on the tests that came with the cell's .debs; returns report.json's
    `upstream` (the caller records it, then fail_if_not_ok: the results of a failed stage
    are the point)."""
    tests = tests_of(ctx.opts.out_dir / "debs" / cell.id)
    spec = cell.upstream_tests
    if spec is None:
        raise ConfigError(f"{tests.name} came with the .debs of {cell.id} but matrix.yaml "
                          f"lists no upstream_tests for MXNet {cell.mxnet}",
                          f"add upstream_tests.\"{cell.mxnet}\" or remove {tests}")
    _check_shipped(tests, spec)
    why_not = not_here(ctx, cell)
    if why_not:
        logf.write(f"upstream tests not run: {why_not}\n")
        return {"skipped": why_not}
    work = ctx.opts.work_dir / cell.id / "upstream"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    client = plugins.smoke_suite("python").image(ctx, cell, runtime, logf)
    test_image = image.ensure_test_image(ctx, cell, client, spec, logf)
    digest = tree.digest(tests)
    subset = [asdict(f) for f in spec.files]
    wheel_runs, wheel_reused, wheel_log = _reference(ctx, cell, test_image, tests, digest,
                                                     subset, logf)
    wheel_results = _save(work / "wheel-results.json", wheel_runs)
    key = key_of("upstream", {
        "code": module_digest(runner, recorder, outcomes, smoke), "tests": digest,
        "files": subset, "image": test_image.id, "debs": [d.sha256 for d in debs],
        "clients": [c.sha256 for c in clients], "repo": ctx.storage.describe(),
        "suite": cell.suite(ctx.opts.staging), "cell": cell.id, "gpu": ctx.gpu})
    hit = ctx.cache.get("upstream", key)
    if hit is not None:
        logf.write(f"reused {hit[0]}: these .debs passed these tests before\n")
        runs = _load(hit[0] / "results.json")
    else:
        python = next(c for c in clients if c.kind == "python")
        with smoke.repo_url(ctx.storage) as url:
            runs = _run_installed(ctx, cell, test_image, python.version, url, tests, logf,
                                  work)
    verdict = compare.judge(compare.results_of(runs), compare.results_of(wheel_runs),
                            spec.known)
    results = _save(work / "results.json", runs)
    junit = work / "junit.xml"
    junit.write_text(compare.junit(runs, compare.results_of(wheel_runs), verdict))
    if hit is None and verdict.ok:
        ctx.cache.put("upstream", key, {"results.json": results}, {"ok": True})
    _log_verdict(logf, verdict)
    return {**compare.report_dict(runs, wheel_runs, verdict),
            "wheel": {"filename": cell.official_wheel.filename,
                      "sha256": cell.official_wheel.sha256,
                      "counts": outcomes.counts(compare.results_of(wheel_runs)),
                      "reused": wheel_reused, "log": str(wheel_log),
                      "results": str(wheel_results)},
            "reused": hit is not None, "junit": str(junit), "results": str(results),
            "summary": verdict.summary()}


def not_here(ctx, cell: Cell) -> str | None:
    """Why the stage cannot run for this cell on this machine, or None."""
    if cell.cuda is not None and not ctx.gpu:
        return "no GPU: libmxnet cannot load here"
    if not cell.official_wheel.runs_on(cell.arch.machine):
        return (f"no official {cell.arch.name} binary to compare with "
                f"({cell.official_wheel.filename} "
                f"is not {cell.arch.machine}); MXNet's own tests are not run under emulation")
    return None


def fail_if_not_ok(upstream: dict, cell: Cell) -> None:
    if upstream.get("ok", True):
        return
    raise MxbuildError(f"upstream tests: {upstream['summary']}",
                       f"the failing tests and the wheel's outcomes: {upstream['junit']}; an "
                       "outcome that is environmental here (a download) or stochastic goes "
                       f"to upstream_tests.\"{cell.mxnet}\".known in matrix.yaml with its "
                       "reason")


def _check_shipped(tests: Path, spec) -> None:
    with tarfile.open(tests) as tar:
        names = set(tar.getnames())
    missing = [f.path for f in spec.files if f.path not in names]
    if missing:
        raise ConfigError(f"{tests} has no {', '.join(missing)} (matrix.yaml changed since "
                          "the cell was built?)", "build the cell again (its package stage "
                          "collects the tests from the source)")


# params: the reference run's cache key parts, over the stage's locals
def _reference(ctx, cell: Cell, test_image: ImageRef, tests: Path, digest: str, subset,
               logf: IO[str]) -> tuple[list[FileRun], bool, Path]:
    """The same files on the official wheel, from the stage cache when the wheel, the
    tests, the subset, the image and the runner are the same."""
    log_path = ctx.opts.logs_dir / cell.id / REFERENCE_LOG
    key = key_of("upstream-reference", {
        "code": module_digest(runner, recorder, outcomes), "wheel": cell.official_wheel.sha256,
        "tests": digest, "files": subset, "image": test_image.id, "gpu": ctx.gpu})
    hit = ctx.cache.get("upstream-reference", key)
    log_path.unlink(missing_ok=True)        # never write through a link into the cache
    if hit is not None:
        shutil.copyfile(hit[0] / "output.log", log_path)
        logf.write(f"the official wheel's outcomes: reused {hit[0]} (same wheel, tests, "
                   f"subset and image); its log: {log_path}\n")
        return _load(hit[0] / "results.json"), True, log_path
    wheel = cached_wheel(cell.official_wheel, ctx.opts.cache_dir / "downloads",
                         ctx.opts.extra_ca_bundle)
    logf.write(f"running the same tests on the official wheel {wheel.name}: {log_path}\n")
    logf.flush()
    with open(log_path, "w") as wlog, Container(
            ctx.docker, test_image.ref, label=f"upstream-wheel-{cell.id}", network="host",
            log_file=wlog, gpus=ctx.gpu and cell.cuda is not None) as box:
        box.run(["mkdir", "-p", "/tmp/wheel"])
        box.copy_into(wheel, "/tmp/wheel")
        box.run(["pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
                 f"/tmp/wheel/{wheel.name}"])
        runner.ship(box, tests)
        runs = runner.run_files(box, cell.upstream_tests.files, wlog)
    work = ctx.opts.work_dir / cell.id / "upstream"
    results = _save(work / "wheel-run.json", runs)
    if any(a.timed_out for r in runs for a in r.attempts):
        # a time limit says as much about this machine's load as about the wheel: not a
        # reference to keep
        logf.write("the official wheel's run hit a time limit: not cached\n")
        return runs, False, log_path
    shutil.copyfile(log_path, work / "wheel-output.log")
    ctx.cache.put("upstream-reference", key, {"results.json": results,
                                              "output.log": work / "wheel-output.log"},
                  {"ok": True})
    return runs, False, log_path


# params: one run of the upstream stage, over that stage's locals
def _run_installed(ctx, cell: Cell, test_image: ImageRef, client_version: str, url: str,
                   tests: Path, logf: IO[str], work: Path) -> list[FileRun]:
    with Container(ctx.docker, test_image.ref, label=f"upstream-{cell.id}", network="host",
                   log_file=logf, gpus=ctx.gpu and cell.cuda is not None) as box:
        smoke.install_client(box, ctx, cell, url, _keyring(ctx), client_version,
                             work / "client")
        runner.ship(box, tests)
        return runner.run_files(box, cell.upstream_tests.files, logf)


def _keyring(ctx) -> bytes:
    """What the repository's states verify with (as the smoke stage trusts it)."""
    return keys.signing_for(ctx.storage, ctx.signer).keyring


def _save(path: Path, runs: list[FileRun]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in runs], indent=1) + "\n")
    return path


def _load(path: Path) -> list[FileRun]:
    return [FileRun.from_dict(d) for d in json.loads(path.read_text())]


def _log_verdict(logf: IO[str], verdict: compare.Verdict) -> None:
    logf.write(f"\nverdict: {verdict.summary()}\n")
    for test, result in verdict.unexpected:
        logf.write(f"  unexpected {result.outcome}: {test}\n")
    for d in verdict.differences:
        logf.write(f"  differs: {d.test}: {d.compiled} here, {d.wheel} with the wheel"
                   + (f" (known: {d.known})" if d.known else "") + "\n")
    for test, outcome, why in verdict.known:
        logf.write(f"  known {outcome}: {test} ({why})\n")
    for pattern in verdict.not_seen:
        logf.write(f"  known entry not seen in this run: {pattern}\n")

