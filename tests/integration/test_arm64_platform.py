"""The arm64 platform on the real engine, under emulation (qemu-aarch64 through
binfmt_misc): the arm64 base of debian12 (bootstrapped once, then reused from the
engine like every base), its runtime and smoke client images, and one repository that
apt on an amd64 and on an arm64 container each install their own package from.

CI prepares emulation itself (`invoke setup` as root; here `emulation.prepare`) and,
with MXBUILD_REQUIRE_EMULATION=1 (.ci/run), fails instead of skipping when it cannot.

Time: the first run on an empty engine bootstraps the arm64 base (4-9 min here) and
builds its runtime and client images under emulation (a few minutes); later runs reuse
all three (seconds). The cross-compiled test packages take ~1 min either way."""
from __future__ import annotations

import io
import subprocess

import pytest

from mxbuild import bootstrap, emulation, images, smoke
from mxbuild.containers import Container
from mxbuild.matrix import load
from mxbuild.pins import Pins
from mxbuild.repo import ops
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer
from mxbuild.repo.storage import LocalStorage
from mxbuild.smoke import client_image

from ..conftest import ROOT
from ..require import skip_or_fail
from .conftest import apt_box

MATRIX = load(ROOT / "matrix.yaml")
ARM64 = MATRIX.architectures["arm64"]
CELL = MATRIX.select(cell="1.9.1-cpu-debian12-arm64", arch="arm64")[0]
PROBE = "mxbuild-archprobe"
PROBE_VERSION = "1.0-1"


@pytest.fixture(scope="session")
def arm64_ready(docker_client):
    """arm64 containers run here: prepared as root if need be, else fail (CI) or skip."""
    got = emulation.prepare(ARM64)
    if not got.ok:
        skip_or_fail("emulation", f"arm64 emulation unavailable: {got.detail}; fix: {got.fix}")
    return got


@pytest.fixture(scope="session")
def arm64_base(arm64_ready, run_ctx):
    """debian12's arm64 base, as the pipeline gets it (engine, artifact cache, or a
    bootstrap under emulation): shared by every test here."""
    log = io.StringIO()
    ref = images.ensure_base(run_ctx, CELL.distro, log, ARM64)
    return ref, log.getvalue()


@pytest.fixture(scope="session")
def arm64_runtime(arm64_base, run_ctx):
    return images.ensure_runtime_image(run_ctx, CELL, arm64_base[0], io.StringIO())


def test_the_arm64_base_says_arm64_and_runs_aarch64(arm64_base, docker_client):
    ref, _ = arm64_base
    image = docker_client.images.get(ref.id)
    assert (image.attrs["Architecture"], image.attrs.get("Variant"), image.attrs["Os"]) == (
        "arm64", "v8", "linux")
    assert ref.ref == images.base_tag(CELL.distro, ARM64) and "-arm64-" in ref.ref
    # the image id is the digest of the config mxbuild wrote for this layer, on any machine
    layer = image.attrs["RootFS"]["Layers"]
    assert len(layer) == 1 and image.id == bootstrap.image_id_for(
        CELL.distro.base.bootstrap, layer[0].split(":", 1)[1], images.BOOTSTRAP_EPOCH, ARM64)
    out = docker_client.containers.run(ref.id, ["sh", "-c", (
        "uname -m; dpkg --print-architecture; cat /etc/apt/sources.list; "
        "dpkg-query -W -f '${Package}=${Version}\\n'")], remove=True,
        network_mode="none").decode().splitlines()
    assert out[:3] == ["aarch64", "arm64", "deb http://deb.debian.org/debian bookworm main"]
    packages = dict(line.split("=", 1) for line in out[3:])
    assert {"apt", "dpkg", "bash", "passwd", "libc6"} <= packages.keys()
    # same package set as pinned => same image id (the bootstrap is reproducible); a
    # newer point release of bookworm changes the set, which `invoke lock` records
    pin = Pins.load(ROOT / "pins.lock").base("debian12-arm64")
    assert pin is not None, "invoke lock --arch arm64 records it"
    if pin["inputs"] == images.inputs_digest(CELL.distro, ARM64) and \
            pin["packages"] == packages:
        assert image.id == pin["id"]


def test_the_arm64_runtime_image_runs_python_under_emulation(arm64_runtime, docker_client):
    image = docker_client.images.get(arm64_runtime.id)
    assert image.attrs["Architecture"] == "arm64"
    assert arm64_runtime.ref.startswith("mxbuild/runtime:debian12-arm64-")
    out = docker_client.containers.run(arm64_runtime.id, [
        "python3", "-c", "import platform, sysconfig; "
        "print(platform.machine(), sysconfig.get_config_var('MULTIARCH'))"],
        remove=True, network_mode="none").decode().split()
    assert out == ["aarch64", "aarch64-linux-gnu"]


