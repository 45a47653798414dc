"""Release day, rehearsed: the Jenkinsfile's own steps on fresh agents against SeaweedFS.

    .venv/bin/python bench/release_rehearsal.py                       # the 8 CPU cells
    .venv/bin/python bench/release_rehearsal.py --cells '1.9.1-cpu-debian1{1,2}'
    MXBUILD_WHEEL_DIR=/work/cache/wheels .venv/bin/python bench/release_rehearsal.py --cells '*'

The Jenkinsfile is run by tests/jenkins_sim.groovy (no copy of its steps lives here): two
agents (labels cpu and gpu; no GPU here, so GPU checks report "skipped: no GPU"), each with
its own checkout of this commit, its own empty Docker engine and empty caches, sharing the
artifact cache and the apt repository (two buckets on one SeaweedFS). The .debs travel from
build to smoke and staging by stash/unstash; promote and verify run as the Promote stage
says (its `input` is approved). Then a container of each promoted cell's distro installs
the packages from the stable suite over http from SeaweedFS (GPU cells: with the CUDA
runtime from the distro's archive or NVIDIA's PyPI wheels, tests/gpu_hosts.py).

Printed: per stage and agent the time, what ran, what was reused (and fetched from the
artifact cache), which images were built or loaded; per agent the busy time; per host the
install; the sizes of the repository and the artifact cache. --disk prints what the
selection needs on disk before anything runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import release_rehearsal as rr                 # noqa: E402
from tests.docker_engines import can_start               # noqa: E402

GB = 1e9


def selected(cells: str, mxnet: str) -> list[dict]:
    args = [sys.executable, "-m", "invoke", "matrix", "--json", "--cell", cells]
    if mxnet:
        args += ["--mxnet", mxnet]
    return json.loads(subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                                     check=True).stdout)


def disk_estimate(cells: list[dict], agents: int) -> dict[str, float]:
    """Bytes the run needs, from the pinned wheels' sizes (measured .deb and image sizes
    per kind of cell, docs/bench.md): each agent holds what it built or smoked."""
    import yaml
    doc = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    wheel_dir = Path(os.environ.get("MXBUILD_WHEEL_DIR", "/nonexistent"))
    wheels = {}
    for variant in doc["variants"].values():
        for b in variant["builds"]:
            if b.get("wheel"):
                path = wheel_dir / b["wheel"]["filename"]
                gpu = variant["cuda"] is not None
                wheels[(b["mxnet"], variant["cuda"])] = (
                    path.stat().st_size if path.is_file() else (0.9 if gpu else 0.05) * GB,
                    path.is_file())
    gpu = [c for c in cells if c["cuda"]]
    cpu = [c for c in cells if not c["cuda"]]
    distros = {c["distro"] for c in cells}
    used = {(c["mxnet"], c["cuda"]) for c in cells}
    wheel_bytes = sum(wheels[k][0] for k in used if k in wheels)
    missing = sum(wheels[k][0] for k in used if k in wheels and not wheels[k][1])
    # per GPU cell: the wheel copy in the agent's download cache (hard-linked when the wheel
    # directory is on the same filesystem), the unpacked payload (~1.0 GB), the .deb
    # (~0.2 GB) in the agent's out/, stage cache, stash, archive and the artifact cache
    est = {
        "wheel downloads (shared MXBUILD_WHEEL_DIR)": missing,
        "agents: payload trees + stage caches": len(gpu) * 1.4 * GB + len(cpu) * 0.25 * GB,
        "agents: .debs (out/, stage cache, stash, smoke repos)":
            len(gpu) * 0.2 * GB * 4 + len(cpu) * 0.027 * GB * 4,
        "artifact cache (payloads, .debs, images)":
            len(gpu) * 1.2 * GB + len(cpu) * 0.1 * GB + len(distros) * 3 * 0.4 * GB,
        "agent engines (images per distro, per agent)": len(distros) * agents * 1.2 * GB,
        "repository (staging + stable share pool files)": len(gpu) * 0.2 * GB
        + len(cpu) * 0.027 * GB,
    }
    est["total"] = sum(est.values())
    est["wheels already in MXBUILD_WHEEL_DIR"] = wheel_bytes - missing
    return est


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="*-cpu-*", help="the CELLS parameter (glob)")
    parser.add_argument("--mxnet", default="", help="the MXNET_VERSION parameter")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--work", help="work directory (default: a temporary one under "
                                       ".cache/, removed afterwards unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-host-check", action="store_true")
    parser.add_argument("--disk", action="store_true", help="only print the disk estimate")
    parser.add_argument("--json", help="also write the outcome as JSON here")
    args = parser.parse_args()
    cells = selected(args.cells, args.mxnet)
    est = disk_estimate(cells, args.agents)
    work_root = Path(args.work) if args.work else ROOT / ".cache"
    work_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work_root).free
    print(f"{len(cells)} cells ({sum(1 for c in cells if c['cuda'])} GPU); disk needed about "
          f"{est['total'] / GB:.1f} GB, free {free / GB:.1f} GB under {work_root}")
    for what, size in est.items():
        print(f"  {what:<55} {size / GB:7.1f} GB")
    if args.disk:
        return
    if est["total"] > free:
        sys.exit("not enough free disk for this selection (see above)")
    why = can_start()
    if why:
        sys.exit(f"cannot start the agents' engines: {why}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rehearsal-",
                                                                    dir=work_root))
    plan = rr.Plan(args.cells, args.mxnet, args.agents, host_check=not args.no_host_check)
    try:
        outcome = rr.rehearse(plan, work)
        print(rr.report(outcome))
        if args.json:
            Path(args.json).write_text(json.dumps({
                "result": outcome.sim.result, "error": outcome.sim.error,
                "seconds": outcome.seconds, "pipeline_seconds": outcome.sim.seconds,
                "steps": outcome.steps, "hosts": outcome.hosts, "sizes": outcome.sizes,
                "listing": outcome.listing, "commit": outcome.commit}, indent=2, default=str))
    finally:
        if not (args.keep or args.work):
            rr.cleanup(work)
        else:
            print(f"kept {work}")
    ok = outcome.sim.result == "SUCCESS" and all(h["ok"] for h in outcome.hosts)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
