"""Ceph's RADOS Gateway (Debian trixie's `radosgw`, ceph reef) as an S3 server of the tests.

The image: mxbuild's own debian13 base image (mmdebstrap, pinned in pins.lock) plus
PACKAGES from trixie's archive, made through images.ensure_tagged under a tag that is a
content hash of (base image id, packages), so a second run finds it by tag (and an
artifact cache, when configured, shares it). Installed versions are whatever trixie's
archive has when the image is made (recorded in a label). The start script is copied in
when a container starts, so editing it never rebuilds the image.

The server: one container (published ports on loopback), `start-ceph.sh rados` (monitor,
OSD on memstore, RGW on RADOS) and, for the "ignores preconditions" cases only,
`start-ceph.sh dbstore` (RGW on the experimental SQLite backend) in the same container.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mxbuild import images, matrix
from mxbuild.containers import Container

ROOT = Path(__file__).resolve().parent.parent
IMAGE_REPO = "mxbuild-test/ceph-rgw"
DISTRO = "debian13"
PACKAGES = ("radosgw", "ceph-common", "ceph-mon", "ceph-osd")
SCRIPT = ROOT / "tests/fixtures/ceph_rgw/start-ceph.sh"
SCRIPT_PATH = "/usr/local/sbin/start-ceph"
PORTS = {"rados": 7480, "dbstore": 7481}


def image_tag(base_id: str) -> str:
    digest = images.content_hash(base_id, PACKAGES, "format 1")
    return f"{IMAGE_REPO}:{digest[:12]}"


def ensure_image(ctx, logf: IO[str]) -> str:
    """The RGW image's tag: found by tag, else made here (minutes: ~300 MB of .debs)."""
    distro = matrix.load(ctx.opts.matrix_path).distros[DISTRO]
    base = images.ensure_base(ctx, distro, logf)
    tag = image_tag(base.id)

    def make():
        client = ctx.docker
        with Container(client, base.ref, label="ceph-rgw-image", network="host",
                       log_file=logf) as box:
            box.run(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                     "apt-get install -y -qq --no-install-recommends " + " ".join(PACKAGES)
                     + " > /tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }; "
                     "rm -rf /var/lib/apt/lists/* /tmp/apt.log"])
            versions = box.run(["dpkg-query", "-W", "-f", "${Package}=${Version} ",
                                *PACKAGES]).output.split()
            repo, version = tag.split(":")
            image_id = box.commit(repo, version, [
                f'LABEL org.mxbuild.ceph="{" ".join(versions)}"'])
        return client.images.get(image_id)
    return images.ensure_tagged(ctx, tag, make, logf, reusing="reusing Ceph RGW image").ref


def ceph_version(client, tag: str) -> str:
    return client.images.get(tag).labels.get("org.mxbuild.ceph", "unknown")


@dataclass
class Cluster:
    """One running container; `start(backend)` starts an RGW and returns its endpoint."""
    box: Container
    env: dict

    def start(self, backend: str, timeout: float = 240) -> str:
        self.box.run([SCRIPT_PATH, backend], env=self.env)
        endpoint = f"http://127.0.0.1:{self.box.host_port(PORTS[backend])}"
        wait_http(endpoint, timeout, lambda: self.log_tail(backend))
        return endpoint

    def stop(self) -> None:
        self.box.__exit__(None, None, None)

    def log_tail(self, backend: str) -> str:
        name = "client.rgw.rados" if backend == "rados" else "client.rgw.db"
        return self.box.run(["sh", "-c", f"tail -n 40 /var/log/ceph/{name}.log "
                             "/var/log/ceph/mon.a.log 2>&1"], check=False).output


def start_cluster(client, tag: str, key_id: str, secret: str) -> Cluster:
    box = Container(client, tag, label="ceph-rgw", network="bridge", ports=PORTS.values())
    box.__enter__()
    try:
        box.write_file(SCRIPT_PATH, SCRIPT.read_bytes(), mode=0o755)
    except BaseException:
        box.__exit__(None, None, None)
        raise
    return Cluster(box, {"MXBUILD_RGW_KEY_ID": key_id, "MXBUILD_RGW_SECRET": secret})


def wait_http(url: str, timeout: float, tail) -> None:
    """Until the gateway answers anything over http (an S3 error included)."""
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ceph RGW at {url} did not answer within {timeout} s:\n"
                                   + tail())
            time.sleep(0.3)
