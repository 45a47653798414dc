"""`invoke lock` and `invoke serve` as a user runs them.

lock: on a temporary copy of pins.lock (MXBUILD_PINS), one distro: it records that
distro's base (the image the engine has for the current inputs, bootstrapped if absent)
and nothing else — every other entry byte for byte as it was, no other file written — and a
second run changes nothing.
serve: the local repository over http on loopback; apt in a container installs from it."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from mxbuild import images, matrix
from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.sign import Signer

from ..conftest import ROOT, make_deb
from .conftest import apt_box, point_apt


def invoke(*args, env, timeout=1800):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lock_records_one_distro_and_nothing_else_and_is_idempotent(docker_client, tmp_path):
    pins = tmp_path / "pins" / "pins.lock"
    pins.parent.mkdir()
    pins.write_bytes((ROOT / "pins.lock").read_bytes())
    before = json.loads(pins.read_text())
    checkout = {name: _digest(ROOT / name) for name in ("pins.lock", "matrix.yaml")}
    out = tmp_path / "out"
    env = {**os.environ, "MXBUILD_PINS": str(pins), "MXBUILD_OUT_DIR": str(out)}
    first = invoke("lock", "--distro", "debian12", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"wrote {pins}" in first.stderr
    after = json.loads(pins.read_text())
    # every other distro and the toolkits exactly as they were
    assert {k: v for k, v in after["bases"].items() if k != "debian12"} == \
        {k: v for k, v in before["bases"].items() if k != "debian12"}
    assert after["toolkits"] == before["toolkits"] and after["format"] == before["format"]
    entry = after["bases"]["debian12"]
    distro = matrix.load(ROOT / "matrix.yaml").distros["debian12"]
    image = docker_client.images.get(entry["tag"])
    assert entry["kind"] == "bootstrap" and entry["tag"] == images.base_tag(distro)
    assert entry["id"] == image.id and entry["inputs"] == images.inputs_digest(distro)
    assert {"dpkg", "apt", "libc6"} <= set(entry["packages"])
    # nothing else written: the temp directory holds pins.lock only, the output directory
    # the lock log only, and the checkout's pins.lock and matrix.yaml are untouched
    assert sorted(p.name for p in pins.parent.iterdir()) == ["pins.lock"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        ["logs/lock/debian12.log"]
    assert {name: _digest(ROOT / name) for name in checkout} == checkout
    written = pins.read_bytes()
    second = invoke("lock", "--distro", "debian12", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "= debian12: " in second.stderr and "(unchanged)" in second.stderr
    assert pins.read_bytes() == written
    unknown = invoke("lock", "--distro", "debian99", env=env)
    assert unknown.returncode != 0 and "debian99" in unknown.stderr
    assert pins.read_bytes() == written


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_lets_apt_install_from_the_local_repository(docker_client, cell_images, tmp_path):
    out = tmp_path / "out"
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    signer = Signer(home)
    deb = make_deb(tmp_path, "mxbuild-served", "1.0-1", b"served")
    from mxbuild.repo.storage import LocalStorage
    publish(LocalStorage(out / "repo"), signer, [Upload(deb, "bookworm", "cpu")])
    port = _free_port()
    env = {**os.environ, "MXBUILD_OUT_DIR": str(out), "MXBUILD_GNUPGHOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "invoke", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/dists/bookworm/InRelease", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "invoke serve did not answer in 60 s"
                time.sleep(0.3)
        with apt_box(docker_client, cell_images[2].ref, signer.public_keyring(), tmp_path) as box:
            point_apt(box, url)
            box.run(["apt-get", "update", "--error-on=any"])
            box.run(["apt-get", "install", "-y", "mxbuild-served"])
            assert box.run(["dpkg-query", "-W", "-f", "${Version}", "mxbuild-served"]).output \
                == "1.0-1"
    finally:
        server.terminate()
        server.wait(20)
        signer.close()     # the agent publish started in this process
    assert server.returncode is not None
