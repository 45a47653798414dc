"""report.json / junit.xml / report.html from a run with every kind of outcome; the HTML
grid checked in a real headless Chromium (a screenshot, colours sampled per grid cell)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from mxbuild.errors import MxbuildError
from mxbuild.matrix import load
from mxbuild.report import Axes, Report

from ..conftest import ROOT
from ..require import skip_or_fail

MATRIX = load(ROOT / "matrix.yaml")
OK, FAILED, NOGPU = "1.9.1-cpu-debian12", "1.9.1-cpu-ubuntu22", "1.9.1-cu112-ubuntu20"
SMOKE_JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2">
<testcase classname="tests.test_smoke" name="test_ndarray_arithmetic" time="0.1"/>
<testcase classname="tests.test_gpu" name="test_gpu_model"><skipped message="no GPU"/></testcase>
</testsuite></testsuites>"""


@pytest.fixture
def run(tmp_path):
    """A report of three cells: one ok, one failed at package, one ok without a GPU."""
    report = Report(tmp_path, tmp_path / "logs", Axes.of(MATRIX.cells))
    for cid in (OK, FAILED, NOGPU):
        cell = MATRIX.select(cell=cid)[0]
        record = report.cell(cell)
        try:
            for stage in ("image", "recipe", "package", "publish", "smoke"):
                with report.stage(cell, stage) as logf:
                    logf.write(f"{stage} of {cid}\n")
                    if cid == FAILED and stage == "package":
                        raise MxbuildError("lintian reports 2 error(s)", "see lintian.txt")
            record.artifacts["deb"] = {"size": 27_406_244}
            junit = tmp_path / f"{cid}-junit.xml"
            junit.write_text(SMOKE_JUNIT)
            record.artifacts["smoke"] = {
                "tests": 2, "passed": 1, "failed": 0, "errors": 0, "skipped": 1,
                "gpu_checks": "skipped: no GPU" if cid == NOGPU else None, "junit": str(junit)}
        except Exception:
            report.skip_rest(cell, ["image", "recipe", "package", "publish", "smoke"])
    report.write()
    return tmp_path


def test_report_json_schema(run):
    data = json.loads((run / "report.json").read_text())
    assert data["format"] == 1 and data["ok"] is False
    cells = {c["id"]: c for c in data["cells"]}
    assert cells[OK]["ok"] and not cells[FAILED]["ok"]
    assert [s["status"] for s in cells[FAILED]["stages"]] == [
        "ok", "ok", "failed", "skipped", "skipped"]
    assert "stage package: lintian reports 2 error(s)" in cells[FAILED]["stages"][2]["note"]
    for key in ("mxnet", "variant", "cuda", "distro", "codename", "recipe", "version"):
        assert key in cells[OK]


def test_junit_has_a_case_per_cell_and_stage_plus_the_smoke_cases(run):
    root = ET.parse(run / "junit.xml").getroot()
    stages, smoke = root.findall("testsuite")
    cases = stages.findall("testcase")
    assert len(cases) == 15 and stages.get("failures") == "1" and stages.get("skipped") == "2"
    failed = [c for c in cases if c.find("failure") is not None][0]
    assert (failed.get("classname"), failed.get("name")) == (FAILED, "package")
    assert "log: " in failed.find("failure").text
    names = {(c.get("classname"), c.get("name")) for c in smoke.findall("testcase")}
    assert (f"{OK}.smoke.tests.test_smoke", "test_ndarray_arithmetic") in names
    assert smoke.get("tests") == "4" and smoke.get("skipped") == "2"  # OK + NOGPU cells


def test_html_links_every_stage_log_relative_to_out(run):
    html = (run / "report.html").read_text()
    assert 'href="logs/1.9.1-cpu-ubuntu22/package.log"' in html
    assert (run / "logs/1.9.1-cpu-ubuntu22/package.log").is_file()
    assert "27.4 MB" in html and "GPU: skipped: no GPU" in html
    assert "<script" not in html   # readable from file:// with nothing to run


# ---------------------------------------------------------------- real Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
COLOURS = {"ok": (0xc8, 0xe6, 0xc9), "nogpu": (0xff, 0xf3, 0xc4), "failed": (0xff, 0xcd, 0xd2),
           "notrun": (0xe6, 0xe6, 0xe6), "none": (0xff, 0xff, 0xff)}
