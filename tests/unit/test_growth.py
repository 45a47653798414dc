"""What adding things costs: a distro by matrix.yaml alone, stage keys that hash exactly
their inputs."""
from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys

import yaml

from mxbuild import matrix, options
from mxbuild.context import open_run

from ..conftest import ROOT

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


def _invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_new_distro_needs_matrix_yaml_only(tmp_path, matrix_doc):
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(_with_buster(matrix_doc)))
    m = matrix.load(path)                                       # the schema accepts it
    (cell,) = m.select(distro="debian10")
    assert (cell.id, cell.codename, cell.distro.family, cell.deb_version) == (
        "1.9.1-cpu-debian10", "buster", "debian", "1.9.1-6~deb10")
    env = {**os.environ, "MXBUILD_MATRIX": str(path), "MXBUILD_OUT_DIR": str(tmp_path / "out")}
    listed = _invoke("matrix", "--json", "--distro", "debian10", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == ["1.9.1-cpu-debian10"]
    planned = _invoke("plan", "--distro", "debian10", "--publish", "none", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    steps = {s["stage"]: s for s in json.loads(planned.stdout)}
    assert steps["image"]["action"] in ("build", "reuse")
    if steps["image"]["action"] == "build" and "no Docker engine" not in steps["image"]["reason"]:
        assert "bootstrap of buster" in steps["image"]["reason"]
    assert steps["recipe"]["action"] == "run" and "mxnet-1.9.1" in steps["recipe"]["reason"]
    assert steps["publish"]["action"] == "skip"


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
