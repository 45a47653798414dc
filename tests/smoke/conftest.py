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
def mx():
    import mxnet
    return mxnet
