"""Stopping a run (Ctrl-C, a CI abort's SIGTERM) leaves no container behind."""
import os
import signal
import subprocess
import sys
import time

from ..conftest import ROOT


def _ours(docker_client, label, before=frozenset()):
    """This run's containers of `label` (a killed earlier run may have left some behind)."""
    found = docker_client.containers.list(all=True, filters={"label": f"mxbuild={label}"})
    return [c for c in found if c.id not in before]


def test_sigterm_removes_the_running_containers_at_once(docker_client, cell_images,
                                                        tmp_path, gnupg_home):
    env = {**os.environ, "MXBUILD_OUT_DIR": str(tmp_path / "out"),
           "MXBUILD_GNUPGHOME": str(gnupg_home)}
    label = "package-1.9.1-cpu-debian12"
    before = frozenset(c.id for c in _ours(docker_client, label))
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "build", "--cell",
                             "1.9.1-cpu-debian12", "--no-smoke", "--force-stage",
                             "package,publish", "--jobs", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the package stage runs for tens of seconds (dpkg-shlibdeps, lintian): stopped there,
    # once its log shows a command running in its container (the wrapper logs "$ cmd")
    stage_log = tmp_path / "out/logs/1.9.1-cpu-debian12/package.log"
    deadline = time.monotonic() + 300

    def package_stage_running() -> bool:
        text = stage_log.read_text() if stage_log.exists() else ""
        return any(line.startswith("$ ") for line in text.splitlines()) and \
            bool(_ours(docker_client, label, before))
    while not package_stage_running():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the package stage never ran a command"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stage package: interrupted" in out
    assert _ours(docker_client, label, before) == []
    assert not (tmp_path / "out/repo/dists").exists()     # the publish stage never started
