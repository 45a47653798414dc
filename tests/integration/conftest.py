import contextlib
import io

import pytest

from mxbuild import images
from mxbuild.containers import Container
from mxbuild.repo.sign import KEYRING_NAME
from mxbuild.smoke import KEYRING_PATH


@pytest.fixture(scope="session")
def cell_images(run_ctx, cpu_cell):
    """(base, build, runtime) images of the cpu × debian12 cell (built or reused)."""
    log = io.StringIO()
    base = images.ensure_base(run_ctx, cpu_cell.distro, log)
    build = images.ensure_build_image(run_ctx, cpu_cell, base, log)
    runtime = images.ensure_runtime_image(run_ctx, cpu_cell, base, log)
    return base, build, runtime


@contextlib.contextmanager
def apt_box(docker_client, image: str, keyring: bytes, tmp_path, install: tuple = ()):
    """A fresh runtime container that trusts `keyring` and has no apt source but ours;
    `install`: Debian packages installed first (from the image's own apt sources)."""
    ring = tmp_path / KEYRING_NAME
    ring.write_bytes(keyring)
    with Container(docker_client, image, label="apt-client", network="host") as box:
        if install:
            box.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                    + " ".join(install) + " > /dev/null",
                    env={"DEBIAN_FRONTEND": "noninteractive"})
        box.copy_into(ring, "/usr/share/keyrings")
        box.run(["sh", "-c", "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*"])
        yield box


def point_apt(box, url: str, component: str = "cpu"):
    """Make the repository at url the box's only apt source (signed-by our keyring)."""
    box.write_file("/etc/apt/sources.list.d/mxbuild.list",
                   f"deb [signed-by={KEYRING_PATH}] {url} bookworm {component}\n")
    box.run(["sh", "-c", "rm -rf /var/lib/apt/lists/*"])
