#!/usr/bin/env python3
"""Mirror an S3 apt repository of N tiny packages to another bucket on the same server:
the first copy, then an incremental update after ONE package was published.

Ours (`repo.mirror`: ordered, verified against the signed indexes, no listing of pool/ or
dists/) against an `aws s3 sync`-style copy done with boto3 (list both sides, copy what
differs by size or ETag with server-side CopyObject in 10 threads — the AWS CLI's default
concurrency —, delete what the source no longer has), on moto and SeaweedFS on loopback,
in one run. Each side's S3 requests are counted.

    .venv/bin/python bench/mirror_bench.py [--packages 1000] [--servers moto,seaweedfs]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mxbuild.repo import ops                                # noqa: E402
from mxbuild.repo.mirror import MirrorOptions, mirror       # noqa: E402
from mxbuild.repo.publish import Upload, publish            # noqa: E402
from mxbuild.repo.sign import Signer                        # noqa: E402
from mxbuild.repo.target import S3Options, open_storage     # noqa: E402
from publish_bench import servers_with_bucket               # noqa: E402
from tests.conftest import make_deb                         # noqa: E402


def counting(client, counts: Counter) -> None:
    client.meta.events.register("before-call.s3.*",
                                lambda model, **kw: counts.update([model.name]))


def ours(endpoint: str, bucket: str, keyring: bytes, dest_prefix: str) -> tuple[float, Counter]:
    s3 = S3Options(endpoint_url=endpoint, path_style=True)
    source = open_storage(f"s3://{bucket}/source", s3)
    dest = open_storage(f"s3://{bucket}/{dest_prefix}", s3)
    counts: Counter = Counter()
    counting(source.client, counts)
    counting(dest.client, counts)
    start = time.perf_counter()
    mirror(source, dest, keyring, MirrorOptions(name="bench"))
    took, counted = time.perf_counter() - start, Counter(counts)
    assert ops.verify(dest, keyring) == [], "the mirror does not verify"
    return took, counted


def sync_style(endpoint: str, bucket: str, dest_prefix: str) -> tuple[float, Counter]:
    """What `aws s3 sync s3://B/source s3://B/<dest> --delete` does."""
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint)
    counts: Counter = Counter()
    counting(client, counts)

    def listing(prefix: str) -> dict[str, tuple[int, str]]:
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix) + 1:]] = (obj["Size"], obj["ETag"])
        return out
    start = time.perf_counter()
    src, dst = listing("source"), listing(dest_prefix)
    todo = [k for k, v in src.items() if dst.get(k) != v]

    def copy(key: str) -> None:
        client.copy_object(Bucket=bucket, Key=f"{dest_prefix}/{key}",
                           CopySource={"Bucket": bucket, "Key": f"source/{key}"})
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(copy, todo))
        list(pool.map(lambda k: client.delete_object(Bucket=bucket, Key=f"{dest_prefix}/{k}"),
                      [k for k in dst if k not in src]))
    return time.perf_counter() - start, counts


def show(counts: Counter) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", type=int, default=1000)
    ap.add_argument("--servers", default="moto,seaweedfs")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        signer = Signer(work / "gnupg")
        keyring = signer.public_keyring()
        t0 = time.perf_counter()
        debs = [make_deb(work / "debs", f"pkg{i:05d}", "1.0-1") for i in range(args.packages)]
        new = make_deb(work / "new", "zz-new", "1.0-1")
        print(f"{args.packages} .debs made in {time.perf_counter() - t0:.1f} s "
              f"({sum(d.stat().st_size for d in debs) // len(debs)} B each)", flush=True)
        bucket = "mirror-bench"
        for name, endpoint in servers_with_bucket(args.servers.split(","), work, bucket):
            source = open_storage(f"s3://{bucket}/source",
                                  S3Options(endpoint_url=endpoint, path_style=True))
            publish(source, signer, [Upload(d, "bookworm", "cpu") for d in debs])
            first = (ours(endpoint, bucket, keyring, "ours"),
                     sync_style(endpoint, bucket, "sync"))
            rows.append((name, "first copy", *first))
            print(name, rows[-1][1], f"ours {first[0][0]:.2f} s, sync {first[1][0]:.2f} s",
                  flush=True)
            publish(source, signer, [Upload(new, "bookworm", "cpu")])
            update = (ours(endpoint, bucket, keyring, "ours"),
                      sync_style(endpoint, bucket, "sync"))
            rows.append((name, "+1 package", *update))
    print(f"\nmirror an S3 repo of {args.packages} packages to another prefix "
          f"(servers on loopback, {os.cpu_count()} cores)")
    print(f"{'server':>10} {'step':>11} {'ours s':>8} {'sync s':>8} {'ours/sync':>10}"
          f" {'ours req':>9} {'sync req':>9}")
    for name, step, (mine, mine_n), (theirs, theirs_n) in rows:
        print(f"{name:>10} {step:>11} {mine:>8.2f} {theirs:>8.2f} {mine / theirs:>10.2f}"
              f" {sum(mine_n.values()):>9} {sum(theirs_n.values()):>9}")
    for name, step, (_, mine_n), (_, theirs_n) in rows:
        print(f"{name} {step}: ours {show(mine_n)}; sync {show(theirs_n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
