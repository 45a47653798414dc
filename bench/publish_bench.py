#!/usr/bin/env python3
"""Time to add ONE package to an S3 apt repository that already holds N packages.

Ours (mxbuild's publish protocol) at N=100 and N=1000, and Debian's aptly publishing
to the same S3-compatible endpoint when aptly is installed (`apt-get install aptly`), on
two servers on loopback: moto (a mock) and SeaweedFS (a production object store, built by
.ci/seaweedfs.sh; skipped with a note when it cannot be built). One run each, same
machine, both signing with the same key.

    .venv/bin/python bench/publish_bench.py [--sizes 100,1000] [--servers moto,seaweedfs]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild.repo.publish import Upload, publish          # noqa: E402
from mxbuild.repo.s3 import S3Storage, S3Target            # noqa: E402
from mxbuild.repo.sign import Signer                       # noqa: E402
from tests import s3servers                                # noqa: E402
from tests.conftest import make_deb                        # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto_server did not start")


def make_debs(work: Path, n: int) -> list[Path]:
    return [make_deb(work, f"pkg{i:05d}", "1.0-1") for i in range(n)]


def ours(endpoint: str, bucket: str, signer: Signer, debs: list[Path], new: Path) -> float:
    storage = S3Storage(S3Target.parse(f"s3://{bucket}/ours-{len(debs)}", endpoint_url=endpoint,
                                       path_style=True))
    publish(storage, signer, [Upload(d, "bookworm", "cpu") for d in debs])
    start = time.perf_counter()
    publish(storage, signer, [Upload(new, "bookworm", "cpu")])
    return time.perf_counter() - start


def aptly(endpoint: str, bucket: str, signer: Signer, debs: list[Path], new: Path,
          work: Path, server: str) -> float | None:
    if not shutil.which("aptly"):
        return None
    name = f"aptly-{server}-{len(debs)}"
    root = work / name
    conf = work / f"{name}.conf"
    conf.write_text(json.dumps({
        "rootDir": str(root), "gpgProvider": "gpg",
        "S3PublishEndpoints": {name: {
            "region": "us-east-1", "bucket": bucket, "endpoint": endpoint, "prefix": name,
            "awsAccessKeyID": os.environ["AWS_ACCESS_KEY_ID"],
            "awsSecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"],
            "forceVirtualHostedStyle": False, "plusWorkaround": False}}}))
    env = {**os.environ, "GNUPGHOME": str(signer.home)}
    sign = [f"-gpg-key={signer.fingerprint}", "-batch"]

    def run(*args):
        subprocess.run(["aptly", f"-config={conf}", *args], env=env, check=True,
                       capture_output=True, text=True)
    incoming = work / f"{name}-in"
    incoming.mkdir()
    for d in debs:
        os.link(d, incoming / d.name)
    run("repo", "create", "-distribution=bookworm", "-component=cpu", name)
    run("repo", "add", name, str(incoming))
    run("publish", "repo", *sign, name, f"s3:{name}:")
    start = time.perf_counter()
    run("repo", "add", name, str(new))
    run("publish", "update", *sign, "bookworm", f"s3:{name}:")
    return time.perf_counter() - start


def start_server(name: str, work: Path):
    if name == "moto":
        proc, endpoint = start_moto()
        return proc, endpoint
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    server = s3servers.start_seaweedfs(work / "seaweedfs", [s3servers.Identity(
        "bench", key, secret, ("Admin", "Read", "Write", "List", "Tagging"))])
    import boto3
    s3servers.wait_writable(boto3.client("s3", endpoint_url=server.endpoint))
    return server.proc, server.endpoint


def servers_with_bucket(names: list[str], work: Path, bucket: str):
    """(name, endpoint) for each server that can be had here, with `bucket` created; each
    server is stopped before the next one starts."""
    import boto3
    for name in names:
        try:
            proc, endpoint = start_server(name, work)
        except RuntimeError as exc:
            print(f"{name}: not available ({str(exc).splitlines()[0]})")
            continue
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            yield name, endpoint
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--servers", default="moto,seaweedfs")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    results: dict[tuple[str, int], tuple[float, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        signer = Signer(work / "gnupg")
        signer.public_keyring()
        debs = {n: make_debs(work / f"n{n}", n) for n in sizes}
        new = {n: make_deb(work / f"new{n}", "zz-new", "1.0-1") for n in sizes}
        bucket = "publish-bench"
        for name, endpoint in servers_with_bucket(args.servers.split(","), work, bucket):
            for n in sizes:
                results[(name, n)] = (
                    ours(endpoint, bucket, signer, debs[n], new[n]),
                    aptly(endpoint, bucket, signer, debs[n], new[n], work, name))
    print(f"add 1 package to an S3 repo of N packages (servers on loopback, "
          f"{os.cpu_count()} cores)")
    print(f"{'server':>10} {'N':>6} {'mxbuild s':>10} {'aptly s':>9} {'mxbuild/aptly':>14}")
    for (name, n), (mine, theirs) in results.items():
        ratio = f"{mine / theirs:.2f}" if theirs else "n/a"
        print(f"{name:>10} {n:>6} {mine:>10.3f} "
              f"{theirs if theirs is not None else float('nan'):>9.3f} {ratio:>14}")
    servers = sorted({name for name, _ in results})
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        for name in servers:
            if (name, a) in results and (name, b) in results:
                print(f"{name}: mxbuild N={b} / N={a}: "
                      f"{results[(name, b)][0] / results[(name, a)][0]:.2f}")
    if "moto" in servers:
        for name in servers:
            if name != "moto":
                for n in sizes:
                    if (name, n) in results and ("moto", n) in results:
                        print(f"N={n}: mxbuild on {name} / on moto: "
                              f"{results[(name, n)][0] / results[('moto', n)][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
