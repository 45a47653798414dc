"""`invoke plan` without an engine: what each stage would do, from the matrix, the
download cache and the repository's signed indexes."""
from __future__ import annotations

import dataclasses

from mxbuild import options, plan, recipes
from mxbuild.context import open_run
from mxbuild.matrix import load
from mxbuild.recipes import compile as compile_recipe
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage

from ..conftest import ROOT, copy_gnupg_home, invoke_help, make_deb

MATRIX = load(ROOT / "matrix.yaml")


def _steps(steps, cid):
    return {s.stage: s for s in steps if s.cell == cid}


def test_plan_reads_the_repository_and_names_each_action(tmp_path, gnupg_stopped,
                                                         signing_key):
    opts = dataclasses.replace(options.resolve(out_dir=str(tmp_path / "out")),
                               cache_dir=tmp_path / "cache")
    signer = Signer(copy_gnupg_home(signing_key, tmp_path / "gnupg"))
    storage = LocalStorage(tmp_path / "repo")
    cpu = MATRIX.select(cell="1.9.1-cpu-debian12")[0]
    gpu = MATRIX.select(cell="1.9.1-cu112-ubuntu20")[0]
    deb = make_deb(tmp_path, "libmxnet", cpu.deb_version)
    publish(storage, signer, [Upload(deb, cpu.codename, cpu.component)])
    ctx = open_run(opts, storage=storage, gpu=False)
    steps = plan.plan([cpu, gpu], ctx, keyring=signer.public_keyring())
    s = _steps(steps, cpu.id)
    assert s["image"].action == "build" and "no Docker engine" in s["image"].reason
    assert s["recipe"].action == "run" and "to download" in s["recipe"].reason
    assert s["publish"].action == "reuse" and f"{cpu.deb_version} is already in" in s["publish"].reason
    g = _steps(steps, gpu.id)
    assert g["publish"].action == "run"
    assert "GPU checks will be skipped" in g["smoke"].reason
    nothing = _steps(plan.plan([cpu], open_run(opts, gpu=False)), cpu.id)
    assert nothing["publish"].action == nothing["smoke"].action == "skip"
    # --staging: the version is in bookworm, not yet in bookworm-staging
    staged = _steps(plan.plan([cpu], open_run(dataclasses.replace(opts, staging=True),
                                              storage=storage, gpu=False),
                              keyring=signer.public_keyring()), cpu.id)
    assert staged["publish"].action == "run" and "bookworm-staging" in staged["publish"].reason


def test_plan_task_takes_staging_and_artifact_cache():
    out = invoke_help("plan")
    assert "--staging" in out and "--artifact-cache" in out


def test_plan_for_compile_without_any_source_says_it_would_fail(tmp_path):
    opts = options.resolve(out_dir=str(tmp_path / "out"))
    cell = compile_recipe.with_inputs(
        recipes.with_recipe(MATRIX.select(cell="1.9.1-cpu-debian12")[0], "compile"),
        source=None)
    step = _steps(plan.plan([cell], open_run(opts, gpu=False)), cell.id)["recipe"]
    assert step.action == "fail" and "--source-dir" in step.reason
