"""GPU Depends with alternatives, resolved by a real apt both ways: a GPU-like package
built by the package step (a small real ELF NEEDing libcudart.so.11.0 and libcuda.so.1)
for a cell whose matrix entry names Debian bookworm's own `libcudart11.0` as the
alternative of NVIDIA's `cuda-cudart-11-8`. One host has NVIDIA's name available (a dummy
package in the test repository) and gets it; another has only Debian's archive (non-free)
and gets Debian's package, whose real libcudart.so.11.0 the library then finds."""
import dataclasses
import io
import re
import subprocess

import pytest

from mxbuild import deb
from mxbuild.fetch import sha256_file
from mxbuild.payload import Payload
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage
from mxbuild.smoke import serve_directory

from ..conftest import make_deb
from .conftest import apt_box, point_apt

NVIDIA, DEBIAN = "cuda-cudart-11-8", "libcudart11.0"


def _so(path, soname, source, *link):
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), "-x", "c", "-",
                    f"-Wl,-soname,{soname}", *link], input=source, text=True, check=True)


@pytest.fixture(scope="module")
def gpu_deb(run_ctx, cpu_cell, cell_images, tmp_path_factory):
    work = tmp_path_factory.mktemp("alternatives")
    stubs, payload = work / "stubs", work / "payload"
    stubs.mkdir()
    (payload / "libmxnet").mkdir(parents=True)
    _so(stubs / "libcudart.so.11.0", "libcudart.so.11.0", "int cudaRuntimeGetVersion(int*v){return 0;}")
    _so(stubs / "libcuda.so.1", "libcuda.so.1", "int cuInit(unsigned f){return 0;}")
    _so(payload / "libmxnet.so", "libmxnet.so",
        "int cudaRuntimeGetVersion(int*);int cuInit(unsigned);"
        "int MXGetVersion(int*v){cuInit(0);return cudaRuntimeGetVersion(v);}",
        f"-L{stubs}", "-Wl,--no-as-needed", "-l:libcudart.so.11.0", "-l:libcuda.so.1",
        "-Wl,-rpath,$ORIGIN/libmxnet")
    files = {"libmxnet.so": sha256_file(payload / "libmxnet.so")}
    cell = dataclasses.replace(
        cpu_cell, variant="cu118", cuda="11.8",
        runtime_packages=(("libcuda.so.1", "driver"), ("libcudart.so.11.0", NVIDIA)),
        runtime_alternatives=(("libcudart.so.11.0", DEBIAN),))
    (built,) = deb.build(run_ctx, cell, Payload(payload, files, dict(files), "a test payload",
                                                1652763094),
                         cell_images[1].ref, io.StringIO(), work / "debs")
    return cell, built


def test_the_package_step_writes_the_alternative(gpu_deb):
    cell, built = gpu_deb
    depends = subprocess.run(["dpkg-deb", "-f", str(built.path), "Depends"], check=True,
                             capture_output=True, text=True).stdout.strip().split(", ")
    assert f"{NVIDIA} | {DEBIAN}" in depends
    assert deb.host_depends(cell) == f"{NVIDIA} | {DEBIAN}"
    assert not any("cuda1" in d or "driver" in d for d in depends)


@pytest.mark.parametrize("host", ["nvidia", "debian"])
def test_apt_resolves_the_alternative(docker_client, cell_images, gpu_deb, tmp_path, host):
    cell, built = gpu_deb
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    signer = Signer(home)
    uploads = [Upload(built.path, "bookworm", cell.component)]
    if host == "nvidia":   # a host with NVIDIA's repository: here a dummy of that name
        uploads.append(Upload(make_deb(tmp_path, NVIDIA, "11.8.89-1", b"dummy"), "bookworm",
                              cell.component))
    try:
        publish(LocalStorage(tmp_path / "repo"), signer, uploads)
        keyring = signer.public_keyring()
    finally:
        signer.close()     # the agent signing started
    with serve_directory(tmp_path / "repo") as url, \
            apt_box(docker_client, cell_images[2].ref, keyring, tmp_path) as box:
        point_apt(box, url, cell.component)
        if host == "debian":   # Debian's own CUDA runtime: bookworm non-free
            box.write_file("/etc/apt/sources.list.d/debian.list",
                           "deb http://deb.debian.org/debian bookworm main non-free\n")
        box.run(["apt-get", "update", "--error-on=any"])
        box.run(["apt-get", "install", "-y", "--no-install-recommends", "libmxnet"],
                env={"DEBIAN_FRONTEND": "noninteractive"})
        installed = box.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\\n"],
                            check=False).output
        chosen = NVIDIA if host == "nvidia" else DEBIAN
        other = DEBIAN if host == "nvidia" else NVIDIA
        assert f"{chosen} install ok installed" in installed
        assert not re.search(rf"^{re.escape(other)} ", installed, re.M)
        ldd = box.run(["ldd", "/usr/lib/x86_64-linux-gnu/libmxnet.so"]).output
        cudart = next(line for line in ldd.splitlines() if "libcudart.so.11.0" in line)
        if host == "debian":   # Debian's real library satisfies the soname
            path = cudart.split("=>")[1].split()[0]
            assert path.endswith("/x86_64-linux-gnu/libcudart.so.11.0")
            owner = box.run(["dpkg", "-S", "/usr/lib/x86_64-linux-gnu/libcudart.so.11.0"]).output
            assert owner.startswith(f"{DEBIAN}:")
        else:                  # the dummy ships no library: only the dependency resolved
            assert "not found" in cudart
