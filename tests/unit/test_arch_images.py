"""The images of another architecture, without an engine: what the arm64 bootstrap is
told, what its image config says, its tags and pins.lock keys — and that every amd64
tag, input digest and pins.lock entry stays exactly what it was."""
import dataclasses
import json

import pytest

from mxbuild import bootstrap, cli, images
from mxbuild.errors import ImageError, SelectionError
from mxbuild.matrix import load
from mxbuild.pins import Pins

from ..conftest import ROOT

MATRIX = load(ROOT / "matrix.yaml")
PINS = Pins.load(ROOT / "pins.lock")
ARM64 = MATRIX.architectures["arm64"]
EPOCH = 1704067200
DIFF = "ab" * 32


def test_arm64_image_config_says_arm64_v8():
    config = bootstrap.image_config(DIFF, EPOCH, "mmdebstrap bookworm arm64 (mxbuild)", ARM64)
    doc = json.loads(config)
    assert (doc["architecture"], doc["variant"], doc["os"]) == ("arm64", "v8", "linux")
    assert config == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_amd64_image_config_bytes_are_unchanged():
    """The config of every amd64 base (so its image id) is what it was before
    architectures existed: the one pinned for debian12 is reproduced from its layer."""
    pin = PINS.base("debian12")
    spec = MATRIX.distros["debian12"].base.bootstrap
    assert bootstrap.image_id_for(spec, pin["rootfs_sha256"], EPOCH) == pin["id"]
    assert "variant" not in json.loads(bootstrap.image_config(DIFF, EPOCH, "x"))


def test_the_pinned_arm64_base_is_reproduced_from_its_layer():
    for name in ("debian11", "debian12", "debian13"):
        pin = PINS.base(f"{name}-arm64")
        if pin is None:
            pytest.fail(f"{name}-arm64 is not pinned: invoke lock --arch arm64")
        spec = MATRIX.distros[name].base.bootstrap
        assert bootstrap.image_id_for(spec, pin["rootfs_sha256"], EPOCH, ARM64) == pin["id"]
        assert (pin["architecture"], pin["variant"]) == ("arm64", "v8")
        assert pin["tag"] == images.base_tag(MATRIX.distros[name], ARM64)
        assert pin["inputs"] == images.inputs_digest(MATRIX.distros[name], ARM64)
        # the arm64 package set: no package named for another architecture
        assert pin["packages"]["libc6"] and not any(":" in p for p in pin["packages"])


def test_amd64_tags_and_inputs_are_the_pinned_ones():
    for name, distro in MATRIX.distros.items():
        pin = PINS.base(name)
        assert pin is not None, name
        if distro.base.bootstrap:
            assert pin["tag"] == images.base_tag(distro), name
            assert pin["inputs"] == images.inputs_digest(distro), name


def test_arm64_tags_and_keys_carry_the_architecture():
    distro = MATRIX.distros["debian12"]
    tag = images.base_tag(distro, ARM64)
    assert tag.startswith("mxbuild/base:debian12-arm64-") and tag != images.base_tag(distro)
    assert images.pin_name(distro, ARM64) == "debian12-arm64"
    inputs = images.bootstrap_inputs(distro.base.bootstrap, ARM64)
    assert (inputs["arch"], inputs["platform"], inputs["variant"]) == (
        "arm64", "linux/arm64", "v8")
    assert "arch" not in images.bootstrap_inputs(distro.base.bootstrap)
    assert images.template_tag("mxbuild/runtime", "debian12-arm64", "FROM x") != \
        images.template_tag("mxbuild/runtime", "debian12", "FROM x")


def test_ubuntu_arm64_reads_the_ports_archive():
    spec = MATRIX.distros["ubuntu22"].base.bootstrap
    assert bootstrap.for_arch(spec, ARM64).mirror == "http://ports.ubuntu.com/ubuntu-ports"
    assert bootstrap.for_arch(spec, None).mirror == "http://archive.ubuntu.com/ubuntu"
    assert bootstrap.source_line(bootstrap.for_arch(spec, ARM64)).startswith(
        "deb http://ports.ubuntu.com/ubuntu-ports jammy ")
    assert images.bootstrap_inputs(spec, ARM64)["mirror"] == "http://ports.ubuntu.com/ubuntu-ports"
    without = dataclasses.replace(spec, arch_mirrors=(("amd64", spec.mirror),))
    with pytest.raises(ImageError, match="no mirror for arm64"):
        bootstrap.for_arch(without, ARM64)


