"""arm64 on the amd64 build machines: the bootstrap of an arm64 base image against amd64's
(same suite, same machine, one run each, both cold), and the emulated smoke per cell.

    .venv/bin/python bench/arm64_bench.py bootstrap [--suite bookworm] [--twice]
    .venv/bin/python bench/arm64_bench.py smoke --cell '1.9.1-cpu-debian1*-arm64' \
        [--peer] [--repo DIR]

bootstrap: amd64 first, then arm64 (mmdebstrap --arch=arm64 under qemu-aarch64), each
with an empty .deb cache under --work, tagged mxbuild/archbench:* and removed at the end
(unless --keep). --twice adds a warm second arm64 run: its rootfs sha256 and image id
must be the first one's. Prints seconds, the arm64/amd64 ratio, rootfs MB and packages.

smoke: `invoke smoke` of the selected (already built: out/debs/<cell>/) arm64 cells — the
same suites as amd64, in fresh arm64 containers under emulation — then, per cell, the
smoke stage's seconds, each suite's seconds, the counts and the largest difference from
the amd64 reference (report.json). --peer also smokes each cell's amd64 twin (same mxnet,
variant, distro) for the ratio. Needs the cells' .debs (invoke build --arch arm64 …
--no-smoke first) and the emulation `invoke setup` prepares.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild import bootstrap, cli, emulation, engine, matrix, options  # noqa: E402

EPOCH = 1704067200
REPO = "mxbuild/archbench"


def bootstrap_bench(args) -> None:
    m = matrix.load(ROOT / "matrix.yaml")
    arm64 = m.architectures["arm64"]
    emulation.require([arm64], why="the arm64 bootstrap")
    distro = next(d for d in m.distros.values()
                  if d.base.bootstrap and d.base.bootstrap.suite == args.suite)
    client = engine.client()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = [("amd64", None), ("arm64", arm64)] + ([("arm64 warm", arm64)] if args.twice else [])
    rows, tags, cache = [], [], Path(tempfile.mkdtemp(dir=work, prefix="cache-"))
    try:
        for label, arch in runs:
            if not label.endswith("warm"):          # cold: nothing cached for it
                shutil.rmtree(cache)
                cache = Path(tempfile.mkdtemp(dir=work, prefix="cache-"))
            tag = f"{REPO}:{args.suite}-{label.replace(' ', '-')}"
            tags.append(tag)
            log = work / f"{label.replace(' ', '-')}.log"
            print(f"{label}: bootstrapping {args.suite} (log {log}; load {os.getloadavg()[0]:.1f})",
                  flush=True)
            start = time.monotonic()
            with open(log, "w") as logf:
                made = bootstrap.bootstrap_image(client, distro.base.bootstrap, tag, epoch=EPOCH,
                                                 work=work / "w", cache_dir=cache, logf=logf,
                                                 arch=arch)
            image = client.images.get(made.image_id)
            rows.append({"run": label, "seconds": round(time.monotonic() - start, 1),
                         "rootfs_mb": round(made.rootfs_bytes / 1e6, 1),
                         "packages": len(made.packages), "image_id": made.image_id,
                         "rootfs_sha256": made.rootfs_sha256,
                         "architecture": image.attrs.get("Architecture"),
                         "variant": image.attrs.get("Variant"),
                         "load": round(os.getloadavg()[0], 1)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            for tag in tags:
                if client.images.list(name=tag):
                    client.images.remove(tag, force=True)
    print(f"\n{'run':<11} {'seconds':>8} {'rootfs MB':>10} {'packages':>9} {'config':>12} load")
    for r in rows:
        print(f"{r['run']:<11} {r['seconds']:>8} {r['rootfs_mb']:>10} {r['packages']:>9} "
              f"{r['architecture'] + ('/' + r['variant'] if r['variant'] else ''):>12} {r['load']}")
    print(f"arm64/amd64 (cold): {rows[1]['seconds'] / rows[0]['seconds']:.2f}")
    if args.twice:
        same = (rows[1]["rootfs_sha256"], rows[1]["image_id"]) == \
            (rows[2]["rootfs_sha256"], rows[2]["image_id"])
        print(f"arm64 twice: {'same' if same else 'DIFFERENT'} rootfs sha256 and image id")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def smoke_bench(args) -> None:
    opts = options.resolve()
    m = matrix.load(opts.matrix_path)
    cells = m.select(cell=args.cell, arch="arm64")
    twins = {c.id: next((t.id for t in m.cells if t.arch.primary and (
        t.mxnet, t.variant, t.distro.name) == (c.mxnet, c.variant, c.distro.name)), None)
        for c in cells}
    ids = [c.id for c in cells] + ([t for t in twins.values() if t] if args.peer else [])
    start = time.monotonic()
    failed = None
    try:
        cli.smoke_built(cli.Selectors(cell=",".join(ids), arch="all"),
                        cli.RepoArgs(args.repo), staging=False, ca_bundle=None)
    except Exception as exc:     # the table still says what ran
        failed = exc
    total = time.monotonic() - start
    report = json.loads((opts.out_dir / "report.json").read_text())
    rows = {c["id"]: c for c in report["cells"]}
    print(f"\n{'cell':<28} {'smoke s':>8} {'python s':>9} {'jvm s':>7} {'tests':>6} "
          f"{'failed':>7} {'max |Δ|':>9} {'ratio':>6}")
    for cid in ids:
        rec = rows.get(cid, {})
        s = rec.get("smoke") or {}
        stage = next((st["seconds"] for st in rec.get("stages", []) if st["name"] == "smoke"),
                     None)
        per = s.get("seconds") or {}
        diff = s.get("max_abs_diff")
        ratio = s.get("tolerance_ratio")
        print(f"{cid:<28} {stage if stage is not None else '-':>8} "
              f"{per.get('python', '-'):>9} {per.get('jvm', '-'):>7} {s.get('tests', '-'):>6} "
              f"{(s.get('failed', 0) + s.get('errors', 0)) if s else '-':>7} "
              f"{f'{diff:.2g}' if diff is not None else '-':>9} "
              f"{f'{ratio:.2f}' if ratio is not None else '-':>6}")
    if args.peer:
        for cid, twin in twins.items():
            a, b = (next((st["seconds"] for st in rows.get(x, {}).get("stages", [])
                          if st["name"] == "smoke"), None) for x in (cid, twin))
            if a and b:
                print(f"{cid} smoke / {twin} smoke: {a / b:.2f}")
    print(f"total {total:.0f} s (load {os.getloadavg()[0]:.1f})")
    if failed is not None:
        raise SystemExit(f"smoke failed: {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bootstrap")
    b.add_argument("--suite", default="bookworm")
    b.add_argument("--twice", action="store_true", help="a warm second arm64 run")
    b.add_argument("--work", default="/var/tmp/mxbuild-archbench")
    b.add_argument("--keep", action="store_true")
    b.add_argument("--json")
    s = sub.add_parser("smoke")
    s.add_argument("--cell", required=True, help="arm64 cell glob")
    s.add_argument("--peer", action="store_true", help="also smoke the amd64 twins")
    s.add_argument("--repo", help="repository to publish to first (default out/smoke-repo)")
    args = parser.parse_args()
    (bootstrap_bench if args.what == "bootstrap" else smoke_bench)(args)


if __name__ == "__main__":
    main()
