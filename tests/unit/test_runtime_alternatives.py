"""GPU Depends: NVIDIA's package names, with the distro's own package as an alternative
where matrix.yaml declares one (runtime_packages), and the GPU check harness's plan of
where each soname comes from on a host without NVIDIA's repository."""
from pathlib import Path

import pytest

from mxbuild import deb, matrix
from mxbuild.errors import MatrixError
from tests import gpu_hosts


def _cell(m, cell_id):
    return next(c for c in m.cells if c.id == cell_id)


def _with_alternative(doc, variant="cu117", soname="libcudart.so.11.0",
                      distro=None):
    package = doc["variants"][variant]["runtime_packages"][soname]
    package = package["package"] if isinstance(package, dict) else package
    doc["variants"][variant]["runtime_packages"][soname] = {
        "package": package, "distro": distro or {"ubuntu22": "libcudart11.0"}}
    return doc


def test_depends_name_nvidias_packages_and_never_the_driver():
    m = matrix.load(Path(__file__).parents[2] / "matrix.yaml")
    cell = _cell(m, "1.9.1-cu112-ubuntu20")
    depends = deb.host_depends(cell)
    assert depends.split(", ") == sorted(p for so, p in cell.runtime_packages if p != "driver")
    assert "driver" not in depends and "|" not in depends
    assert not any(c.runtime_alternatives for c in m.cells if c.distro.name != "ubuntu22")


def test_an_alternative_applies_to_the_cells_of_its_distro_only(matrix_doc):
    m = matrix.parse(_with_alternative(matrix_doc))
    jammy, focal = _cell(m, "1.9.1-cu117-ubuntu22"), _cell(m, "1.9.1-cu117-ubuntu20")
    assert "cuda-cudart-11-7 | libcudart11.0" in deb.host_depends(jammy).split(", ")
    assert "cuda-cudart-11-7" in deb.host_depends(focal).split(", ")
    assert "|" not in deb.host_depends(focal)
    assert jammy.runtime_depends()["libcudart.so.11.0"] == "cuda-cudart-11-7 | libcudart11.0"
    assert "libcuda.so.1" not in jammy.runtime_depends()


@pytest.mark.parametrize("alternative, where", [
    ({"debian12": "libcudart11.0"}, "cu117 has no cell on debian12"),
    ({"ubuntu99": "libcudart11.0"}, "is not defined under distros"),
    ({"ubuntu22": "Not A Package"}, "malformed"),
    ({}, "a mapping like"),
])
def test_bad_alternatives_are_refused_naming_the_key(matrix_doc, alternative, where):
    with pytest.raises(MatrixError) as info:
        matrix.parse(_with_alternative(matrix_doc, distro=alternative or None)
                     if alternative else _empty_alternatives(matrix_doc))
    assert where in info.value.render()
    assert "runtime_packages.libcudart.so.11.0" in info.value.render()


def _empty_alternatives(doc):
    doc["variants"]["cu117"]["runtime_packages"]["libcudart.so.11.0"] = {
        "package": "cuda-cudart-11-7", "distro": {}}
    return doc


def test_the_driver_takes_no_alternative(matrix_doc):
    matrix_doc["variants"]["cu117"]["runtime_packages"]["libcuda.so.1"] = {
        "package": "driver", "distro": {"ubuntu22": "libcuda1"}}
    with pytest.raises(MatrixError, match="driver"):
        matrix.parse(matrix_doc)


# ------------------------------------------------------------------ the harness's plan

def _pypi(*sonames):
    pin = gpu_hosts.PYPI_CUDA11[0]
    return {so: (pin, Path("/x") / so) for so in sonames}


PYPI = _pypi("libcudart.so.11.0", "libcublas.so.11", "libcublasLt.so.11", "libcufft.so.10",
             "libcurand.so.10", "libcusolver.so.11", "libcusparse.so.11", "libnvrtc.so.11.2",
             "libnvToolsExt.so.1", "libcudnn.so.8", "libnccl.so.2")


def test_cuda_11_cells_get_the_pypi_runtime_and_the_distros_driver():
    m = matrix.load(Path(__file__).parents[2] / "matrix.yaml")
    cell = _cell(m, "1.9.1-cu112-ubuntu20")
    got = gpu_hosts.plan(cell, distro_candidates=set(), driver_package="libnvidia-compute-535",
                         distro_cuda="10.1.243-3", pypi=PYPI)
    assert {p.soname: p.source for p in got} == {
        so: ("driver" if pkg == "driver" else "pypi") for so, pkg in cell.runtime_packages}
    assert next(p for p in got if p.source == "driver").package == "libnvidia-compute-535"


def test_a_declared_alternative_with_a_candidate_comes_from_the_distro(matrix_doc):
    cell = _cell(matrix.parse(_with_alternative(matrix_doc)), "1.9.1-cu117-ubuntu22")
    got = {p.soname: p for p in gpu_hosts.plan(
        cell, distro_candidates={"libcudart11.0"}, driver_package=None, distro_cuda="11.5.1",
        pypi=PYPI)}
    assert (got["libcudart.so.11.0"].source, got["libcudart.so.11.0"].package) == \
        ("distro", "libcudart11.0")
    assert got["libcublas.so.11"].source == "pypi"
    assert got["libcuda.so.1"].source == "missing" and "driver package" in got["libcuda.so.1"].why
    # no candidate (the archive lacks it): the PyPI wheel instead
    got = {p.soname: p for p in gpu_hosts.plan(cell, distro_candidates=set(),
                                                 driver_package="x", distro_cuda=None,
                                                 pypi=PYPI)}
    assert got["libcudart.so.11.0"].source == "pypi"


def test_unserved_sonames_are_named_with_the_reason():
    m = matrix.load(Path(__file__).parents[2] / "matrix.yaml")
    cu110 = {p.soname: p for p in gpu_hosts.plan(
        _cell(m, "1.9.1-cu110-ubuntu20"), distro_candidates=set(), driver_package="d",
        distro_cuda="10.1.243-3", pypi=PYPI)}
    missing = {so for so, p in cu110.items() if p.source == "missing"}
    assert missing == {"libnvrtc.so.11.0", "libcusolver.so.10"}
    assert "ship libnvrtc.so.11.2, not libnvrtc.so.11.0" in cu110["libnvrtc.so.11.0"].why
    assert "focal's archive has CUDA 10.1.243-3" in cu110["libcusolver.so.10"].why
    cu90 = gpu_hosts.plan(_cell(m, "1.6.0-cu90-ubuntu16"), distro_candidates=set(),
                          driver_package=None, distro_cuda="7.5.18-0ubuntu1", pypi=PYPI)
    assert {p.source for p in cu90} == {"missing"}
    assert all("CUDA 9.0" in p.why and "CUDA 11 and 12 only" in p.why
               for p in cu90 if p.soname != "libcuda.so.1")