def test_the_arm64_deb_cache_is_its_own(tmp_path):
    spec = MATRIX.distros["debian12"].base.bootstrap
    assert bootstrap.deb_cache_dir(tmp_path, spec, ARM64) != bootstrap.deb_cache_dir(tmp_path,
                                                                                      spec)


def test_a_registry_base_has_no_arm64_image():
    distro = dataclasses.replace(MATRIX.distros["debian12"], base=dataclasses.replace(
        MATRIX.distros["debian12"].base, image="debian:bookworm", bootstrap=None))
    assert images.base_tag(distro) == "debian:bookworm"
    with pytest.raises(ImageError, match="primary architecture only"):
        images.base_tag(distro, ARM64)


def test_lock_targets():
    pairs = lambda targets: [(d.name, a.name) for d, a in targets]  # noqa: E731
    assert pairs(cli.lock_targets(MATRIX, None, None)) == [(n, "amd64") for n in MATRIX.distros]
    assert pairs(cli.lock_targets(MATRIX, None, "arm64")) == [
        ("debian11", "arm64"), ("debian12", "arm64"), ("debian13", "arm64")]
    assert pairs(cli.lock_targets(MATRIX, "debian12", "all")) == [
        ("debian12", "amd64"), ("debian12", "arm64")]
    with pytest.raises(SelectionError, match="riscv64: not an architecture") as err:
        cli.lock_targets(MATRIX, None, "riscv64")
    assert err.value.hint == "use one of: amd64, arm64, or all"


def test_mmdebstrap_is_told_the_architecture(tmp_path, monkeypatch):
    """The command line of the arm64 bootstrap (run for real in the integration tier)."""
    seen = []
    monkeypatch.setattr(bootstrap, "_host_run", lambda cmd, *a, **k: seen.append(cmd))
    spec = MATRIX.distros["debian12"].base.bootstrap
    (tmp_path / "debs").mkdir()
    bootstrap.run_mmdebstrap(spec, tmp_path / "rootfs", tmp_path / "k/key.gpg", EPOCH,
                             tmp_path / "debs", tmp_path, open(tmp_path / "log", "w"), ARM64)
    bootstrap.run_mmdebstrap(spec, tmp_path / "rootfs", tmp_path / "k/key.gpg", EPOCH,
                             tmp_path / "debs", tmp_path / "debs", open(tmp_path / "log", "w"))
    assert "--arch=arm64" in seen[0] and not any(a.startswith("--arch") for a in seen[1])


def test_ubuntu_arm64_cells_are_one_matrix_yaml_edit_away(matrix_doc):
    """A user who reaches ports.ubuntu.com lists Ubuntu distros in the arm64 build: the
    cells, their bases (from the ports archive) and what `invoke lock --arch arm64`
    records follow from matrix.yaml alone."""
    from mxbuild.matrix import parse
    build = next(b for b in matrix_doc["variants"]["cpu"]["builds"]
                 if b.get("architectures") == ["arm64"])
    build["distros"] += ["ubuntu22", "ubuntu24"]
    m = parse(matrix_doc, "matrix.yaml")
    cell = m.select(cell="1.9.1-cpu-ubuntu22-arm64", arch="arm64")[0]
    assert (cell.multiarch, cell.arch.name, cell.deb_version) == (
        "aarch64-linux-gnu", "arm64", f"1.9.1-{m.packaging.revision}~ubuntu22.04")
    assert images.base_tag(cell.distro, ARM64).startswith("mxbuild/base:ubuntu22-arm64-")
    assert images.bootstrap_inputs(cell.distro.base.bootstrap, ARM64)["mirror"] == \
        "http://ports.ubuntu.com/ubuntu-ports"
    assert [(d.name, a.name) for d, a in cli.lock_targets(m, None, "arm64")][-2:] == [
        ("ubuntu22", "arm64"), ("ubuntu24", "arm64")]
