"""End-to-end timings.

Default: one cpu cell cold (empty stage cache, every stage forced) and warm (nothing
changed), and a no-op re-run of a whole selection (default: every CPU cell).

    .venv/bin/python bench/e2e_bench.py [--cell 1.9.1-cpu-debian12] [--matrix-cells '*-cpu-*']

The peer of the warm and no-op runs is the cold run of the same cell (ratio printed).
Images are the engine's and are kept (a bootstrap is a separate, ~1 minute cost per distro).

--fresh-agent: what a CI agent that starts empty pays, with and without a warm artifact
cache (a shared directory). Every timed run gets its own Docker engine with an empty data
root (a second dockerd on its own socket and bridge; the host's engine is not touched) and
an empty cache directory:

    .venv/bin/python bench/e2e_bench.py --fresh-agent [--cell …] [--matrix-cells …] [--jobs 2]

1. warm-up (not a peer): the selection on the host's engine with --force and the artifact
   cache: every image and stage output it uses is stored there;
2. the cell cold on an empty engine, no artifact cache (bootstrap, image builds, every stage);
3. the same with the warm artifact cache and --force: images loaded, every stage run;
4. the same with the warm artifact cache, not forced: images and stage outputs fetched;
5. the selection at --jobs on an empty engine with the warm artifact cache and --force (the
   release-day agent), next to the same forced run on the host's engine with its images
   present (today's path) in the same bench run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.docker_engines import fresh_engine   # noqa: E402  (shared with the rehearsal)


def invoke(*args: str, env: dict) -> float:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"invoke {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    # the machine may be shared: say how busy it was (5-minute load average at the end)
    print(f"  invoke {' '.join(args)}: {seconds:.1f} s, load {os.getloadavg()[1]:.1f}",
          flush=True)
    return seconds


def fresh_run(tmp: Path, name: str, args: list[str], env: dict) -> float:
    """`invoke build ARGS` on an empty engine with an empty cache and output directory."""
    with fresh_engine(tmp / f"engine-{name}", "mxbench") as host:
        run_env = {**env, "DOCKER_HOST": host, "MXBUILD_CACHE_DIR": str(tmp / f"cache-{name}"),
                   "MXBUILD_OUT_DIR": str(tmp / f"out-{name}")}
        try:
            return invoke("build", *args, env=run_env)
        finally:
            shutil.rmtree(tmp / f"cache-{name}", ignore_errors=True)
            shutil.rmtree(tmp / f"out-{name}", ignore_errors=True)


def fresh_agent(args, env: dict) -> None:
    env = {k: v for k, v in env.items() if k not in ("MXBUILD_ARTIFACT_CACHE", "DOCKER_HOST")}
    with tempfile.TemporaryDirectory(prefix="mxbuild-fresh-", dir=ROOT / ".cache") as t:
        tmp = Path(t)
        artifacts = str(tmp / "artifacts")
        selection = ["--cell", args.matrix_cells, "--jobs", str(args.jobs)]
        host_env = {**env, "MXBUILD_CACHE_DIR": str(tmp / "cache-host"),
                    "MXBUILD_OUT_DIR": str(tmp / "out-host")}
        warmup = invoke("build", *selection, "--force", "--artifact-cache", artifacts,
                        env=host_env)
        shutil.rmtree(tmp / "cache-host")
        today = invoke("build", *selection, "--force", env=host_env)
        stored = sum(f.stat().st_size for f in Path(artifacts).rglob("*") if f.is_file())
        cell = ["--cell", args.cell]
        cold = fresh_run(tmp, "cold", [*cell, "--force"], env)
        images = fresh_run(tmp, "images", [*cell, "--force", "--artifact-cache", artifacts],
                           env)
        everything = fresh_run(tmp, "all", [*cell, "--artifact-cache", artifacts], env)
        agent = fresh_run(tmp, "agent", [*selection, "--force", "--artifact-cache", artifacts],
                          env)
    cells = subprocess.run([sys.executable, "-m", "invoke", "matrix", "--json", "--cell",
                            args.matrix_cells], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.count('"id"')
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end;"
          f" artifact cache {stored / 1e9:.2f} GB after the warm-up ({warmup:.1f} s)")
    print(f"{'run':<62} {'seconds':>8} {'ratio':>6}")
    print(f"{f'{args.cell}, empty engine, no artifact cache (--force)':<62} {cold:8.1f} {1:6.2f}")
    for what, t in ((f"{args.cell}, empty engine, warm artifact cache, --force", images),
                    (f"{args.cell}, empty engine, warm artifact cache", everything)):
        print(f"{what:<62} {t:8.1f} {t / cold:6.2f}")
    print(f"{f'{cells} cells --jobs {args.jobs} --force, host engine (images present)':<62} "
          f"{today:8.1f} {1:6.2f}")
    print(f"{f'{cells} cells --jobs {args.jobs} --force, fresh agent, warm artifact cache':<62} "
          f"{agent:8.1f} {agent / today:6.2f}")


def cold_warm(args, env: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="mxbuild-bench-") as tmp:
        # own stage cache and output; downloads are shared (a download is not a build)
        env = {**env, "MXBUILD_OUT_DIR": f"{tmp}/out",
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cell", default="1.9.1-cpu-debian12")
    parser.add_argument("--matrix-cells", default="*-cpu-*",
                        help="selection for the no-op re-run / the fresh agent")
    parser.add_argument("--fresh-agent", action="store_true",
                        help="empty engines and caches, with and without an artifact cache")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the fresh agent's run")
    args = parser.parse_args()
    if args.fresh_agent:
        fresh_agent(args, dict(os.environ))
    else:
        cold_warm(args, dict(os.environ))


if __name__ == "__main__":
    main()
