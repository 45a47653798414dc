"""GPU packages installed and loaded without a GPU (tests/gpu_hosts.py does the checking).

    MXBUILD_WHEEL_DIR=/work/cache/wheels .venv/bin/invoke build --cell 1.9.1-cu112-ubuntu20 --publish none
    MXBUILD_WHEEL_DIR=/work/cache/wheels .venv/bin/python bench/gpu_load_check.py --cell 1.9.1-cu112-ubuntu20

For each selected GPU cell whose .debs `invoke build` left in out/debs/<cell>/ (cells not
built yet are built first with --build), a fresh container of its distro gets the CUDA
runtime (the distro's packages where matrix.yaml declares them as Depends alternatives,
else NVIDIA's CUDA 11 wheels from PyPI; libcuda.so.1 from the distro's driver package),
runs `apt-get install libmxnet` from a throwaway local repository, loads the library and
runs the smoke suite; or, where no source serves a soname, proves exactly those are missing
and says why. Nothing NVIDIA-licensed leaves the check containers.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild import engine, matrix, options          # noqa: E402
from mxbuild.context import open_run                  # noqa: E402
from mxbuild.entry import stop_on_signals             # noqa: E402
from tests import gpu_hosts                           # noqa: E402


def _build(cell_id: str) -> None:
    """`invoke build` of one cell; interrupted, it gets SIGTERM (its own handler removes its
    containers), never the SIGKILL subprocess.run would send."""
    child = subprocess.Popen([sys.executable, "-m", "invoke", "build", "--cell", cell_id,
                              "--publish", "none"], cwd=ROOT)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        raise
    if code:
        sys.exit(f"invoke build --cell {cell_id} exited with {code}")


def main() -> None:
    stop_on_signals()       # SIGTERM: the check containers go, the build child gets SIGTERM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="*-cu*", help="cell-id glob (GPU cells)")
    parser.add_argument("--build", action="store_true",
                        help="first `invoke build --publish none` the cells not built yet")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    opts = options.resolve()
    cells = [c for c in matrix.load(opts.matrix_path).select(cell=args.cell) if c.cuda]
    if not cells:
        sys.exit(f"no GPU cell matches {args.cell!r}")
    ctx = open_run(opts, docker=engine.client(), gpu=False)
    results = []
    for cell in cells:
        debs = opts.out_dir / "debs" / cell.id
        if not any(debs.glob(f"{cell.package.name}_{cell.deb_version}_*.deb")):
            if not args.build:
                print(f"{cell.id}: not built at {cell.deb_version} (add --build, or run "
                      f"invoke build --cell {cell.id} --publish none)", flush=True)
                continue
            _build(cell.id)
        work = opts.work_dir / cell.id / "gpu-check"
        work.parent.mkdir(parents=True, exist_ok=True)
        result = gpu_hosts.check_built(ctx, cell, debs, work)
        print(gpu_hosts.describe(result), flush=True)
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    served = sum(1 for r in results if r["ok"] and not r.get("missing"))
    print(f"{len(results)} cells checked: {served} loaded with a full runtime, "
          f"{sum(1 for r in results if r['ok'] and r.get('missing'))} with named missing "
          f"sonames, {sum(1 for r in results if not r['ok'])} failed")
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
