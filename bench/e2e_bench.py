"""End-to-end timings: one cpu cell cold (empty stage cache, every stage forced) and warm
(nothing changed), and a no-op re-run of a whole selection (default: every CPU cell).

    .venv/bin/python bench/e2e_bench.py [--cell 1.9.1-cpu-debian12] [--matrix-cells '*-cpu-*']

The peer of the warm and no-op runs is the cold run of the same cell (ratio printed).
Images are the engine's and are kept (a bootstrap is a separate, ~1 minute cost per distro).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, env: dict) -> float:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"invoke {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell", default="1.9.1-cpu-debian12")
    parser.add_argument("--matrix-cells", default="*-cpu-*",
                        help="selection for the no-op re-run (built first if needed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mxbuild-bench-") as tmp:
        # own stage cache and output; downloads are shared (a download is not a build)
        env = {**os.environ, "MXBUILD_OUT_DIR": f"{tmp}/out",
               "MXBUILD_CACHE_DIR": str(ROOT / ".cache/mxbuild")}
        stages = ROOT / ".cache/mxbuild/stages"
        saved = None
        if stages.exists():                      # cold: an empty stage cache
            saved = stages.with_name(f"stages.bench-{os.getpid()}")
            stages.rename(saved)
        try:
            cold = invoke("build", "--cell", args.cell, "--force", env=env)
            warm = invoke("build", "--cell", args.cell, env=env)
            invoke("build", "--cell", args.matrix_cells, env=env)           # fill the cache
            noop = invoke("build", "--cell", args.matrix_cells, env=env)
        finally:
            if saved is not None:
                import shutil
                shutil.rmtree(stages, ignore_errors=True)
                saved.rename(stages)
    cells = subprocess.run([sys.executable, "-m", "invoke", "matrix", "--json", "--cell",
                            args.matrix_cells], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.count('"id"')
    print(f"machine: {os.cpu_count()} cores; cell {args.cell}")
    print(f"{'run':<34} {'seconds':>8} {'vs cold':>8}")
    print(f"{'cold (empty stage cache, --force)':<34} {cold:8.1f} {1.0:8.2f}")
    print(f"{'warm (nothing changed)':<34} {warm:8.1f} {warm / cold:8.2f}")
    print(f"{f'no-op re-run of {cells} cells':<34} {noop:8.1f} {noop / cold:8.2f}")


if __name__ == "__main__":
    main()
