"""arm64 cells through the parts that need no engine: matrix (smoke_tolerance as data,
`invoke matrix --arch arm64`), plan, the smoke's expectations and the differences it
reports, the client image's requirements, and the reports (json, junit, html)."""
from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
import zipfile

import pytest

from mxbuild import cli, options, plan, smoke
from mxbuild.context import open_run
from mxbuild.errors import MatrixError
from mxbuild.matrix import Tolerance, load, parse
from mxbuild.payload import Payload
from mxbuild.report import Axes, Report
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage
from mxbuild.smoke import SmokeCounts, client_image

from ..conftest import ROOT, copy_gnupg_home, make_deb

MATRIX = load(ROOT / "matrix.yaml")
ARM = "1.9.1-cpu-debian12-arm64"


def arm64_cell():
    return MATRIX.select(cell=ARM, arch="arm64")[0]


# ---------------------------------------------------------------- matrix

def test_smoke_tolerance_is_data_per_architecture_and_per_build(matrix_doc):
    assert MATRIX.select(cell="1.9.1-cpu-debian12")[0].smoke_tolerance == Tolerance(1e-5, 1e-6)
    assert arm64_cell().smoke_tolerance == MATRIX.architectures["arm64"].smoke_tolerance
    build = next(b for b in matrix_doc["variants"]["cpu"]["builds"]
                 if b.get("architectures") == ["arm64"])
    build["smoke_tolerance"] = {"rtol": 2.0e-3, "atol": 1.0e-4}
    cell = parse(matrix_doc, "matrix.yaml").select(cell=ARM, arch="arm64")[0]
    assert cell.smoke_tolerance == Tolerance(2e-3, 1e-4)
    build["smoke_tolerance"] = {"rtol": "1e-4", "atol": 1.0e-5}   # YAML 1.1: a string
    with pytest.raises(MatrixError, match=r"smoke_tolerance\.rtol") as err:
        parse(matrix_doc, "matrix.yaml")
    assert "1.0e-4" in err.value.hint


def test_invoke_matrix_arch_arm64_lists_the_arm64_cells(capsys):
    cli.show_matrix(cli.Selectors(arch="arm64"), as_json=True)
    cells = json.loads(capsys.readouterr().out)
    assert [(c["id"], c["arch"]) for c in cells] == [
        (f"1.9.1-cpu-debian1{n}-arm64", "arm64") for n in (1, 2, 3)]


# ---------------------------------------------------------------- plan

def test_plan_names_the_architecture_and_the_emulated_smoke(tmp_path, signing_key):
    opts = dataclasses.replace(options.resolve(out_dir=str(tmp_path / "out")),
                               cache_dir=tmp_path / "cache")
    with Signer(copy_gnupg_home(signing_key, tmp_path / "gnupg")) as signer:
        _plan_steps(tmp_path, opts, signer)


def _plan_steps(tmp_path, opts, signer):
    storage = LocalStorage(tmp_path / "repo")
    cell = arm64_cell()
    # the amd64 package of the same version is published: the arm64 one is not
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", cell.deb_version),
                                     cell.codename, cell.component)])
    ctx = open_run(opts, storage=storage, gpu=False)
    steps = {s.stage: s for s in plan.plan([cell], ctx, keyring=signer.public_keyring())}
    assert steps["publish"].action == "run" and "bookworm/cpu (arm64)" in steps["publish"].reason
    assert "debian12 arm64 container under emulation (qemu-aarch64)" in steps["smoke"].reason
    publish(storage, signer, [Upload(make_deb(tmp_path, "libmxnet", cell.deb_version,
                                              arch="arm64"), cell.codename, cell.component)])
    steps = {s.stage: s for s in plan.plan([cell], ctx, keyring=signer.public_keyring())}
    assert steps["publish"].action == "reuse"


# ---------------------------------------------------------------- smoke

def test_expectations_carry_the_architecture_and_its_tolerance(tmp_path):
    cell = arm64_cell()
    (tmp_path / "libmxnet.so").write_bytes(b"\x7fELF")
    payload = Payload(tmp_path, {"libmxnet.so": "ab" * 32}, {}, "compile", 1704067200)
    expect = smoke.expectations(cell, payload)
    assert expect["library_path"] == "/usr/lib/aarch64-linux-gnu/libmxnet.so"
    assert (expect["arch"], expect["machine"]) == ("arm64", "aarch64")
    assert (expect["rtol"], expect["atol"]) == (1e-4, 1e-5)
    amd64 = smoke.expectations(MATRIX.select(cell="1.9.1-cpu-debian12")[0], payload)
    assert (amd64["rtol"], amd64["atol"], amd64["machine"]) == (1e-5, 1e-6, "x86_64")