def test_the_arm64_smoke_client_has_numpy_for_aarch64(arm64_runtime, run_ctx, docker_client):
    """The smoke client image of the arm64 cell: the official wheel's requirements from
    PyPI (aarch64 wheels, pip under emulation), never the x86_64 wheel itself."""
    from mxbuild.fetch import cached_wheel
    wheel = cached_wheel(CELL.official_wheel, run_ctx.opts.cache_dir / "downloads",
                         run_ctx.opts.extra_ca_bundle)
    ref = client_image.ensure_client_image(run_ctx, CELL, arm64_runtime, wheel, io.StringIO())
    assert ref.ref.startswith("mxbuild/smoke-client:debian12-arm64-mxnet-deps-")
    out = docker_client.containers.run(ref.id, ["sh", "-c", (
        "python -c 'import numpy, platform; a = numpy.ones((300, 300)); "
        "print(platform.machine(), numpy.__version__, float((a @ a).sum()))'; "
        "pip list --format=freeze | grep -ci '^mxnet' || true")],
        remove=True, network_mode="none").decode().split()
    assert out == ["aarch64", "1.23.5", str(300.0 ** 3), "0"]


# ---------------------------------------------------------------- one repository

@pytest.fixture(scope="session")
def probe_debs(cell_images, docker_client, tmp_path_factory):
    """mxbuild-archprobe for amd64 (gcc) and arm64 (aarch64-linux-gnu-gcc, Debian's cross
    compiler), compiled and packaged in a throwaway container of the debian12 build image."""
    out = tmp_path_factory.mktemp("probe-debs")
    source = ROOT / "tests/fixtures/archprobe/archprobe.c"
    script = f"""set -e
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
    gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
for pair in amd64:gcc arm64:aarch64-linux-gnu-gcc; do
  arch=${{pair%%:*}}; cc=${{pair#*:}}
  root=/tmp/pkg-$arch
  mkdir -p $root/DEBIAN $root/usr/bin
  $cc -O2 -DARCHPROBE_ARCH="\\"$arch\\"" -o $root/usr/bin/{PROBE} /tmp/src/archprobe.c
  cat > $root/DEBIAN/control <<CONTROL
Package: {PROBE}
Version: {PROBE_VERSION}
Architecture: $arch
Maintainer: mxbuild tests <tests@example.org>
Depends: libc6
Description: says which architecture it was built for
 A test package of mxbuild: one per architecture, same name and version.
CONTROL
  dpkg-deb --root-owner-group --build $root /tmp/out/{PROBE}_{PROBE_VERSION}_$arch.deb
done
"""
    with Container(docker_client, cell_images[1].ref, label="archprobe", network="bridge") as box:
        box.run(["mkdir", "-p", "/tmp/src", "/tmp/out"])
        box.copy_into(source, "/tmp/src")
        box.run(["sh", "-c", script])
        box.copy_out("/tmp/out", out)
    debs = {arch: out / "out" / f"{PROBE}_{PROBE_VERSION}_{arch}.deb"
            for arch in ("amd64", "arm64")}
    for arch, deb in debs.items():
        field = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture"], check=True,
                               capture_output=True, text=True).stdout.strip()
        assert field == arch
    return debs


def _install_and_run(docker_client, image: str, keyring: bytes, url: str, tmp_path) -> str:
    tmp_path.mkdir()
    with apt_box(docker_client, image, keyring, tmp_path) as box:
        box.write_file("/etc/apt/sources.list.d/mxbuild.list",
                       f"deb [signed-by={smoke.KEYRING_PATH}] {url} bookworm cpu\n")
        smoke.apt_update(box)      # any warning or error fails
        box.run(["apt-get", "install", "-y", "--no-install-recommends", PROBE],
                env={"DEBIAN_FRONTEND": "noninteractive"})
        arch = box.run(["dpkg-query", "-W", "-f", "${Architecture}", PROBE]).output.strip()
        return f"{arch}: " + box.run([PROBE]).output.strip()


def test_apt_on_amd64_and_arm64_each_install_their_own_package(
        probe_debs, cell_images, arm64_base, docker_client, gnupg_home, tmp_path):
    """One suite, one sources line: the amd64 package published first, then the arm64 one
    in its own commit (the suite upgraded in place); each host gets its own binary."""
    storage = LocalStorage(tmp_path / "repo")
    signer = Signer(gnupg_home)
    keyring = signer.public_keyring()
    publish(storage, signer, [Upload(probe_debs["amd64"], "bookworm", "cpu")])
    publish(storage, signer, [Upload(probe_debs["arm64"], "bookworm", "cpu")])
    assert ops.verify(storage, keyring) == []
    release = (tmp_path / "repo/dists/bookworm/Release").read_text()
    assert "Architectures: amd64 arm64" in release
    with smoke.serve_directory(storage.root) as url:
        on_amd64 = _install_and_run(docker_client, cell_images[2].ref, keyring, url,
                                    tmp_path / "amd64")
        on_arm64 = _install_and_run(docker_client, arm64_base[0].ref, keyring, url,
                                    tmp_path / "arm64")
    assert on_amd64 == "amd64: built for amd64, running on x86_64"
    assert on_arm64 == "arm64: built for arm64, running on aarch64"

