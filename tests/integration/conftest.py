import io

import pytest

from mxbuild import images


@pytest.fixture(scope="session")
def cell_images(docker_client, cpu_cell, test_opts):
    """(base, build, runtime) images of the cpu × debian12 cell (built or reused)."""
    log = io.StringIO()
    base = images.ensure_base(docker_client, cpu_cell.distro, test_opts, log)
    build = images.ensure_build_image(docker_client, cpu_cell, base, test_opts, log)
    runtime = images.ensure_runtime_image(docker_client, cpu_cell, base, test_opts, log)
    return base, build, runtime
