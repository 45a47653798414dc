"""The session-end leak check (tests/leaks.py, hooked in tests/conftest.py) on a pytest run
of its own whose one test leaves things behind: the run must fail, list each of them, and
stop them. (A clean run passing and saying so is what every run of the suite shows.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

from ..conftest import ROOT

CONFTEST = """from tests.conftest import (pytest_configure, pytest_sessionfinish,
                            pytest_terminal_summary, pytest_unconfigure)
"""

LEAKY = """import socket
import subprocess

KEEP = []


def test_leaves_things_behind(tmp_path):
    # a daemon in a session of its own (it outlives its parent, like gpg-agent or weed)
    KEEP.append(subprocess.Popen(["sleep", "300"], start_new_session=True))
    print("SLEEP", KEEP[-1].pid)
    # an HTTP-like server shut down but never closed
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    KEEP.append(server)
    print("PORT", server.getsockname()[1])
    # a gpg-agent, started in the GnuPG home as gpg starts it (on demand, daemonized)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg-connect-agent", "--homedir", str(home), "/bye"], check=True)
    print("HOME", home)
"""

def _run(tmp_path, test_source: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(test_source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a short basetemp: gpg-agent's socket path must fit in 108 bytes
    with tempfile.TemporaryDirectory(prefix="leak") as base:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s",
                               "--rootdir", str(tmp_path), "--basetemp", base,
                               str(tmp_path / "test_it.py")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)


def test_a_run_that_leaves_processes_sockets_or_agents_fails_and_lists_them(tmp_path):
    proc = _run(tmp_path, LEAKY)
    out = proc.stdout
    assert "1 passed" in out, out[-3000:]
    assert proc.returncode == 1, out[-3000:]            # the test passed, the run did not
    sleep_pid = re.search(r"SLEEP (\d+)", out).group(1)
    port = re.search(r"PORT (\d+)", out).group(1)
    home = re.search(r"HOME (\S+)", out).group(1)
    assert "left 3 thing(s) behind" in out, out[-3000:]
    assert re.search(rf"^  process {sleep_pid}: sleep 300$", out, re.M), out[-3000:]
    assert re.search(rf"^  socket fd \d+: listening on port {port}$", out, re.M), out[-3000:]
    assert re.search(rf"^  process \d+: gpg-agent --homedir {re.escape(home)} ", out, re.M)
    assert not os.path.exists(f"/proc/{sleep_pid}")        # and stopped them

