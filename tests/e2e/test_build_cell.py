"""The main job, as a user runs it: `invoke build --variant cpu --distro debian12`."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ..conftest import ROOT


def invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def run_env(tmp_path_factory, gnupg_home, docker_client):
    out = tmp_path_factory.mktemp("e2e-out")
    return out, {**os.environ, "MXBUILD_OUT_DIR": str(out), "MXBUILD_GNUPGHOME": str(gnupg_home)}


def test_cpu_debian12_cell_end_to_end(run_env):
    out, env = run_env
    # --force: every stage really runs, whatever the stage cache holds from earlier runs
    proc = invoke("build", "--variant", "cpu", "--distro", "debian12", "--force", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ("image", "recipe", "package", "publish", "smoke"):
        assert re.search(rf"^✓ 1\.9\.1-cpu-debian12 +{stage} +[0-9.]+s$", proc.stderr, re.M), stage
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is True
    (cell,) = report["cells"]
    assert cell["id"] == "1.9.1-cpu-debian12"
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "ok"), ("package", "ok"), ("publish", "ok"), ("smoke", "ok")]
    for stage in cell["stages"]:
        assert os.path.isfile(stage["log"]) and stage["seconds"] >= 0
    deb = cell["deb"]
    assert os.path.getsize(deb["path"]) == deb["size"]
    assert deb["lintian"]["errors"] == 0
    smoke = cell["smoke"]
    assert smoke["tests"] >= 10 and smoke["passed"] == smoke["tests"]
    assert smoke["failed"] == smoke["errors"] == smoke["skipped"] == 0
    repo = out / "repo"
    assert (repo / "dists/bookworm/InRelease").is_file()
    assert (repo / "mxbuild-archive-keyring.gpg").is_file()
    assert (repo / "pool/cpu/libm/libmxnet" / os.path.basename(deb["path"])).is_file()
    assert (repo / "simple/mxnet-thin/index.html").is_file()
    assert {"junit.xml", "report.html"} <= {p.name for p in out.iterdir()}


def test_rerun_with_unchanged_inputs_reuses_every_stage(run_env):
    out, env = run_env
    before = json.loads((out / "report.json").read_text())["cells"][0]
    proc = invoke("build", "--variant", "cpu", "--distro", "debian12", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = json.loads((out / "report.json").read_text())["cells"][0]
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "reused"), ("package", "reused"), ("publish", "reused"),
        ("smoke", "reused")]
    assert re.search(r"^= 1\.9\.1-cpu-debian12 +package .* reused$", proc.stderr, re.M)
    assert cell["deb"]["sha256"] == before["deb"]["sha256"]
    assert cell["smoke"]["passed"] == before["smoke"]["passed"]
    forced = invoke("build", "--variant", "cpu", "--distro", "debian12", "--force-stage",
                    "package", "--no-smoke", env=env)
    assert forced.returncode == 0, forced.stderr
    cell = json.loads((out / "report.json").read_text())["cells"][0]
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "reused"), ("package", "ok"), ("publish", "reused")]
    assert cell["deb"]["sha256"] == before["deb"]["sha256"]    # rebuilt: the same bytes


def test_a_failing_stage_names_cell_stage_and_log(run_env, tmp_path):
    out, env = run_env
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    doc["variants"]["cpu"]["builds"][0]["wheel"]["sha256"] = "0" * 64
    bad = tmp_path / "matrix.yaml"
    bad.write_text(yaml.safe_dump(doc))
    proc = invoke("build", "--cell", "1.9.1-cpu-debian12", env={**env, "MXBUILD_MATRIX": str(bad),
                                                    "MXBUILD_OUT_DIR": str(tmp_path / "out")})
    assert proc.returncode == 4, proc.stderr            # ChecksumError's exit code
    log = tmp_path / "out/logs/1.9.1-cpu-debian12/recipe.log"
    assert "error: cell 1.9.1-cpu-debian12, stage recipe:" in proc.stderr
    assert str(log) in proc.stderr and log.is_file()
    report = json.loads((tmp_path / "out/report.json").read_text())
    stages = {s["name"]: s["status"] for s in report["cells"][0]["stages"]}
    assert stages == {"image": "ok", "recipe": "failed", "package": "skipped",
                      "publish": "skipped", "smoke": "skipped"}
    assert not (tmp_path / "out/repo/dists").exists()   # nothing half-published


def test_build_publishes_to_s3_and_smoke_installs_from_it(run_env, moto_endpoint, s3_bucket,
                                                          tmp_path):
    out, env = run_env
    # the moto fixture set the (test) credentials after run_env was made
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
           "MXBUILD_OUT_DIR": str(tmp_path / "out")}
    target = f"s3://{s3_bucket}/apt"
    proc = invoke("build", "--cell", "1.9.1-cpu-debian12", "--publish", target,
                  "--endpoint-url", moto_endpoint, "--path-style", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out/report.json").read_text())
    (cell,) = report["cells"]
    assert cell["repo"]["location"] == target
    assert cell["smoke"]["passed"] == cell["smoke"]["tests"] >= 10
    smoke_log = (tmp_path / "out/logs/1.9.1-cpu-debian12/smoke.log").read_text()
    assert f"{moto_endpoint}/{s3_bucket}/apt bookworm InRelease" in smoke_log   # apt read S3
    listed = invoke("repo.list", "--repo", target, "--endpoint-url", moto_endpoint,
                    "--path-style", "--json", env=env)
    assert json.loads(listed.stdout) == {"bookworm": {"cpu": [["libmxnet", "1.9.1-6~deb12"]]}}
    verified = invoke("repo.verify", "--repo", target, "--endpoint-url", moto_endpoint,
                      "--path-style", env=env)
    assert verified.returncode == 0, verified.stderr


def test_release_flow_smoke_staging_then_promote(run_env, tmp_path):
    """What the Jenkinsfile does with a built .deb: smoke it from the agent's own staging
    repository, then promote it; the stable suite gets it without a new upload."""
    out, env = run_env
    repo = tmp_path / "repo"
    proc = invoke("smoke", "--cell", "1.9.1-cpu-debian12", "--repo", str(repo), "--staging",
                  "--jobs", "2", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = json.loads((out / "report.json").read_text())["cells"][0]
    assert [s["name"] for s in cell["stages"]] == ["image", "publish", "smoke"]
    assert cell["repo"]["suite"] == "bookworm-staging" and cell["smoke"]["failed"] == 0
    listed = invoke("repo.list", "--repo", str(repo), "--json", env=env)
    assert json.loads(listed.stdout) == {
        "bookworm-staging": {"cpu": [["libmxnet", "1.9.1-6~deb12"]]}}
    promoted = invoke("repo.promote", "--cell", "1.9.1-cpu-debian12", "--repo", str(repo),
                      env=env)
    assert promoted.returncode == 0, promoted.stderr
    listed = json.loads(invoke("repo.list", "--repo", str(repo), "--json", env=env).stdout)
    assert listed["bookworm"] == {"cpu": [["libmxnet", "1.9.1-6~deb12"]]}
    assert invoke("repo.verify", "--repo", str(repo), env=env).returncode == 0


def test_an_empty_agent_reuses_what_another_stored_in_the_s3_artifact_cache(
        run_env, moto_endpoint, s3_bucket, tmp_path):
    """CI agents start with an empty cache: agent A builds the cell's recipe and package
    and stores them in the S3 artifact cache; agent B (empty local cache) fetches both
    instead of building, and gets the same .deb."""
    out, env = run_env
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    cache = ["--artifact-cache", f"s3://{s3_bucket}/cache", "--endpoint-url", moto_endpoint,
             "--path-style"]
    a = invoke("build", "--cell", "1.9.1-cpu-debian12", "--publish", "none", "--force-stage",
               "recipe,package", *cache, env={**env, "MXBUILD_OUT_DIR": str(tmp_path / "a")})
    assert a.returncode == 0, a.stderr
    built = json.loads((tmp_path / "a/report.json").read_text())["cells"][0]
    wheel = next((ROOT / ".cache/mxbuild/downloads").rglob("mxnet-1.9.1-*.whl"))
    b = invoke("build", "--cell", "1.9.1-cpu-debian12", "--publish", "none", *cache,
               env={**env, "MXBUILD_OUT_DIR": str(tmp_path / "b"),
                    "MXBUILD_CACHE_DIR": str(tmp_path / "empty-cache"),
                    "MXBUILD_WHEEL_DIR": str(wheel.parent)})     # no second download
    assert b.returncode == 0, b.stderr
    cell = json.loads((tmp_path / "b/report.json").read_text())["cells"][0]
    assert [(s["name"], s["status"]) for s in cell["stages"]] == [
        ("image", "ok"), ("recipe", "reused"), ("package", "reused")]
    assert cell["deb"]["sha256"] == built["deb"]["sha256"]
    assert "fetched" in b.stderr and "from the artifact cache" in b.stderr
    deb = tmp_path / "b/debs/1.9.1-cpu-debian12" / os.path.basename(cell["deb"]["path"])
    assert deb.is_file() and deb.stat().st_size == built["deb"]["size"]
