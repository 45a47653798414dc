"""Whether this host can run arm64 containers, from a binfmt_misc directory: real
entries' text (as the kernel writes them), every way it can be wrong, each with its fix;
and a build, a smoke run and `invoke lock` of arm64 cells stopping with that fix before
any image is built (the engine is never asked)."""
import pytest

from mxbuild import cli, emulation, engine, pipeline
from mxbuild.errors import EmulationError
from mxbuild.matrix import load

from ..conftest import ROOT

MATRIX = load(ROOT / "matrix.yaml")
ARM64 = MATRIX.architectures["arm64"]
AMD64 = MATRIX.architectures["amd64"]
# /proc/sys/fs/binfmt_misc/qemu-aarch64 after `apt-get install qemu-user-static
# binfmt-support` on Debian bookworm (read on this machine)
ENTRY = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def binfmt(tmp_path, entry=ENTRY, status="enabled"):
    d = tmp_path / "binfmt_misc"
    d.mkdir(parents=True)
    if status is not None:
        (d / "status").write_text(status + "\n")
    if entry is not None:
        (d / "qemu-aarch64").write_text(entry)
    return d


def test_a_registered_entry_with_fix_binary_runs_arm64(tmp_path):
    got = emulation.status(ARM64, binfmt(tmp_path), machine="x86_64")
    assert got.ok and "flags PF" in got.detail
    emulation.require([ARM64, AMD64], binfmt(tmp_path / "b"), machine="x86_64")


def test_native_architectures_need_nothing(tmp_path):
    assert emulation.status(AMD64, tmp_path / "none", machine="x86_64").ok
    assert emulation.status(ARM64, tmp_path / "none", machine="aarch64").ok


@pytest.mark.parametrize("entry, status, problem, fix", [
    (None, None, "binfmt_misc is not mounted", "mount -t binfmt_misc"),
    (None, "enabled", "no qemu-aarch64 entry", "apt-get install qemu-user-static binfmt-support"),
    (ENTRY.replace("enabled", "disabled", 1), "enabled", "registered but disabled",
     "update-binfmts --enable qemu-aarch64"),
    (ENTRY.replace("flags: PF", "flags: P"), "enabled", "without the fix-binary flag",
     "flag F"),
    (ENTRY, "disabled", "binfmt_misc is disabled", "echo 1 >"),
])
def test_every_missing_piece_is_named_with_its_fix(tmp_path, entry, status, problem, fix):
    got = emulation.status(ARM64, binfmt(tmp_path, entry, status), machine="x86_64")
    assert not got.ok and problem in got.detail and fix in got.fix
    with pytest.raises(EmulationError) as err:
        emulation.require([ARM64], binfmt(tmp_path / "again", entry, status), machine="x86_64",
                          why="needed by 1.9.1-cpu-debian12-arm64")
    text = err.value.render()
    assert "cannot run arm64 containers (needed by 1.9.1-cpu-debian12-arm64)" in text
    assert "fix:" in text and fix in text and err.value.exit_code == 13


def test_an_architecture_without_a_qemu_entry_names_matrix_yaml(tmp_path):
    import dataclasses
    got = emulation.status(dataclasses.replace(ARM64, qemu=None), binfmt(tmp_path),
                           machine="x86_64")
    assert not got.ok and "qemu: qemu-aarch64" in got.fix


@pytest.fixture
def no_emulation(tmp_path, monkeypatch):
    """A host without binfmt_misc, and an engine that must not be asked."""
    monkeypatch.setattr(emulation, "BINFMT_DIR", tmp_path / "no-binfmt")
    monkeypatch.setattr(emulation.platform, "machine", lambda: "x86_64")

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was asked before the emulation check")
    monkeypatch.setattr(engine, "client", no_engine)
    monkeypatch.setenv("MXBUILD_OUT_DIR", str(tmp_path / "out"))


def test_a_build_of_arm64_cells_stops_before_any_image(no_emulation, tmp_path):
    from mxbuild import options
    cells = MATRIX.select(arch="all", cell="1.9.1-cpu-debian1[23]*")
    with pytest.raises(EmulationError, match="needed by 1.9.1-cpu-debian12-arm64") as err:
        pipeline.build(cells, options.resolve(out_dir=str(tmp_path / "out")), storage=None)
    assert "invoke setup" in err.value.hint
    with pytest.raises(EmulationError):
        pipeline.smoke_built(cells, options.resolve(out_dir=str(tmp_path / "out")), None)
    assert not (tmp_path / "out" / "report.json").exists()


def test_invoke_build_and_lock_of_arm64_stop_with_the_fix(no_emulation, tmp_path):
    with pytest.raises(EmulationError):
        cli.build(cli.Selectors(arch="arm64", distro="debian12"), "none", False, None,
                  cli.S3Options())
    with pytest.raises(EmulationError, match="bootstrapping their base images"):
        cli.lock("debian12", "arm64")


def test_amd64_cells_do_not_need_emulation(no_emulation, tmp_path):
    """The check asks nothing of a host that builds its own architecture only: the
    build goes on to the engine (here: the stand-in that refuses)."""
    from mxbuild import options
    with pytest.raises(AssertionError, match="engine was asked"):
        pipeline.build(MATRIX.select(cell="1.9.1-cpu-debian12"),
                       options.resolve(out_dir=str(tmp_path / "out")), storage=None)


def test_doctor_says_whether_arm64_containers_run_and_the_fix(tmp_path):
    from mxbuild import doctor

    class Engine:
        def version(self):
            return {"Version": "20.10.24", "Os": "linux", "Arch": "amd64"}
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    common = dict(docker_client=Engine(), os_release_path=release, gpu=None,
                  disk_paths=(tmp_path,), machine="x86_64")
    d = doctor.diagnose(MATRIX, "http://apt.example", binfmt=binfmt(tmp_path), **common)
    checks = {name: (ok, detail) for name, ok, detail in d.checks}
    assert checks["architecture"] == (True, "amd64 (x86_64)")
    assert checks["arm64 containers"][0] is True
    assert d.cell.id == "1.9.1-cpu-debian12"
    d = doctor.diagnose(MATRIX, "http://apt.example", binfmt=tmp_path / "none", **common)
    ok, detail = {name: (ok, detail) for name, ok, detail in d.checks}["arm64 containers"]
    assert ok is False and "fix:" in detail and "invoke setup" in detail


def test_doctor_on_an_arm64_host_fits_the_arm64_package(tmp_path):
    from mxbuild import doctor
    assert doctor.fitting_cell(MATRIX, "debian12", None, "arm64").id == \
        "1.9.1-cpu-debian12-arm64"
    assert doctor.fitting_cell(MATRIX, "ubuntu22", None, "arm64") is None
    assert doctor.host_arch(MATRIX, "aarch64") == "arm64"
