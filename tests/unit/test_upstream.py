"""The upstream stage's parts that need no Docker: the recorder plugin and the runner's
crash/resume/time-limit loop on real pytest processes of the host (a test that really
segfaults), the verdict against the known outcomes and the wheel's, the JUnit file, the
schema of matrix.yaml's upstream_tests and the test tree that travels with the .debs."""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mxbuild import matrix
from mxbuild.containers import Result
from mxbuild.errors import ConfigError, MatrixError, StageError
from mxbuild.matrix import KnownOutcome, UpstreamTestFile, UpstreamTests
from mxbuild.upstream import compare, runner, tree
from mxbuild.upstream.outcomes import Attempt, CaseResult, replay

FIXTURE = textwrap.dedent("""\
    import ctypes, os, time
    import pytest

    def test_passes():
        assert 1 + 1 == 2

    def test_fails():
        assert 1 + 1 == 3, "arithmetic is broken"

    @pytest.mark.skip(reason="not here")
    def test_skipped():
        pass

    def test_segfaults():
        ctypes.string_at(0)          # reads address 0: SIGSEGV

    def test_after_the_crash():
        pass

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture broke")

    def test_setup_error(broken):
        pass

    @pytest.mark.xfail(reason="known bug")
    def test_expected_failure():
        assert False
    """)


