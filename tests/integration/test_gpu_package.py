"""GPU packaging mechanics with a small real ELF payload (the 922 MB official GPU binary is
exercised by `invoke build --cuda 9 --distro ubuntu16`, not in CI): mapped CUDA sonames
become Depends, the driver is no dependency, an unmapped one fails the package step."""
import dataclasses
import io
import re
import subprocess

import pytest

from mxbuild import deb
from mxbuild.errors import MxbuildError
from mxbuild.fetch import sha256_file
from mxbuild.payload import Payload


def _so(path, soname, source, *link):
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), "-x", "c", "-",
                    f"-Wl,-soname,{soname}", *link], input=source, text=True, check=True)


@pytest.fixture(scope="module")
def gpu_payload(tmp_path_factory):
    """libmxnet.so NEEDing libcudart.so.9.0 and libcuda.so.1 (stubs exist only to link)."""
    work = tmp_path_factory.mktemp("gpu")
    stubs = work / "stubs"
    stubs.mkdir()
    _so(stubs / "libcudart.so.9.0", "libcudart.so.9.0", "int cudaRuntimeGetVersion(int*v){return 0;}")
    _so(stubs / "libcuda.so.1", "libcuda.so.1", "int cuInit(unsigned f){return 0;}")
    _so(stubs / "libcufft.so.9.0", "libcufft.so.9.0", "int cufftCreate(void*p){return 0;}")
    (stubs / "libcudart.so").symlink_to("libcudart.so.9.0")
    (stubs / "libcuda.so").symlink_to("libcuda.so.1")
    (stubs / "libcufft.so").symlink_to("libcufft.so.9.0")
    payload = work / "payload"
    (payload / "libmxnet").mkdir(parents=True)
    _so(payload / "libmxnet.so", "libmxnet.so",
        "int cudaRuntimeGetVersion(int*);int cuInit(unsigned);int cufftCreate(void*);"
        "int MXGetVersion(int*v){cuInit(0);cufftCreate(0);return cudaRuntimeGetVersion(v);}",
        f"-L{stubs}", "-Wl,--no-as-needed", "-lcudart", "-lcuda", "-lcufft",
        "-Wl,-rpath,$ORIGIN/libmxnet")
    files = {"libmxnet.so": sha256_file(payload / "libmxnet.so")}
    return Payload(payload, files, dict(files), "a test payload", 1652763094)


def _gpu_cell(cpu_cell, runtime):
    return dataclasses.replace(cpu_cell, variant="cu90", cuda="9.0",
                               runtime_packages=tuple(sorted(runtime.items())))


def test_mapped_cuda_sonames_become_depends(run_ctx, cpu_cell, cell_images, gpu_payload,
                                            tmp_path):
    cell = _gpu_cell(cpu_cell, {"libcudart.so.9.0": "cuda-cudart-9-0",
                                "libcufft.so.9.0": "cuda-cufft-9-0", "libcuda.so.1": "driver"})
    (result,) = deb.build(run_ctx, cell, gpu_payload, cell_images[1].ref, io.StringIO(),
                          tmp_path / "debs")
    info = subprocess.run(["dpkg-deb", "-f", str(result.path), "Depends", "Mxnet-Cuda"],
                          check=True, capture_output=True, text=True).stdout
    depends = re.search(r"^Depends: (.*)$", info, re.M).group(1).split(", ")
    names = [d.split()[0] for d in depends]
    assert "cuda-cudart-9-0" in names and "cuda-cufft-9-0" in names
    assert "libc6" in names                          # dpkg-shlibdeps still did its part
    assert not any("cuda1" in n or n == "driver" for n in names)
    assert "Mxnet-Cuda: 9.0" in info
    listing = subprocess.run(["dpkg-deb", "-c", str(result.path)], check=True,
                             capture_output=True, text=True).stdout
    assert "libcudart" not in listing and "libcuda.so" not in listing   # never bundled


def test_unmapped_cuda_soname_fails_the_package_step(run_ctx, cpu_cell, cell_images,
                                                     gpu_payload, tmp_path):
    cell = _gpu_cell(cpu_cell, {"libcudart.so.9.0": "cuda-cudart-9-0", "libcuda.so.1": "driver"})
    log = io.StringIO()
    with pytest.raises(MxbuildError, match="writing the control files of libmxnet failed") \
            as info:
        deb.build(run_ctx, cell, gpu_payload, cell_images[1].ref, log, tmp_path / "debs")
    assert "libcufft.so.9.0" in info.value.message
    assert "runtime_packages" in info.value.message
