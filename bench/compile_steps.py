"""The arm64 cross-compile against the amd64 compile of the same tree: the summed time of
every Ninja step (compile, link, protoc…) of each, from the `.ninja_log` recipe "compile"
keeps (out/work/<cell>/compile/ninja-log.txt), and their ratio (target: arm64 / amd64 <=
1.2). Summed step time, not wall time: it does not depend on how many jobs ran at once or
on what else the machine did between steps.

    .venv/bin/python bench/compile_steps.py 1.9.1-cpu-debian12-arm64 1.9.1-cpu-debian12
    .venv/bin/python bench/compile_steps.py PATH/ninja-log.txt PATH/ninja-log.txt

Each argument is a cell id (its log under --out, default out/) or the path of a
.ninja_log. The first is the one measured, the second its peer. Both compiles must be cold:
a ccache hit makes a step a copy, so a compile with ccache hits (ccache-stats.txt next to
the log) is flagged; give them a fresh ccache volume (MXBUILD_CCACHE_VOLUME=name) and
--force-stage recipe.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild.recipes.compile import ccache_counts, ninja_steps  # noqa: E402

TARGET = 1.2


def ninja_log(arg: str, out: Path) -> Path:
    path = Path(arg)
    if path.is_file():
        return path
    by_cell = out / "work" / arg / "compile" / "ninja-log.txt"
    if by_cell.is_file():
        return by_cell
    sys.exit(f"error: {arg} is neither a .ninja_log nor a cell compiled under {out} "
             f"({by_cell} does not exist)\n  fix: compile it first: invoke build --cell {arg} "
             "--recipe compile --publish none --source-dir TREE")


def measure(arg: str, out: Path) -> dict:
    path = ninja_log(arg, out)
    steps = ninja_steps(path.read_text())
    stats = path.with_name("ccache-stats.txt")
    hits, misses = ccache_counts(stats.read_text()) if stats.is_file() else (None, None)
    return {"compile": arg, "log": str(path), **steps, "ccache_hits": hits,
            "ccache_misses": misses}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measured", help="cell id or .ninja_log (e.g. the arm64 cross-compile)")
    ap.add_argument("peer", help="cell id or .ninja_log (e.g. the amd64 compile)")
    ap.add_argument("--out", type=Path, default=ROOT / "out", help="mxbuild's out dir")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    rows = [measure(args.measured, args.out), measure(args.peer, args.out)]
    ratio = round(rows[0]["seconds"] / rows[1]["seconds"], 3) if rows[1]["seconds"] else None
    warm = [r["compile"] for r in rows if r["ccache_hits"]]
    if args.json:
        print(json.dumps({"rows": rows, "ratio": ratio, "target": TARGET, "warm": warm},
                         indent=2))
    else:
        print("| compile | steps | summed step s | wall s | ccache hits / misses |")
        print("|---|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['compile']} | {r['count']} | {r['seconds']:.1f} | "
                  f"{r['wall_seconds']:.1f} | {r['ccache_hits']} / {r['ccache_misses']} |")
        verdict = "n/a" if ratio is None else ("met" if ratio <= TARGET else "missed")
        print(f"\n{args.measured} / {args.peer}: {ratio} (target <= {TARGET}: {verdict})")
        if warm:
            print(f"warning: {', '.join(warm)} had ccache hits: not a cold compile, the "
                  "ratio understates its cost", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