class HostBox:
    """The runner's container interface (run, copy_out) on the host: the same commands,
    real pytest processes. The runner's paths under /srv/upstream map to `root`."""

    def __init__(self, root: Path):
        self.root = root

    def _host(self, path: str) -> str:
        return path.replace(runner.ROOT, str(self.root))

    def run(self, cmd, *, env=None, workdir=None, check=True):
        bindir = str(Path(sys.executable).parent)
        full_env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
                    **{k: self._host(v) for k, v in (env or {}).items()}}
        proc = subprocess.run([self._host(c) for c in cmd], cwd=self._host(workdir),
                              env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        return Result(proc.returncode, proc.stdout)

    def copy_out(self, path: str, host_dir: Path) -> Path:
        from docker.errors import NotFound
        src = Path(self._host(path))
        if not src.exists():
            raise NotFound(path)
        dest = host_dir / src.name
        dest.write_bytes(src.read_bytes())
        return dest


@pytest.fixture
def box(tmp_path):
    root = tmp_path / "srv"
    for sub in (runner.SRC, runner.PLUGIN_DIR, runner.EVENTS_DIR):
        Path(sub.replace(runner.ROOT, str(root))).mkdir(parents=True)
    plugin = Path(runner.PLUGIN_DIR.replace(runner.ROOT, str(root))) / f"{runner.PLUGIN}.py"
    plugin.write_text(Path(runner.recorder.__file__).read_text())
    src = Path(runner.SRC.replace(runner.ROOT, str(root)))
    (src / "pytest.ini").write_text("[pytest]\n")
    (src / "tests").mkdir()
    (src / "tests/test_fixture.py").write_text(FIXTURE)
    return HostBox(root)


def test_a_crash_is_named_and_the_rest_of_the_file_still_runs(box):
    run = runner.run_file(box, UpstreamTestFile("tests/test_fixture.py", timeout=120),
                          "00-fixture", io.StringIO())
    got = {t.split("::")[1]: r.outcome for t, r in run.results.items()}
    assert got == {"test_passes": "passed", "test_fails": "failed", "test_skipped": "skipped",
                   "test_segfaults": "crashed", "test_after_the_crash": "passed",
                   "test_setup_error": "error", "test_expected_failure": "xfailed"}
    assert [a.ended for a in run.attempts] == ["killed by SIGSEGV", "pytest exited with 1"]
    crash = run.results["tests/test_fixture.py::test_segfaults"].message
    assert "killed by SIGSEGV during this test" in crash
    assert "Fatal Python error: Segmentation fault" in crash    # faulthandler's dump
    assert "arithmetic is broken" in run.results["tests/test_fixture.py::test_fails"].message
    assert "fixture broke" in run.results["tests/test_fixture.py::test_setup_error"].message


@pytest.mark.seconds
def test_select_and_time_limit(box):
    src = box.root / "src/tests"
    (src / "test_slow.py").write_text("import time\n\ndef test_quick():\n    pass\n\n"
                                      "def test_hangs():\n    time.sleep(600)\n\n"
                                      "def test_never_reached():\n    pass\n")
    picked = runner.run_file(box, UpstreamTestFile("tests/test_slow.py", "quick", 60),
                             "01-slow", io.StringIO())
    assert {t: r.outcome for t, r in picked.results.items()} == {
        "tests/test_slow.py::test_quick": "passed"}
    # the limit the hang waits for: six times what a run up to test_quick took just now
    # (~0.5 s on an idle machine: a 3 s limit), so that a loaded machine still reaches
    # test_hangs in time (the runner gives the first attempt the limit's whole seconds)
    limit = 1 + max(3, math.ceil(6 * picked.seconds))
    run = runner.run_file(box, UpstreamTestFile("tests/test_slow.py", timeout=limit),
                          "02-slow", io.StringIO())
    got = {t.split("::")[1]: r.outcome for t, r in run.results.items()}
    assert got == {"test_quick": "passed", "test_hangs": "timeout",
                   "test_never_reached": "not-run"}
    assert run.attempts[-1].timed_out and limit - 1 <= run.seconds < limit + 30
    assert "test_hangs" in run.results["tests/test_slow.py::test_hangs"].message  # SIGTERM dump
    nothing = runner.run_file(box, UpstreamTestFile("tests/test_slow.py", "nomatch", 60),
                              "03-slow", io.StringIO())
    assert nothing.results["tests/test_slow.py"].outcome == "error"     # selects nothing


def test_an_import_crash_is_the_files_own_entry(box):
    (box.root / "src/tests/test_import.py").write_text(
        "import ctypes\nctypes.string_at(0)\n\ndef test_x():\n    pass\n")
    run = runner.run_file(box, UpstreamTestFile("tests/test_import.py", timeout=60),
                          "04-import", io.StringIO())
    assert len(run.attempts) == 1
    assert run.results["tests/test_import.py"].outcome == "crashed"
    assert "outside any test" in run.results["tests/test_import.py"].message


def test_replay_without_any_event_of_a_process_that_died_at_start():
    results = replay("tests/t.py", [], [Attempt(139, 1.0, False, 0, "Segmentation fault")])
    assert results["tests/t.py"].outcome == "crashed"


def R(outcome):       # noqa: N802
    return CaseResult(outcome, f"{outcome} message")


KNOWN = (KnownOutcome("t.py::test_download*", ("failed", "error"), "needs the internet"),
         KnownOutcome("t.py::test_random", ("failed",), "stochastic"),
         KnownOutcome("t.py::test_gone", ("failed",), "was fixed"))


def test_verdict_known_unexpected_and_differences():
    compiled = {"t.py::test_ok": R("passed"), "t.py::test_download_zoo": R("failed"),
                "t.py::test_bug": R("failed"), "t.py::test_deconv": R("crashed"),
                "t.py::test_random": R("passed"), "t.py::test_skip": R("skipped"),
                "t.py::test_download_crash": R("crashed")}
    wheel = {"t.py::test_ok": R("passed"), "t.py::test_download_zoo": R("failed"),
             "t.py::test_bug": R("failed"), "t.py::test_deconv": R("passed"),
             "t.py::test_random": R("failed"), "t.py::test_skip": R("passed"),
             "t.py::test_only_wheel": R("passed"), "t.py::test_download_crash": R("failed")}
    v = compare.judge(compiled, wheel, KNOWN)
    assert not v.ok
    assert sorted(t for t, _ in v.unexpected) == ["t.py::test_bug", "t.py::test_deconv",
                                                 "t.py::test_download_crash"]  # never implied
    assert {(d.test, d.compiled, d.wheel, d.known) for d in v.differences} == {
        ("t.py::test_deconv", "crashed", "passed", None),
        ("t.py::test_random", "passed", "failed", "stochastic"),
        ("t.py::test_skip", "skipped", "passed", None),
        ("t.py::test_only_wheel", "absent", "passed", None),
        ("t.py::test_download_crash", "crashed", "failed", "needs the internet")}
    assert v.known == (("t.py::test_download_zoo", "failed", "needs the internet"),)
    assert v.not_seen == ("t.py::test_gone",)
    assert v.summary().startswith("3 unexpected (1 failed, 2 crashed: ")
    assert "; 3 differ from the official wheel: " in v.summary()


def test_verdict_ok_when_everything_bad_is_known_and_nothing_differs():
    compiled = {"t.py::test_ok": R("passed"), "t.py::test_download_a": R("error")}
    v = compare.judge(compiled, dict(compiled), KNOWN)
    assert v.ok and v.differences == () and v.summary() == "all as expected"


def test_junit_marks_each_outcome():
    from mxbuild.upstream.outcomes import FileRun
    run = FileRun("tests/t.py", None, 60, (), {
        "tests/t.py::test_ok": R("passed"), "tests/t.py::test_bug": R("failed"),
        "tests/t.py::test_deconv": R("crashed"), "tests/t.py::test_download": R("failed"),
        "tests/t.py::test_skip": R("skipped")})
    wheel = {"tests/t.py::test_ok": R("passed"), "tests/t.py::test_bug": R("failed"),
             "tests/t.py::test_deconv": R("passed"), "tests/t.py::test_download": R("failed"),
             "tests/t.py::test_skip": R("skipped"), "tests/t.py::test_new": R("passed")}
    known = (KnownOutcome("tests/t.py::test_download", ("failed",), "needs the internet"),)
    v = compare.judge(run.results, wheel, known)
    root = ET.fromstring(compare.junit([run], wheel, v))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["test_ok"].find("failure") is None and cases["test_ok"].find("error") is None
    assert cases["test_bug"].find("failure").get("type") == "failed"
    crash = cases["test_deconv"].find("error")
    assert crash.get("type") == "crashed" and "the official wheel: passed" in crash.get("message")
    assert cases["test_download"].find("skipped").get("type") == "known"
    assert "needs the internet" in cases["test_download"].find("skipped").get("message")
    assert cases["test_new"].find("failure").get("type") == "differs"
    assert cases["test_ok"].get("classname") == "tests.t"
    prop = cases["test_deconv"].find("properties/property")
    assert (prop.get("name"), prop.get("value")) == ("wheel", "passed")
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) \
        == ("6", "2", "1", "2")


