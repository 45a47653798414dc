"""What adding things costs: a distro by matrix.yaml alone, stage keys that hash exactly
their inputs."""
from __future__ import annotations

import copy
import inspect
import json
import os

from mxbuild import images, matrix, options, plan
from mxbuild.context import open_run

from ..conftest import ROOT, dump_yaml, run_cli

BUSTER_KEY = "80D15823B7FD1561F9F7BCDDDC30D7C23CBBABEE"   # 10/buster archive signing key


def _with_buster(doc: dict) -> dict:
    """Debian 10 (buster, from archive.debian.org), modelled on debian11's entry."""
    doc = copy.deepcopy(doc)
    buster = copy.deepcopy(doc["distros"]["debian11"])
    buster.update(codename="buster", version_tag="deb10",
                  abi={"glibc": "2.28", "glibcxx": "3.4.25"})
    buster["base"]["bootstrap"].update(
        suite="buster", mirror="http://archive.debian.org/debian",
        keyring="/usr/share/keyrings/debian-archive-removed-keys.gpg",
        key_fingerprint=BUSTER_KEY)
    buster["smoke"] = {"python": "python3", "pip": ["numpy==1.21.6", "pytest==7.4.4"]}
    doc["distros"]["debian10"] = buster
    doc["variants"]["cpu"]["builds"][0]["distros"].append("debian10")
    return doc


def test_a_new_distro_needs_matrix_yaml_only(tmp_path, matrix_doc):
    path = tmp_path / "matrix.yaml"
    path.write_text(dump_yaml(_with_buster(matrix_doc)))
    m = matrix.load(path)                                       # the schema accepts it
    (cell,) = m.select(distro="debian10")
    assert (cell.id, cell.codename, cell.distro.family, cell.deb_version) == (
        "1.9.1-cpu-debian10", "buster", "debian", "1.9.1-6~deb10")
    # no engine here (the unit tier runs without one, whatever this machine has): the plan
    # says so; what it says with an engine that lacks the image is checked below
    env = {**os.environ, "MXBUILD_MATRIX": str(path), "MXBUILD_OUT_DIR": str(tmp_path / "out"),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    listed = run_cli("matrix", "--json", "--distro", "debian10", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == ["1.9.1-cpu-debian10"]
    planned = run_cli("plan", "--distro", "debian10", "--publish", "none", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    steps = {s["stage"]: s for s in json.loads(planned.stdout)}
    assert (steps["image"]["action"], steps["image"]["reason"]) == (
        "build", "no Docker engine answers: cannot tell what is there (the build itself "
        "would fail)")
    assert steps["recipe"]["action"] == "run" and "mxnet-1.9.1" in steps["recipe"]["reason"]
    assert steps["publish"]["action"] == "skip"
    # an engine without buster's base image: it would be bootstrapped from matrix.yaml
    missing = [("base", images.base_tag(cell.distro), None),
               ("build", "mxbuild/build:debian10-<after base>", None),
               ("runtime", "mxbuild/runtime:debian10-<after base>", None)]
    step = plan._image_step(cell, missing)
    assert (step.action, step.reason) == (
        "build", f"missing base {images.base_tag(cell.distro)}; build "
        "mxbuild/build:debian10-<after base>; runtime mxbuild/runtime:debian10-<after base> "
        "(bootstrap of buster)")


def test_stage_keys_hash_exactly_their_modules(tmp_path, monkeypatch):
    """Editing report.py (or any module a stage does not run) keeps cached recipe and
    package outputs valid; editing deb.py invalidates the package stage only."""
    from mxbuild import deb, pipeline, report
    cell = matrix.load(ROOT / "matrix.yaml").select(cell="1.9.1-cpu-debian12")[0]
    ctx = open_run(options.resolve(out_dir=str(tmp_path / "out")), gpu=False)
    manifest = {"files": {"libmxnet.so": "0" * 64}}

    def keys():
        return (pipeline.recipe_key(ctx, cell, "mxbuild/build:debian12-x"),
                pipeline.package_key(ctx, cell, "mxbuild/build:debian12-x", manifest))
    before = keys()
    real = inspect.getsource

    def edited(module):
        def fake(obj):
            text = real(obj)
            return text + "\n# edited\n" if obj is module else text
        return fake
    monkeypatch.setattr(inspect, "getsource", edited(report))
    assert keys() == before
    monkeypatch.setattr(inspect, "getsource", edited(deb))
    recipe, package = keys()
    assert recipe == before[0] and package != before[1]
