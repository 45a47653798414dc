"""Packages index for N .debs, ours vs dpkg-scanpackages and apt-ftparchive; then adding one.

    .venv/bin/python bench/index_bench.py [--n 1000]

Ours: mxbuild.repo.index (read each .deb's control, hash it, render deb822) for the full
index; for one more package, parse the existing index, add the entry, render (what
`publish` does). dpkg-scanpackages always rescans everything; apt-ftparchive gets its
cache database (--db), its own incremental mode. apt-ftparchive needs apt-utils.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild.repo import index  # noqa: E402


def make_deb(pool: Path, i: int) -> Path:
    root = pool.parent / "tree" / f"p{i}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / f"pkg{i}").mkdir(parents=True)
    (root / "usr/share/doc" / f"pkg{i}/payload").write_bytes(i.to_bytes(4, "big") * 256)
    (root / "DEBIAN/control").write_text(
        f"Package: pkg{i}\nVersion: 1.0-{i}\nArchitecture: amd64\nMaintainer: b <b@x.org>\n"
        f"Depends: libc6 (>= 2.17)\nDescription: bench package {i}\n a package\n")
    out = pool / f"pkg{i}_1.0-{i}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return out


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def ours_full(debs):
    return index.render_packages(sorted((index.deb_entry(d, "cpu") for d in debs),
                                        key=lambda e: e["Package"]))


def ours_add(existing: bytes, deb: Path):
    merged, _ = index.merge(index.parse_packages(existing.decode()), [index.deb_entry(deb, "cpu")])
    return index.render_packages(merged)


def run(cmd, cwd) -> bytes:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="mxbuild-index-bench-") as tmp:
        base = Path(tmp)
        pool = base / "pool"
        pool.mkdir()
        print(f"making {n + 1} .debs…", file=sys.stderr)
        debs = [make_deb(pool, i) for i in range(n + 1)]
        extra = debs.pop()
        extra_path = base / extra.name
        extra.rename(extra_path)
        rows = []
        t_ours, packages = timed(lambda: ours_full(debs))
        t_scan, _ = timed(lambda: run(["dpkg-scanpackages", "-m", "pool", "/dev/null"], base))
        row = {"full index": (t_ours, t_scan, None)}
        ftp = shutil.which("apt-ftparchive")
        if ftp:
            t_ftp, _ = timed(lambda: run([ftp, "--db", "cache.db", "packages", "pool"], base))
            row["full index"] = (t_ours, t_scan, t_ftp)
        rows.append(("full index", *row["full index"]))
        t_ours_add, _ = timed(lambda: ours_add(packages, extra_path))
        shutil.copy(extra_path, pool / extra.name)
        t_scan_add, _ = timed(lambda: run(["dpkg-scanpackages", "-m", "pool", "/dev/null"], base))
        t_ftp_add = None
        if ftp:
            t_ftp_add, _ = timed(lambda: run([ftp, "--db", "cache.db", "packages", "pool"], base))
        rows.append(("add 1 to the index", t_ours_add, t_scan_add, t_ftp_add))
    print(f"N = {n}")
    print(f"{'':<20} {'mxbuild s':>10} {'scanpkgs s':>11} {'ftparch s':>10} "
          f"{'ours/scan':>10} {'ours/ftp':>9}")
    for name, ours, scan, ftp_t in rows:
        print(f"{name:<20} {ours:10.3f} {scan:11.3f} "
              f"{(f'{ftp_t:10.3f}' if ftp_t else '         -')} {ours / scan:10.3f} "
              f"{(f'{ours / ftp_t:9.3f}' if ftp_t else '        -')}")


if __name__ == "__main__":
    main()
