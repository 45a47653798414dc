"""A publisher process for the S3 tests: `python -m tests.integration.s3_publisher ...`.

--kill-after N: SIGKILL this process right after its Nth completed S3 write (the crash
test). --barrier DIR --parties N: the first commit (the compare-and-swap of InRelease) of
each of N publishers waits until all N have reached theirs, so all of them read the same
state and all but one must lose the swap and merge again: a collision forced, not hoped
for. --no-probe: skip the probe of the server's conditional writes (on purpose: the tests
of what a server that ignores them does to a repository).
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mxbuild.repo.publish import Upload, publish
from mxbuild.repo.s3 import S3Storage, S3Target
from mxbuild.repo.sign import Signer


class KillingStorage:
    """The real S3Storage; the process dies right after the Nth write that happened."""

    def __init__(self, inner: S3Storage, kill_after: int):
        self.inner, self.kill_after, self.writes = inner, kill_after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _wrote(self):
        self.writes += 1
        if self.writes == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def put_new(self, *args, **kwargs):
        written = self.inner.put_new(*args, **kwargs)
        if written:
            self._wrote()
        return written

    def put_cas(self, *args, **kwargs):
        token = self.inner.put_cas(*args, **kwargs)
        self._wrote()
        return token

    def put(self, *args, **kwargs):
        self.inner.put(*args, **kwargs)
        self._wrote()


class BarrierStorage:
    """The real storage; the first put_cas waits for `parties` publishers to arrive."""

    def __init__(self, inner, directory: Path, parties: int, timeout: float = 300):
        self.inner, self.directory, self.parties = inner, directory, parties
        self.timeout, self.passed = timeout, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_cas(self, *args, **kwargs):
        if not self.passed:
            (self.directory / str(os.getpid())).touch()
            deadline = time.monotonic() + self.timeout
            while len(list(self.directory.iterdir())) < self.parties:
                if time.monotonic() > deadline:
                    sys.exit(f"barrier: only {len(list(self.directory.iterdir()))} of "
                             f"{self.parties} publishers arrived")
                time.sleep(0.01)
            self.passed = True
        return self.inner.put_cas(*args, **kwargs)


def publish_concurrently(endpoint: str, target: str, gnupg: Path, debs_of: list[list[Path]],
                         *extra: str) -> list[tuple[int, str, str]]:
    """One publisher process per list of .debs, each publishing its .debs one by one, their
    first commits meeting at a barrier (a collision forced); (returncode, stdout, stderr)
    of each."""
    barrier = Path(gnupg).parent / f"barrier-{os.getpid()}-{time.monotonic_ns()}"
    barrier.mkdir()
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.integration.s3_publisher", "--endpoint", endpoint,
         "--target", target, "--gnupg", str(gnupg), "--barrier", str(barrier),
         "--parties", str(len(debs_of)), "--one-by-one", *extra, *map(str, debs)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for debs in debs_of]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def attempts_of(results) -> int:
    return sum(int(out.split("attempts=")[1]) for _, out, _ in results if "attempts=" in out)


def published_of(results) -> set[str]:
    """The .deb file names the publishers reported as published."""
    return {name for _, out, _ in results for line in out.splitlines()
            if line.startswith("published ") for name in line.split()[1:]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--gnupg", required=True)
    ap.add_argument("--codename", default="bookworm")
    ap.add_argument("--component", default="cpu")
    ap.add_argument("--kill-after", type=int, default=0)
    ap.add_argument("--barrier", type=Path)
    ap.add_argument("--parties", type=int, default=0)
    ap.add_argument("--one-by-one", action="store_true")
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("debs", nargs="+")
    args = ap.parse_args()
    storage = S3Storage(S3Target.parse(args.target, endpoint_url=args.endpoint, path_style=True),
                        check_server=not args.no_probe)
    if args.kill_after:
        storage = KillingStorage(storage, args.kill_after)
    if args.barrier:
        storage = BarrierStorage(storage, args.barrier, args.parties)
    uploads = [Upload(Path(d), args.codename, args.component) for d in args.debs]
    batches = [[u] for u in uploads] if args.one_by_one else [uploads]
    attempts = 0
    with Signer(Path(args.gnupg)) as signer:
        for batch in batches:
            attempts += publish(storage, signer, batch).attempts
            # what this publisher believes it published, before a later batch may fail
            print("published " + " ".join(u.deb.name for u in batch), flush=True)
    print(f"done attempts={attempts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
