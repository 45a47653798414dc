"""S3-compatible servers on loopback for the tests and the publish bench.

- moto: a mock written for tests (fast; it decides itself what If-Match means).
- SeaweedFS (`weed mini`, Apache-2.0): a production object store whose S3 gateway
  implements conditional writes, enforces SigV4 authentication, identities and bucket
  policies. Built once by .ci/seaweedfs.sh (cached per version), started here on free
  loopback ports with telemetry, WebDAV, the admin UI and the Iceberg/Lance ports off.
- Ceph RGW (Debian trixie's radosgw, reef) in a container: tests/ceph_rgw.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEAWEEDFS_SCRIPT = ROOT / ".ci/seaweedfs.sh"
VHOST_DOMAIN = "s3.mxbuild.test"        # virtual-hosted buckets: BUCKET.s3.mxbuild.test


def free_ports(n: int) -> list[int]:
    """n ports free a moment ago. Only for `weed`, which cannot bind port 0 (it tells each
    of its servers the others' ports): start_seaweedfs retries when one was taken since."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass(frozen=True)
class Identity:
    name: str
    key_id: str
    secret: str
    actions: tuple[str, ...]


@dataclass
class Server:
    name: str
    endpoint: str
    proc: subprocess.Popen | None          # None: not ours to stop here (moto, a container)
    log_path: Path
    https_endpoint: str | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait(url: str, proc: subprocess.Popen, log_path: Path, timeout: float, what: str,
          ok=lambda status: True) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if ok(resp.status):
                    return
        except urllib.error.HTTPError as exc:     # an S3 error answer: it is up
            if ok(exc.code):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise RuntimeError(f"{what} did not start (log: {log_path}):\n{tail}")
        time.sleep(0.3)


def start_moto(workdir: Path, env: dict[str, str] | None = None) -> Server:
    """moto_server on a port the kernel picks (-p 0), read back from its log."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    log_path = workdir / "moto.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", "0"], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while not (port := re.search(r"Running on http://127\.0\.0\.1:(\d+)",
                                 log_path.read_text(errors="replace"))):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"moto_server did not start (log: {log_path}):\n"
                               + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port.group(1)}"
    _wait(url + "/", proc, log_path, 30, "moto_server")
    return Server("moto", url, proc, log_path)


def seaweedfs_binary() -> Path:
    """The cached `weed` (built by .ci/seaweedfs.sh on first use)."""
    proc = subprocess.run(["bash", str(SEAWEEDFS_SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{SEAWEEDFS_SCRIPT} failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def seaweedfs_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def start_seaweedfs(workdir: Path, identities: list[Identity], binary: Path | None = None,
                    tls: tuple[Path, Path] | None = None) -> Server:
    """`weed mini` on loopback: master, volume, filer and the S3 gateway in one process.
    identities: the S3 users (an identity named 'anonymous' would grant unsigned access;
    none is configured, so anonymous reads need a bucket policy, as on AWS).
    tls: (cert, key) to also serve https (virtual-hosted, for apt-transport-s3)."""
    binary = binary or seaweedfs_binary()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = workdir / "s3.json"
    conf.write_text(json.dumps({"identities": [
        {"name": i.name, "credentials": [{"accessKey": i.key_id, "secretKey": i.secret}],
         "actions": list(i.actions)} for i in identities]}))
    conf.chmod(0o600)
    for attempt in range(3):
        try:
            return _start_weed(binary, workdir, data, conf, tls)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """A port that was free when chosen was bound by someone else before weed bound it."""


def _start_weed(binary: Path, workdir: Path, data: Path, conf: Path,
                tls: tuple[Path, Path] | None) -> Server:
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, s3_tls) = free_ports(9)
    # -logtostderr: its log goes to weed.log only (by default glog also writes files in /tmp)
    cmd = [str(binary), "-logtostderr", "mini", f"-dir={data}", "-ip=127.0.0.1",
           "-ip.bind=127.0.0.1",
           f"-master.port={master}", f"-master.port.grpc={master_g}",
           f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
           f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
           f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-s3.port.iceberg=0",
           "-s3.port.lance=0", f"-s3.config={conf}", f"-s3.domainName={VHOST_DOMAIN}",
           "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
           "-s3.autoCreateBucket=false", "-s3.iam=false",
           # every bucket is a collection with volumes of its own; left to itself, mini
           # sizes volumes at 1 GiB and allows free disk / 1 GiB of them (26 on a CI run
           # with 35 GB free), and a session's buckets ran out: "failed to find writable
           # volumes". Volumes are sparse files: a fixed, small size and a fixed count make
           # the server the same on every machine.
           "-master.volumeSizeLimitMB=64", "-volume.max=400"]
    https = None
    if tls:
        cmd += [f"-s3.port.https={s3_tls}", f"-s3.cert.file={tls[0]}", f"-s3.key.file={tls[1]}"]
        https = f"https://{VHOST_DOMAIN}:{s3_tls}"
    log_path = workdir / "weed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{s3}"
    # ready when the S3 gateway answers (403 to an anonymous ListBuckets) and a write lands
    try:
        _wait(url + "/", proc, log_path, 120, "SeaweedFS",
              ok=lambda status: status in (200, 403))
    except RuntimeError as exc:
        if "address already in use" in log_path.read_text(errors="replace"):
            raise PortTaken(str(exc)) from exc
        raise
    return Server("seaweedfs", url, proc, log_path, https, {"binary": str(binary)})


def wait_writable(client, timeout: float = 120) -> None:
    """SeaweedFS answers before its volume server has registered: wait for a real write."""
    deadline = time.monotonic() + timeout
    name = f"ready-{os.getpid()}"
    while True:
        try:
            client.create_bucket(Bucket=name)
        except Exception as exc:   # noqa: BLE001  (already there: fine)
            if "BucketAlready" not in str(exc):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
        try:
            client.put_object(Bucket=name, Key="probe", Body=b"x")
            client.delete_object(Bucket=name, Key="probe")
            return
        except Exception:          # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def public_read_policy(bucket: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}]})