def test_the_largest_difference_of_each_suite_is_reported(tmp_path):
    lines = tmp_path / "diffs.jsonl"
    lines.write_text('{"check": "module_single", "max_abs_diff": 2e-6, "tolerance_ratio": 0.1}\n'
                     '{"check": "module_batch", "max_abs_diff": 7e-6, "tolerance_ratio": 0.4}\n')
    assert smoke.python_diffs(lines) == (7e-6, 0.4)
    assert smoke.python_diffs(tmp_path / "none") == (None, None)
    junit = tmp_path / "junit.xml"
    junit.write_text(  # what examples/jvm-predictor's Report writes
        '<testsuite name="jvm_predictor" tests="2">'
        '<testcase name="single_matches"><system-out>max |got-want| 3.0E-6 over 10 values '
        '(rtol 1.0E-4, atol 1.0E-5)</system-out></testcase>'
        '<testcase name="batch_matches"><system-out>max |got-want| 9.5367432E-7 over 80 '
        'values (rtol 1.0E-4, atol 1.0E-5)</system-out></testcase></testsuite>')
    assert smoke.jvm_max_diff(junit) == 3e-6
    python = SmokeCounts(8, 8, 0, 0, 0, None, [], 7e-6, 0.4, {"python": 61.0})
    jvm = SmokeCounts(6, 6, 0, 0, 0, None, [], 3e-6, None, {"jvm": 40.5})
    both = python + jvm
    assert (both.tests, both.max_abs_diff, both.tolerance_ratio, both.seconds) == (
        14, 7e-6, 0.4, {"python": 61.0, "jvm": 40.5})
    assert math.isnan((python + dataclasses.replace(jvm, max_abs_diff=math.nan)).max_abs_diff)
    assert SmokeCounts(**both.as_dict()) == both        # the smoke cache's manifest


def test_the_arm64_client_installs_the_wheels_requirements_not_the_wheel(tmp_path):
    wheel = tmp_path / "mxnet-1.9.1-py3-none-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:   # the official wheel's METADATA lines
        zf.writestr("mxnet-1.9.1.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: mxnet\nVersion: 1.9.1\n"
                    "Requires-Dist: numpy (<2.0.0,>1.16.0)\n"
                    "Requires-Dist: requests (<3,>=2.20.0)\n"
                    "Requires-Dist: graphviz (<0.9.0,>=0.8.1)\n"
                    'Requires-Dist: pytest ; extra == "test"\n')
    assert client_image.wheel_requirements(wheel) == [
        "numpy<2.0.0,>1.16.0", "requests<3,>=2.20.0", "graphviz<0.9.0,>=0.8.1"]
    cell = arm64_cell()
    assert client_image.requirements_for(cell, wheel) == [
        "numpy<2.0.0,>1.16.0", "requests<3,>=2.20.0", "graphviz<0.9.0,>=0.8.1",
        *cell.distro.smoke.pip]
    trixie = MATRIX.select(cell="1.9.1-cpu-debian13-arm64", arch="arm64")[0]
    assert client_image.requirements_for(trixie, wheel) == list(trixie.distro.smoke.pip)


# ---------------------------------------------------------------- reports

def test_reports_show_the_architecture_and_the_emulated_smoke(tmp_path):
    cells = [MATRIX.select(cell="1.9.1-cpu-debian12")[0], arm64_cell()]
    report = Report(tmp_path, tmp_path / "logs", Axes.of(MATRIX.select(arch="all")))
    for cell in cells:
        for stage in ("image", "recipe", "package", "publish", "smoke"):
            with report.stage(cell, stage) as logf:
                logf.write(f"{stage}\n")
        junit = tmp_path / f"{cell.id}.xml"
        junit.write_text('<testsuite><testcase classname="tests.test_smoke" '
                         'name="test_runs_on_the_cell_architecture"/></testsuite>')
        report.cell(cell).artifacts["smoke"] = {
            **SmokeCounts(1, 1, 0, 0, 0, None, [], 4.2e-6, 0.3, {"python": 12.0}).as_dict(),
            "junit": str(junit)}
    report.write()
    data = json.loads((tmp_path / "report.json").read_text())
    assert {c["id"]: c["arch"] for c in data["cells"]} == {
        "1.9.1-cpu-debian12": "amd64", ARM: "arm64"}
    assert data["cells"][1]["smoke"]["max_abs_diff"] == 4.2e-6
    root = ET.parse(tmp_path / "junit.xml").getroot()
    archs = {(c.get("classname"), c.get("name")): c.find("properties/property").get("value")
             for c in root.iter("testcase")}
    assert archs[(ARM, "smoke")] == "arm64" and archs[("1.9.1-cpu-debian12", "smoke")] == "amd64"
    assert archs[(f"{ARM}.smoke.tests.test_smoke", "test_runs_on_the_cell_architecture")] == \
        "arm64"
    html = (tmp_path / "report.html").read_text()
    assert '<th class="distro">debian12-arm64</th>' in html
    assert f'data-cell="{ARM}"' in html and "max |Δ| 4.2e-06" in html
