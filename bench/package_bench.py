"""Packaging: our .deb assembly (debpack: the shared payload compressed once) vs
`dpkg-deb -Zxz --build`, on the same package trees, one run.

    .venv/bin/python bench/package_bench.py                    # the CPU row (8 distros)
    .venv/bin/python bench/package_bench.py --variant cu112    # slow: ~900 MB library
    .venv/bin/python bench/package_bench.py --variant gpu      # slow: one cell per GPU variant

(a) one cell: ours with an empty part cache vs one dpkg-deb run: time and size ratios
    (targets: the CPU payload both ≤ 1.0; a GPU library, LZMA2 setting `wide`, time ≤ 0.8
    at size ≤ 0.95); printed for every cell that compressed its payload (the first of
    each distinct payload), with the setting debpack chose for it.
(b) the whole row: ours for every cell (one part per distinct payload, compressed once)
    vs one dpkg-deb run per cell (target: ≥ 4× faster).

The trees are what the package stage stages (deb.stage_tree of each real cell, payload
taken from the pinned wheel) with control files from the host's dpkg-gencontrol; only the
step that turns a tree into a .deb is timed. Peer: the host's dpkg-deb (multi-threaded xz,
level 6) with --root-owner-group and SOURCE_DATE_EPOCH. Every .deb of ours is read back
with `dpkg-deb -c` and must list exactly its tree, with the same payload bytes as the
peer's .deb (compared after `dpkg-deb --fsys-tarfile`).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild import deb, debpack, matrix, options  # noqa: E402
from mxbuild.context import open_run  # noqa: E402
from mxbuild.fetch import fetch_wheel  # noqa: E402
from mxbuild.payload import PRIVATE_DIR, Payload  # noqa: E402
from mxbuild.recipes import official  # noqa: E402
from mxbuild.recipes.wheel import PROVENANCE  # noqa: E402


# per LZMA2 setting: (time, size) ratios ours/dpkg-deb of one cell that compressed its payload
TARGETS = {"default": (1.0, 1.0), "wide": (0.8, 0.95)}


def host_dpkg() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], check=True,
                          capture_output=True, text=True).stdout


def payload_from_wheel(cell, opts, into: Path) -> Payload:
    """libmxnet.so and the bundled libraries straight from the pinned wheel (the wheel
    recipe also rewrites the RPATH; that does not change what compression costs)."""
    wheel = fetch_wheel(cell.official_wheel, opts.cache_dir / "downloads", opts.extra_ca_bundle)
    files = {}
    with zipfile.ZipFile(wheel) as zf:
        for name, rel in [("libmxnet.so", "libmxnet.so"),
                          *((b, f"{PRIVATE_DIR}/{b}") for b in cell.official_wheel.bundled)]:
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            with zf.open(f"mxnet/{name}") as src, open(into / rel, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files[rel] = hashlib.sha256((into / rel).read_bytes()).hexdigest()
    pin = cell.official_wheel
    source = f"{pin.filename} (PyPI {pin.name}=={pin.version})"
    return Payload(into, files,
                   official.member_hashes(wheel, "mxnet", ["libmxnet.so", *pin.bundled]),
                   source, official.archive_epoch(wheel), tuple(pin.bundled),
                   tuple(line.format(source=source) for line in PROVENANCE), official.OVERRIDES)


def stage(ctx, cell, payload: Payload, compression: debpack.Compression,
          work: Path) -> tuple[Path, Path]:
    """(tree without DEBIAN/, control dir) of the cell's libmxnet package, as the package
    stage makes them."""
    name = cell.package.name
    src = deb.stage_tree(ctx, cell, payload, {"dpkg": host_dpkg()}, {name: compression},
                         work / cell.id)
    root = src / "debian" / name
    control = src / "control"
    shutil.copytree(src / "DEBIAN" / name, control)
    sums = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(root)}\n")
    (control / "md5sums").write_text("".join(sums))
    (src / "substvars").write_text("shlibs:Depends=libc6\nmxbuild:Depends=\nmisc:Depends=\n")
    (root / "DEBIAN").mkdir()
    subprocess.run(["dpkg-gencontrol", f"-p{cell.package.name}", f"-P{root}",
                    f"-T{src / 'substvars'}"], cwd=src, check=True, capture_output=True)
    shutil.move(root / "DEBIAN/control", control / "control")
    (root / "DEBIAN").rmdir()
    return root, control


def peer_build(root: Path, control: Path, epoch: int, out: Path) -> tuple[float, Path]:
    """dpkg-deb --build of the same tree: DEBIAN/ added, modes and mtimes as ours."""
    tree = root.parent / (root.name + ".peer")
    shutil.copytree(root, tree, symlinks=True, copy_function=os.link)
    shutil.copytree(control, tree / "DEBIAN")
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():            # a link's own mode is 0777 on Linux
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(out)],
                   check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    seconds = time.perf_counter() - start
    shutil.rmtree(tree)
    return seconds, next(out.glob("*.deb"))


def contents(deb_path: Path) -> list[tuple]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb_path)], check=True,
                         capture_output=True).stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            digest = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isfile() else ""
            out.append((m.name, m.mode, m.mtime, m.size, digest))
    return out


def select(variant: str, cell_glob: str | None) -> list:
    everything = matrix.load(ROOT / "matrix.yaml")
    if variant != "gpu":
        return everything.select(variant=variant, cell=cell_glob)
    first: dict[str, object] = {}
    for cell in everything.select(cell=cell_glob):
        if cell.cuda:
            first.setdefault(cell.variant, cell)
    if not first:
        sys.exit(f"--variant gpu --cell {cell_glob!r}: no GPU cell matches; "
                 "fix: give a glob that matches CUDA cells (see `invoke matrix`)")
    return list(first.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="cpu",
                        help="a variant, or 'gpu': the first cell of every GPU variant")
    parser.add_argument("--cell", default=None, help="a glob within the variant")
    args = parser.parse_args()
    cells = select(args.variant, args.cell)
    with tempfile.TemporaryDirectory(prefix="mxbuild-package-bench-") as tmp:
        tmp = Path(tmp)
        opts = options.resolve(out_dir=str(tmp / "out"))
        ctx = open_run(opts, gpu=False)
        payloads: dict[str, Payload] = {}
        trees = []
        for cell in cells:
            if cell.official_wheel.sha256 not in payloads:
                payloads[cell.official_wheel.sha256] = payload_from_wheel(
                    cell, opts, tmp / "payload" / cell.official_wheel.sha256[:12])
            payload = payloads[cell.official_wheel.sha256]
            # as the package stage chooses it (the target's dpkg: here the host's)
            compression = deb.compression_for(cell, payload, list(payload.files), host_dpkg())
            trees.append((cell, payload, compression,
                          *stage(ctx, cell, payload, compression, tmp / "work")))
        sizes = sorted(sum(p.stat().st_size for p in payload.dir.rglob("*") if p.is_file())
                       for payload in payloads.values())
        print(f"machine: {os.cpu_count()} cores; host dpkg {host_dpkg()}; "
              f"{args.variant}: {len(cells)} cells, {len(payloads)} distinct "
              f"payload(s), {sizes[0] / 1e6:.0f}–{sizes[-1] / 1e6:.0f} MB")

        ours_times, peer_times, ours_sizes, peer_sizes, cold = [], [], [], [], []
        parts = tmp / "parts"                      # empty: nothing compressed yet
        for cell, payload, compression, root, control in trees:
            shared = deb.shared_payload(cell, payload, list(payload.files))
            start = time.perf_counter()
            ours = debpack.assemble(root, control, shared, payload.source_date_epoch,
                                    compression, parts, tmp / "ours" / cell.id)
            ours_times.append(time.perf_counter() - start)
            if not ours.data.shared_reused:
                cold.append(len(ours_times) - 1)
            seconds, peer = peer_build(root, control, payload.source_date_epoch,
                                       tmp / "peer" / cell.id)
            peer_times.append(seconds)
            ours_sizes.append(ours.path.stat().st_size)
            peer_sizes.append(peer.stat().st_size)
            listing = subprocess.run(["dpkg-deb", "-c", str(ours.path)], check=True,
                                     capture_output=True, text=True).stdout
            debpack.check_listing(listing, root, payload.source_date_epoch, ours.path.name)
            # the same entries (dpkg-deb may order a symlink elsewhere: compared sorted)
            ours_files, peer_files = sorted(contents(ours.path)), sorted(contents(peer))
            if ours_files != peer_files:
                differ = sorted(set(ours_files) ^ set(peer_files))[:6]
                sys.exit(f"{cell.id}: our .deb and dpkg-deb's hold different files: {differ}")
            print(f"  {cell.id:<26} ours {ours_times[-1]:6.1f} s "
                  f"{'(part reused)' if ours.data.shared_reused else '(compressed) '} "
                  f"{ours_sizes[-1] / 1e6:7.2f} MB | dpkg-deb {seconds:6.1f} s "
                  f"{peer_sizes[-1] / 1e6:7.2f} MB", flush=True)

    for i in cold:
        time_ratio, size_ratio = ours_times[i] / peer_times[i], ours_sizes[i] / peer_sizes[i]
        setting = trees[i][2].setting
        goal = TARGETS[setting]
        met = time_ratio <= goal[0] and size_ratio <= goal[1]
        print(f"(a) one cell, {cells[i].id} ({setting}): time ours/dpkg-deb "
              f"{time_ratio:.2f}, size ours/dpkg-deb {size_ratio:.3f} — target time ≤ "
              f"{goal[0]} at size ≤ {goal[1]}: {'met' if met else 'NOT met'}")
    print(f"(b) {len(cells)} cells: ours {sum(ours_times):.1f} s, dpkg-deb "
          f"{sum(peer_times):.1f} s: {sum(peer_times) / sum(ours_times):.1f}x faster; "
          f"size ours/dpkg-deb {sum(ours_sizes) / sum(peer_sizes):.3f}")


if __name__ == "__main__":
    main()