# ---------------------------------------------------------------- matrix.yaml

def test_the_real_matrix_lists_the_1_9_1_subset():
    cell = matrix.load(Path(__file__).parents[2] / "matrix.yaml").select(
        cell="1.9.1-cpu-debian12")[0]
    spec = cell.upstream_tests
    names = [f.path.rsplit("/", 1)[1] for f in spec.files]
    assert names[0] == "test_operator.py" and "convolution" in spec.files[0].select
    assert {"test_gluon.py", "test_ndarray.py", "test_symbol.py", "test_module.py",
            "test_executor.py", "test_loss.py", "test_sparse_ndarray.py"} <= set(names)
    assert any(p.startswith("nose==1.3.7") for p in spec.pip)
    assert all(k.reason for k in spec.known)


@pytest.mark.parametrize("mutate,key,expected", [
    (lambda u: u.update(files=[]), "upstream_tests.1.9.1.files", "non-empty list"),
    (lambda u: u["files"].append("tests/elsewhere/test_x.py"), "upstream_tests.1.9.1.files[8].path",
     "add its folder to ship"),
    (lambda u: u["ship"].append("../outside"), "upstream_tests.1.9.1.ship[4]", "without '..'"),
    (lambda u: u["files"].append({"path": "tests/python/unittest/test_x.py", "timeout": 0}),
     "upstream_tests.1.9.1.files[8].timeout", "positive number of seconds"),
    (lambda u: u.update(known=[{"test": "x", "reason": "r", "outcomes": ["exploded"]}]),
     "upstream_tests.1.9.1.known[0].outcomes", "crashed"),
    (lambda u: u.update(known=[{"test": "x"}]), "upstream_tests.1.9.1.known[0].reason",
     "why this outcome is expected"),
])
def test_bad_upstream_tests_are_rejected_with_the_key(matrix_doc, mutate, key, expected):
    mutate(matrix_doc["upstream_tests"]["1.9.1"])
    with pytest.raises(MatrixError) as err:
        matrix.parse(matrix_doc)
    assert key in err.value.render() and expected in err.value.render()


def test_known_defaults_to_failed_and_error_never_crashed(matrix_doc):
    matrix_doc["upstream_tests"]["1.9.1"]["known"] = [{"test": "a::b", "reason": "r"}]
    (k,) = matrix.parse(matrix_doc).select(cell="1.9.1-cpu-debian12")[0].upstream_tests.known
    assert k.outcomes == ("failed", "error")
    assert k.matches("a::b", "failed") and not k.matches("a::b", "crashed")
    assert KnownOutcome("a::b[1-2]", ("failed",), "r").matches("a::b[1-2]", "failed")


