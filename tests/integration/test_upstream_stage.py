"""The upstream stage for real, on the fixture source tree (tests/fixtures/upstream_tests.py:
a file that passes, one that fails, one that crashes with the packaged library), in the
release flow the Jenkinsfile drives: `invoke build --publish none` (the tests are
collected from the source next to the .debs), then `invoke smoke` from the agent's own
repository — smoke suite, then the upstream tests on the installed packages and on the
official wheel — whose failure stops the cell before `invoke publish --staging`.

MXNet's real tests need its real tree and a compiled library (hours here): the recipe is
a stand-in registered from this module that takes the source tree as recipe "compile"
does but harvests the official wheel's libmxnet.so, so the smoke suite passes and the
stage is what is under test. The stage itself — images, apt, pip, the runner, the crash,
the comparison, the cache, the reports — runs as it does on a compiled cell."""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import pytest

from mxbuild import pipeline, recipes
from mxbuild.errors import StageError
from mxbuild.matrix import KnownOutcome
from mxbuild.recipes.wheel import WheelRecipe
from mxbuild.repo.storage import LocalStorage

from ..fixtures import upstream_tests as fixture
from .test_compile import fixture_tree


class CompileStandIn(WheelRecipe):
    """Takes a source tree and runs its upstream tests as recipe "compile" does; its
    libmxnet.so is the official wheel's (harvested, seconds instead of hours)."""
    name = "compile-standin"
    takes_source = True
    runs_upstream_tests = True


@pytest.fixture(scope="module")
def flow(test_opts, cpu_cell, tmp_path_factory, docker_client, cell_images):
    """The cell built with --publish none from the fixture tree; returns a function that
    runs `invoke smoke` on it with the fixture subset (and extra known outcomes)."""
    recipes.register(CompileStandIn())
    work = tmp_path_factory.mktemp("upstream")
    tree = fixture_tree(work / "apache-mxnet-src-1.9.1")
    # the run on the packages really runs each time (the reference may come from the cache)
    opts = dataclasses.replace(test_opts, out_dir=work / "out", source_dir=tree,
                               force=frozenset({"upstream"}))
    cell = dataclasses.replace(cpu_cell, recipe=CompileStandIn.name,
                               upstream_tests=fixture.spec(cpu_cell.upstream_tests))
    pipeline.build([cell], opts, storage=None)
    debs = opts.out_dir / "debs" / cell.id

    def smoke(known=(), name="smoke-repo"):
        c = dataclasses.replace(cell, upstream_tests=fixture.spec(cpu_cell.upstream_tests,
                                                                  known))
        storage = LocalStorage(work / name)
        try:
            pipeline.smoke_built([c], opts, storage)
            error = None
        except StageError as exc:
            error = exc
        report = json.loads((opts.out_dir / "report.json").read_text())
        return error, report["cells"][0], opts.out_dir
    return debs, smoke


def _outcomes(upstream: dict) -> dict[str, str]:
    results = json.loads(open(upstream["results"]).read())
    return {t.split("::", 1)[1] if "::" in t else t: r["outcome"]
            for f in results for t, r in f["results"].items()}


def test_the_tests_travel_with_the_debs(flow):
    debs, _ = flow
    import tarfile
    names = tarfile.open(debs / "upstream-tests.tar").getnames()
    assert names == sorted(fixture.FILES)          # what `ship` names, nothing else


def test_a_failing_and_a_crashing_test_fail_the_stage_and_stop_the_cell(flow):
    _, smoke = flow
    error, cell, out = smoke()
    assert error is not None and error.stage == "upstream" and error.exit_code == 6
    assert "upstream tests: 2 unexpected (1 failed, 1 crashed" in error.message
    assert [s["name"] for s in cell["stages"]] == ["image", "publish", "smoke", "upstream"]
    assert {s["status"] for s in cell["stages"][:3]} <= {"ok", "reused"}
    assert cell["stages"][3]["status"] == "failed" and cell["ok"] is False
    up = cell["upstream"]
    assert up["ok"] is False and up["reused"] is False
    assert _outcomes(up) == {
        "test_ndarray_sum": "passed", "test_library_is_found": "passed",
        "test_downloads_a_model": "failed", "test_gpu_only": "skipped",
        "test_wrong_reference": "failed",
        "test_before": "passed", "test_native_crash": "crashed", "test_after": "passed"}
    assert {(u["test"], u["outcome"]) for u in up["unexpected"]} == {
        (f"{fixture.FAIL}::test_wrong_reference", "failed"),
        (f"{fixture.CRASH}::test_native_crash", "crashed")}
    crash = next(u for u in up["unexpected"] if u["outcome"] == "crashed")["message"]
    assert "killed by SIGSEGV during this test" in crash and "Segmentation fault" in crash
    # the official wheel: the same tests, the crash test passes there
    assert up["wheel"]["counts"] == {"passed": 5, "skipped": 1, "failed": 2}
    assert up["differences"] == [{"test": f"{fixture.CRASH}::test_native_crash",
                                  "compiled": "crashed", "wheel": "passed", "known": None}]
    assert up["known"] == [{"test": fixture.DOWNLOAD, "outcome": "failed",
                            "reason": "downloads from the internet, which CI cannot reach"}]
    crash_file = next(f for f in up["files"] if f["path"] == fixture.CRASH)
    assert [a["ended"] for a in crash_file["attempts"]] == ["killed by SIGSEGV",
                                                            "pytest exited with 0"]
    # junit.xml: the stage failed; every upstream case, marked as what it came to
    root = ET.parse(out / "junit.xml").getroot()
    stages = {c.get("name"): c for c in root.find("testsuite[@name='mxbuild.stages']")}
    assert stages["upstream"].find("failure") is not None
    cases = {c.get("name"): c for c in root.find("testsuite[@name='mxbuild.upstream']")}
    assert cases["test_native_crash"].find("error").get("type") == "crashed"
    assert cases["test_native_crash"].get("classname") == \
        "1.9.1-cpu-debian12.upstream.tests.python.unittest.test_fixture_crash"
    assert cases["test_wrong_reference"].find("failure").get("type") == "failed"
    assert cases["test_downloads_a_model"].find("skipped").get("type") == "known"
    assert cases["test_gpu_only"].find("skipped") is not None
    assert all(cases[n].find("failure") is None and cases[n].find("error") is None
               for n in ("test_ndarray_sum", "test_before", "test_after"))
    html = (out / "report.html").read_text()
    assert "Upstream tests" in html and "test_native_crash" in html


def test_known_outcomes_pass_the_stage_and_the_reference_is_reused(flow):
    """The same .debs with the failure and the crash listed as known (a reason each): the
    stage passes and lists them; the wheel's run comes from the stage cache."""
    _, smoke = flow
    error, cell, _ = smoke(known=(
        KnownOutcome(f"{fixture.FAIL}::test_wrong_reference", ("failed",), "fixture: wrong"),
        KnownOutcome(f"{fixture.CRASH}::test_native_crash", ("crashed",), "fixture: crash")))
    assert error is None, error and error.render()
    up = cell["upstream"]
    assert cell["ok"] and up["ok"] and up["wheel"]["reused"] is True
    assert up["unexpected"] == []
    assert {k["test"].rsplit("::", 1)[1] for k in up["known"]} == {
        "test_downloads_a_model", "test_wrong_reference", "test_native_crash"}
    assert up["differences"][0]["known"] == "fixture: crash"
