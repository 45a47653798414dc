"""The session-end leak check (tests/leaks.py, hooked in tests/conftest.py) on a pytest run
of its own whose one test leaves things behind: the run must fail, list each of them, and
stop them (processes, sockets, agents, temp files). (A clean run passing and saying so is
what every run of the suite shows.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import pytest

from ..conftest import ROOT
from ..leaks import GRACE_ENV

CONFTEST = """from tests.conftest import (pytest_configure, pytest_sessionfinish,
                            pytest_terminal_summary, pytest_testnodedown, pytest_unconfigure)
"""

LEAKY = """import os
import socket
import subprocess
import tempfile

KEEP = []


def note(*words):
    # to a file: an xdist worker's output does not reach the controller's
    with open(os.environ["LEAK_INFO"], "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")


def test_leaves_things_behind(tmp_path):
    # a daemon in a session of its own (it outlives its parent, like gpg-agent or weed)
    KEEP.append(subprocess.Popen(["sleep", "300"], start_new_session=True))
    note("SLEEP", KEEP[-1].pid)
    # an HTTP-like server shut down but never closed
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    KEEP.append(server)
    note("PORT", server.getsockname()[1])
    # a gpg-agent, started in the GnuPG home as gpg starts it (on demand, daemonized)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg-connect-agent", "--homedir", str(home), "/bye"], check=True)
    note("HOME", home)
    # a file in the temp dir that nobody removes (what a process killed on purpose leaves)
    fd, path = tempfile.mkstemp(prefix="left-")
    os.close(fd)
    note("FILE", path)
"""

def _run(tmp_path, test_source: str, xdist_args: list[str]) -> tuple[str, str, int]:
    """(pytest's output, what the test wrote to LEAK_INFO, exit code)"""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(test_source)
    info = tmp_path / "info.txt"
    # its leaks never exit: no need to wait the grace period for them
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEAK_INFO": str(info), GRACE_ENV: "0.5"}
    # a short basetemp: gpg-agent's socket path must fit in 108 bytes
    with tempfile.TemporaryDirectory(prefix="leak") as base:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               *xdist_args, "--rootdir", str(tmp_path), "--basetemp", base,
                               str(tmp_path / "test_it.py")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    return proc.stdout, info.read_text() if info.exists() else "", proc.returncode


# serial (the whole suite) and under xdist (the unit tier: `-n 2`), where the worker names
# what it still holds (its socket, its child) and the controller the agent that outlived it
@pytest.mark.seconds
@pytest.mark.parametrize("xdist_args, worker_suffix", [
    (["-p", "no:xdist"], ""), (["-n", "1"], r" \(worker gw0\)")], ids=["serial", "xdist"])
def test_a_run_that_leaves_processes_sockets_or_agents_fails_and_lists_them(
        tmp_path, xdist_args, worker_suffix):
    out, info, returncode = _run(tmp_path, LEAKY, xdist_args)
    assert "1 passed" in out, out[-3000:]
    assert returncode == 1, out[-3000:]            # the test passed, the run did not
    sleep_pid = re.search(r"SLEEP (\d+)", info).group(1)
    port = re.search(r"PORT (\d+)", info).group(1)
    home = re.search(r"HOME (\S+)", info).group(1)
    left_file = re.search(r"FILE (\S+)", info).group(1)
    assert "left 4 thing(s) behind" in out, out[-3000:]
    assert re.search(rf"^  process {sleep_pid}: sleep 300{worker_suffix}$", out, re.M), \
        out[-3000:]
    assert re.search(rf"^  socket fd \d+: listening on port {port}{worker_suffix}$", out,
                     re.M), out[-3000:]
    assert re.search(rf"^  process \d+: gpg-agent --homedir {re.escape(home)} ", out, re.M)
    assert re.search(rf"^  file {re.escape(left_file)}: left in the run's temp dir$", out,
                     re.M), out[-3000:]
    # the run's temp dir lay in the one the run was given, and it is gone with the file
    assert os.path.dirname(os.path.dirname(left_file)) == tempfile.gettempdir()
    assert not os.path.exists(os.path.dirname(left_file))
    assert not os.path.exists(f"/proc/{sleep_pid}")        # and stopped them