GRID_LINE = (0x99, 0x99, 0x99)


def _lines(pixels: list) -> list[int]:
    """Positions of grid lines (#999) along one scan line, runs collapsed."""
    out = []
    for i, p in enumerate(pixels):
        if p == GRID_LINE and (not out or i > out[-1] + 1):
            out.append(i)
    return out


def _screenshot(html, png):
    if CHROMIUM is None:
        skip_or_fail("tools", "chromium is not installed (./setup.sh installs it)")
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    "--window-size=2600,1700", f"--screenshot={png}",
                    f"file://{html}"], check=True, capture_output=True, timeout=120)


@pytest.mark.seconds
def test_chromium_renders_the_grid_with_the_right_colours(run, tmp_path):
    """Find the grid's lines in the screenshot, then sample each grid cell's background
    in its bottom-right corner (text is left-aligned and never reaches it)."""
    from PIL import Image
    png = tmp_path / "report.png"
    _screenshot(run / "report.html", png)
    image = Image.open(png).convert("RGB")
    axes = Axes.of(MATRIX.cells)
    y_head = 70   # inside the header row, below the page title
    xs = _lines([image.getpixel((x, y_head)) for x in range(image.width)])
    ys = _lines([image.getpixel((xs[0] + 3, y)) for y in range(image.height)])
    assert len(xs) == len(axes.variants) + 2, xs        # distro column + variants
    assert len(ys) == len(axes.distros) + 2, ys         # header row + distros
    cells = {(c.distro.name + c.arch.suffix, c.variant): c.id for c in MATRIX.cells}
    expected = {OK: "ok", FAILED: "failed", NOGPU: "nogpu"}
    for r, distro in enumerate(axes.distros):
        for c, variant in enumerate(axes.variants):
            x, y = xs[c + 2] - 4, ys[r + 2] - 4
            cid = cells.get((distro, variant))
            want = expected.get(cid, "notrun" if cid else "none")
            assert image.getpixel((x, y)) == COLOURS[want], (distro, variant, cid, want)


def test_live_table_shows_each_cells_stage_elapsed_and_result(tmp_path):
    from rich.console import Console
    cells = MATRIX.select(variant="cpu")[:2]
    report = Report(tmp_path, tmp_path / "logs")
    report._pending = cells

    def text():
        out = Console(width=120, record=True, file=open(os.devnull, "w"))
        out.print(report._table())
        return out.export_text()
    assert text().count("pending") == 2
    with report.stage(cells[0], "package"):
        row = [line for line in text().splitlines() if cells[0].id in line][0]
        assert "package" in row and "…" in row
    row = [line for line in text().splitlines() if cells[0].id in line][0]
    assert "✓" in row and "pending" in [line for line in text().splitlines()
                                          if cells[1].id in line][0]


@pytest.mark.parametrize("cause", [
    OSError(28, "No space left on device"),
    MxbuildError("cannot start a container of x: 500 Server Error: write /var/lib/docker/"
                 "tmp/a: no space left on device", "start a Docker engine"),
])
def test_a_full_disk_is_named_with_the_fix(tmp_path, cause):
    # stop 29's CI: "stage recipe: OSError: [Errno 28] No space left on device" with no fix
    cell = MATRIX.select(variant="cpu")[0]
    report = Report(tmp_path, tmp_path / "logs")
    with pytest.raises(MxbuildError) as info:
        with report.stage(cell, "recipe"):
            raise cause
    assert info.value.exit_code == 6
    assert "No space left on device" in info.value.message or \
        "no space left on device" in info.value.message
    assert info.value.hint.startswith("free disk space where the out directory, the cache "
                                      "directory and Docker's data root live")
    assert "fix: free disk space" in info.value.render()


def test_other_failures_keep_their_own_fix(tmp_path):
    cell = MATRIX.select(variant="cpu")[0]
    report = Report(tmp_path, tmp_path / "logs")
    with pytest.raises(MxbuildError) as info:
        with report.stage(cell, "recipe"):
            raise OSError(13, "Permission denied")
    assert "free disk space" not in (info.value.hint or "")
