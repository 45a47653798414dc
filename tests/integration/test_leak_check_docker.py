"""The session-end leak check on Docker objects: a pytest run of its own whose test starts a
container through mxbuild's wrapper (with a volume the container creates) and never
leaves it. The run must fail naming both, and remove them; nothing of another run is
touched (they carry another run id)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import uuid

from ..conftest import ROOT

CONFTEST = """from tests.conftest import (pytest_configure, pytest_sessionfinish,
                            pytest_terminal_summary, pytest_unconfigure)
"""

LEAKY = """import os

import docker
from docker.types import Mount

from mxbuild.containers import Container


def test_leaves_a_container_and_its_volume():
    box = Container(docker.from_env(), os.environ["LEAK_IMAGE"], label="leak-probe",
                    mounts=[Mount("/data", os.environ["LEAK_VOLUME"], type="volume")])
    box.__enter__()                                   # and never __exit__
    print("CONTAINER", box.container.name)
"""


def test_a_run_that_leaves_a_container_fails_and_removes_it(docker_client, cell_images,
                                                             tmp_path):
    volume = f"mxbuild-leak-probe-{uuid.uuid4().hex[:8]}"
    out = ""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(LEAKY)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEAK_IMAGE": cell_images[0].ref,
           "LEAK_VOLUME": volume}
    try:
        with tempfile.TemporaryDirectory(prefix="leak") as base:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                   "-s", "--rootdir", str(tmp_path), "--basetemp", base,
                                   str(tmp_path / "test_it.py")], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=600)
        out = proc.stdout
        assert "1 passed" in out and proc.returncode == 1, out[-3000:]
        name = re.search(r"CONTAINER (\S+)", out).group(1)
        assert "left 2 thing(s) behind" in out, out[-3000:]
        assert re.search(rf"^  container [0-9a-f]+: {name} \(running\)$", out, re.M), out
        assert re.search(rf"^  volume {volume}: volume$", out, re.M), out
        assert not docker_client.containers.list(all=True, filters={"name": name})
        assert not docker_client.volumes.list(filters={"name": volume})
    finally:                    # whatever failed above: leave nothing of this test
        started = re.search(r"CONTAINER (\S+)", out)
        if started:
            for c in docker_client.containers.list(all=True,
                                                   filters={"name": started.group(1)}):
                c.remove(force=True, v=True)
        for v in docker_client.volumes.list(filters={"name": volume}):
            v.remove(force=True)
