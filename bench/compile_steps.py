"""The arm64 cross-compile against the amd64 compile of the same tree: the summed time of
every Ninja step (compile, link, protoc…) of each, from the `.ninja_log` recipe "compile"
keeps (out/work/<cell>/compile/ninja-log.txt), and their ratio (target: arm64 / amd64 <=
1.2). Summed step time, not wall time: it does not depend on how many jobs ran at once or
on what else the machine did between steps.

    .venv/bin/python bench/compile_steps.py 1.9.1-cpu-debian12-arm64 1.9.1-cpu-debian12
    .venv/bin/python bench/compile_steps.py PATH/ninja-log.txt PATH/ninja-log.txt

Each argument is a cell id (its log under --out, default out/) or the path of a
.ninja_log. The first is the one measured, the second its peer. The two need not build the
same steps (arm64 builds no oneDNN: about half of amd64's steps), so a second ratio sums
only the steps whose outputs both logs have: the same sources, compiled by each compiler. Both compiles must be cold:
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

from mxbuild.recipes.compile import ccache_counts, ninja_log_steps, ninja_steps  # noqa: E402

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


def step_seconds(path: Path) -> dict[str, float]:
    """First output of each step → its duration (s)."""
    return {outputs[0]: (end - start) / 1000
            for (start, end, _), outputs in ninja_log_steps(path.read_text()).items()}


def common_steps(a: Path, b: Path) -> dict:
    """The summed time of the steps both builds ran (same first output)."""
    sa, sb = step_seconds(a), step_seconds(b)
    shared = sorted(set(sa) & set(sb))
    return {"count": len(shared), "seconds": [round(sum(sa[o] for o in shared), 3),
                                              round(sum(sb[o] for o in shared), 3)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measured", help="cell id or .ninja_log (e.g. the arm64 cross-compile)")
    ap.add_argument("peer", help="cell id or .ninja_log (e.g. the amd64 compile)")
    ap.add_argument("--out", type=Path, default=ROOT / "out", help="mxbuild's out dir")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    rows = [measure(args.measured, args.out), measure(args.peer, args.out)]
    ratio = round(rows[0]["seconds"] / rows[1]["seconds"], 3) if rows[1]["seconds"] else None
    common = common_steps(Path(rows[0]["log"]), Path(rows[1]["log"]))
    common["ratio"] = (round(common["seconds"][0] / common["seconds"][1], 3)
                       if common["seconds"][1] else None)
    warm = [r["compile"] for r in rows if r["ccache_hits"]]
    if args.json:
        print(json.dumps({"rows": rows, "ratio": ratio, "common": common, "target": TARGET,
                          "warm": warm}, indent=2))
    else:
        print("| compile | steps | summed step s | wall s | ccache hits / misses |")
        print("|---|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['compile']} | {r['count']} | {r['seconds']:.1f} | "
                  f"{r['wall_seconds']:.1f} | {r['ccache_hits']} / {r['ccache_misses']} |")
        verdict = "n/a" if ratio is None else ("met" if ratio <= TARGET else "missed")
        print(f"\n{args.measured} / {args.peer}: {ratio} (target <= {TARGET}: {verdict})")
        print(f"the {common['count']} steps both ran: {common['seconds'][0]:.1f} s / "
              f"{common['seconds'][1]:.1f} s = {common['ratio']}")
        if warm:
            print(f"warning: {', '.join(warm)} had ccache hits: not a cold compile, the "
                  "ratio understates its cost", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
