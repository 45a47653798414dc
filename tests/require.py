"""One rule for every test that needs something of the host (a tool, the Docker engine, the
S3 server, a file): without it the test skips, except when CI says it must be there
(`.ci/run` sets the MXBUILD_REQUIRE_* variables): then it fails, naming what is missing.
Only `1` or `true` (any case) mean required; `0`, `false` or empty do not.

GPU checks are not host requirements: they skip on a host without a GPU, CI or not.
"""
from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE = {"docker": "MXBUILD_REQUIRE_DOCKER", "tools": "MXBUILD_REQUIRE_TOOLS",
           "s3_server": "MXBUILD_REQUIRE_S3_SERVER", "emulation": "MXBUILD_REQUIRE_EMULATION"}


def required(kind: str) -> bool:
    return os.environ.get(REQUIRE[kind], "").strip().lower() in ("1", "true")


def skip_or_fail(kind: str, message: str) -> NoReturn:
    """Skip with `message`, or fail with it when `kind` is required."""
    if required(kind):
        pytest.fail(f"{message} ({REQUIRE[kind]} is set: this must be here)", pytrace=False)
    pytest.skip(message)


def need_tools(*names: str, hint: str = "") -> None:
    """Every named program on PATH, or skip_or_fail('tools') naming the missing ones."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        skip_or_fail("tools", f"not installed: {', '.join(missing)}"
                              + (f" ({hint})" if hint else ""))
