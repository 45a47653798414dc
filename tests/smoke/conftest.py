"""The smoke suite runs INSIDE a fresh runtime container of the cell's distro, against
the installed libmxnet package. Expectations come from the matrix (expect.json), and the
reference outputs from the host (fixtures/), never from the binary under test."""
import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def expect():
    return json.loads(Path(os.environ["MXBUILD_EXPECT"]).read_text())


@pytest.fixture(scope="session")
def fixtures():
    return Path(os.environ["MXBUILD_FIXTURES"])


@pytest.fixture(scope="session")
def mx(expect):
    if not expect["native_loadable"]:
        # A GPU package on a host without NVIDIA's repository: the CUDA runtime is not
        # installable, so the library cannot load. Skipped, never passed.
        pytest.skip("no GPU: host packages not installable here: " +
                    ", ".join(sorted(set(expect["missing_sonames"].values()))))
    import mxnet
    return mxnet
