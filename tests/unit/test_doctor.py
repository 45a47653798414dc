"""doctor's judgement from what the host reports: os-release, nvidia-smi output, the
matrix. The engine is a stand-in here; the real engine is used by `invoke doctor`."""
from __future__ import annotations

import subprocess

from mxbuild import doctor
from mxbuild.matrix import load

from ..conftest import ROOT

MATRIX = load(ROOT / "matrix.yaml")
SMI = """+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.199.02   Driver Version: 470.199.02   CUDA Version: 11.4     |
+-----------------------------------------------------------------------------+"""


class Engine:
    def version(self):
        return {"Version": "20.10.24", "Os": "linux", "Arch": "amd64"}


def _os_release(tmp_path, codename, pretty):
    path = tmp_path / "os-release"
    path.write_text(f'PRETTY_NAME="{pretty}"\nVERSION_CODENAME={codename}\nID=ubuntu\n')
    return path


def test_nvidia_smi_output_is_read(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def run(cmd, **kw):
        out = "Tesla T4, 470.199.02\n" if "--query-gpu=name,driver_version" in cmd else SMI
        return subprocess.CompletedProcess(cmd, 0, out, "")
    gpu = doctor.nvidia_gpu(run)
    assert gpu == doctor.Gpu(("Tesla T4",), "470.199.02", "11.4")


def test_the_newest_cuda_variant_the_driver_supports_is_chosen():
    gpu = doctor.Gpu(("T4",), "470", "11.4")
    assert doctor.fitting_cell(MATRIX, "ubuntu20", gpu).variant == "cu114"
    assert doctor.fitting_cell(MATRIX, "ubuntu20", doctor.Gpu(("A100",), "535", "12.2")
                               ).variant == "cu117"
    assert doctor.fitting_cell(MATRIX, "ubuntu16", doctor.Gpu(("P100",), "384", "9.0")
                               ).id == "1.6.0-cu90-ubuntu16"
    # a driver too old for every CUDA variant of the distro, or no GPU: cpu
    assert doctor.fitting_cell(MATRIX, "ubuntu20", doctor.Gpu(("K80",), "418", "10.1")
                               ).variant == "cpu"
    assert doctor.fitting_cell(MATRIX, "debian12", None).id == "1.9.1-cpu-debian12"


def test_diagnosis_gives_the_apt_line_and_commands(tmp_path):
    d = doctor.diagnose(MATRIX, "http://apt.example:8080/", docker_client=Engine(),
                        os_release_path=_os_release(tmp_path, "focal", "Ubuntu 20.04.6 LTS"),
                        gpu=doctor.Gpu(("T4",), "470", "11.4"), disk_paths=(tmp_path,))
    checks = {name: (ok, detail) for name, ok, detail in d.checks}
    assert checks["docker"][0] and checks["distro"] == (True, "Ubuntu 20.04.6 LTS = ubuntu20 (focal)")
    assert d.cell.id == "1.9.1-cu114-ubuntu20"
    assert ("deb [signed-by=/usr/share/keyrings/mxbuild-archive-keyring.gpg] "
            "http://apt.example:8080 focal cu114") in d.commands[1]
    assert any("NVIDIA's CUDA repository" in c for c in d.commands)
    assert d.commands[-1] == ("pip install --extra-index-url http://apt.example:8080/simple/ "
                              "--trusted-host apt.example mxnet-thin==1.9.1")


def test_unknown_distro_lists_the_supported_ones(tmp_path):
    d = doctor.diagnose(MATRIX, "http://x", docker_client=Engine(), gpu=None,
                        os_release_path=_os_release(tmp_path, "plucky", "Ubuntu 25.04"),
                        disk_paths=())
    ok, detail = {n: (o, t) for n, o, t in d.checks}["distro"]
    assert ok is False and "bookworm" in detail and d.commands == []


def test_a_cell_with_the_jvm_package_gets_the_maven_gradle_and_sbt_lines(tmp_path):
    import dataclasses
    cell = MATRIX.select(cell="1.9.1-cpu-debian12")[0]
    jvm_cell = dataclasses.replace(cell, packages=(cell.package, MATRIX.packages["libmxnet-scala"]))
    matrix = dataclasses.replace(MATRIX, cells=(jvm_cell,))
    d = doctor.diagnose(matrix, "https://apt.example", docker_client=Engine(), gpu=None,
                        os_release_path=_os_release(tmp_path, "bookworm", "Debian 12"),
                        disk_paths=())
    lines = "\n".join(d.commands)
    assert "sudo apt-get install libmxnet-scala" in lines
    assert ("<url>https://apt.example/maven</url>" in lines and
            "<groupId>org.mxbuild</groupId><artifactId>mxnet-thin_2.11</artifactId>"
            "<version>1.9.1</version>" in lines)
    assert "implementation 'org.mxbuild:mxnet-thin_2.11:1.9.1'" in lines
    assert 'libraryDependencies += "org.mxbuild" % "mxnet-thin_2.11" % "1.9.1"' in lines
    plain = doctor.diagnose(MATRIX, "https://apt.example", docker_client=Engine(), gpu=None,
                            os_release_path=_os_release(tmp_path, "bookworm", "Debian 12"),
                            disk_paths=())
    assert not any("maven" in c for c in plain.commands)


def test_disk_lines_name_the_out_and_cache_directories_and_dockers_data_root(tmp_path):
    class RootedEngine(Engine):
        def info(self):
            return {"DockerRootDir": str(tmp_path / "docker")}
    d = doctor.diagnose(MATRIX, "http://x", docker_client=RootedEngine(), gpu=None,
                        os_release_path=_os_release(tmp_path, "bookworm", "Debian 12"),
                        disk_paths=(tmp_path / "out", tmp_path / "cache", tmp_path / "out"))
    disks = [(name, detail) for name, _, detail in d.checks if name.startswith("disk ")]
    # not made yet: the free space of the filesystem they will be made on
    assert [name for name, _ in disks] == [f"disk {tmp_path / p}"
                                           for p in ("out", "cache", "docker")]
    assert all(detail.split()[1:3] == ["GB", "free"] for _, detail in disks)
