"""A mirror process for the mirror tests: `python -m tests.integration.s3_mirrorer ...`.

--kill-after N: SIGKILL this process right after the Nth write of the mirror (the crash
test; one worker, so the Nth write is always the same one)."""
import argparse
import os
import signal
from pathlib import Path

from mxbuild.repo.mirror import MirrorOptions, mirror
from mxbuild.repo.target import S3Options, open_storage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--from", dest="source", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--keyring", required=True, type=Path)
    ap.add_argument("--kill-after", type=int, default=0)
    args = ap.parse_args()
    writes = []

    def hook(kind: str) -> None:
        writes.append(kind)
        if len(writes) == args.kill_after:
            print(f"killed after write {len(writes)} ({kind})", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    s3 = S3Options(endpoint_url=args.endpoint, path_style=True)
    mirror(open_storage(args.source, s3), open_storage(args.to, s3), args.keyring.read_bytes(),
           MirrorOptions(name="test-mirror", workers=1, hook=hook))


if __name__ == "__main__":
    main()