# ---------------------------------------------------------------- the test tree

SPEC = UpstreamTests("1.9.1", ("pytest.ini", "tests/python/unittest"),
                     (UpstreamTestFile("tests/python/unittest/test_a.py"),))


def _tree(root: Path) -> Path:
    for rel, text in {"pytest.ini": "[pytest]\n", "tests/python/unittest/test_a.py": "x = 1\n",
                      "tests/python/unittest/common.py": "y = 2\n",
                      "tests/python/unittest/__pycache__/common.cpython-311.pyc": "junk",
                      "python/mxnet/__init__.py": "not shipped\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_tests_are_collected_the_same_from_a_tree_and_a_tarball(tmp_path):
    src = _tree(tmp_path / "apache-mxnet-src-1.9.1-incubating")
    from_dir = tree.collect(src, True, SPEC, tmp_path / "a" / tree.TESTS_TAR)
    tarball = tmp_path / "src.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    from_tar = tree.collect(tarball, False, SPEC, tmp_path / "b" / tree.TESTS_TAR)
    assert from_dir.read_bytes() == from_tar.read_bytes()
    assert tarfile.open(from_dir).getnames() == [
        "pytest.ini", "tests/python/unittest/common.py", "tests/python/unittest/test_a.py"]


def test_a_tree_without_the_tests_is_named(tmp_path):
    src = _tree(tmp_path / "src")
    (src / "tests/python/unittest/test_a.py").unlink()
    with pytest.raises(ConfigError) as err:
        tree.collect(src, True, SPEC, tmp_path / tree.TESTS_TAR)
    assert "tests/python/unittest/test_a.py" in err.value.message
    assert not (tmp_path / tree.TESTS_TAR).exists()


# ---------------------------------------------------------------- report

def test_the_run_report_carries_the_upstream_cases_and_lists(tmp_path):
    """junit.xml gains suite mxbuild.upstream (classname <cell>.upstream.<module>) only in
    runs with the stage; report.html shows the counts and the lists of the cell."""
    from mxbuild.report import Axes, Report
    from mxbuild.upstream.outcomes import FileRun
    cell = matrix.load(Path(__file__).parents[2] / "matrix.yaml").select(
        cell="1.9.1-cpu-debian12")[0]
    run = FileRun("tests/t.py", None, 60, (), {"tests/t.py::test_ok": R("passed"),
                                               "tests/t.py::test_deconv": R("crashed")})
    wheel = {"tests/t.py::test_ok": R("passed"), "tests/t.py::test_deconv": R("passed")}
    verdict = compare.judge(run.results, wheel, ())
    junit = tmp_path / "upstream-junit.xml"
    junit.write_text(compare.junit([run], wheel, verdict))
    report = Report(tmp_path, tmp_path / "logs", Axes.of([cell]))
    with pytest.raises(StageError):
        with report.stage(cell, "upstream"):
            report.cell(cell).artifacts["upstream"] = {
                **compare.report_dict([run], [run], verdict), "junit": str(junit),
                "wheel": {"counts": {"passed": 2}}}
            raise ConfigError("upstream tests: " + verdict.summary(), "")
    report.write()
    root = ET.parse(tmp_path / "junit.xml").getroot()
    (case,) = [c for c in root.find("testsuite[@name='mxbuild.upstream']")
               if c.get("name") == "test_deconv"]
    assert case.get("classname") == "1.9.1-cpu-debian12.upstream.tests.t"
    assert case.find("error").get("type") == "crashed"
    html = (tmp_path / "report.html").read_text()
    assert "upstream: 1 passed, 0 skipped, 1 failing, 0 known, 1 differ" in html
    assert "crashed: tests/t.py::test_deconv" in html
    assert "tests/t.py::test_deconv: crashed here, passed with the wheel" in html


def test_a_run_without_the_stage_has_no_upstream_suite(tmp_path):
    from mxbuild.report import Report
    Report(tmp_path, tmp_path / "logs").write()
    names = [s.get("name") for s in ET.parse(tmp_path / "junit.xml").getroot()]
    assert names == ["mxbuild.stages", "mxbuild.smoke"]
