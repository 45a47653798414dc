"""Base images with mxbuild.bootstrap, per suite: time, size, packages, and whether two
runs give the same rootfs tar and image id; apt-get update in a container of the image,
and the build/runtime Dockerfiles built on it. Optionally the same suite with today's
`debootstrap --variant=minbase` for the package count. (The image stage before/after —
debootstrap + docker import, the code mxbuild replaced — was measured with this bench's
earlier --before-after mode: docs/bench.md.)

    .venv/bin/python bench/bootstrap_bench.py [--suite bookworm,xenial] [--debootstrap]
                                             [--no-dockerfiles] [--json out.json]

Run 1 of a suite starts with an empty download cache (cold), run 2 reuses it. Images are
tagged mxbuild/bootbench:* and removed at the end unless --keep. Work directories and
caches live under --work (default /var/tmp/mxbuild-bootbench) and are removed as they go.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxbuild import bootstrap, engine, images, matrix  # noqa: E402
from mxbuild.paths import DataFolders  # noqa: E402

EPOCH = 1704067200          # 2024-01-01T00:00:00Z: a constant, never the clock
REPO = "mxbuild/bootbench"


def load() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float, patience: float) -> float:
    """Wait up to `patience` seconds for the 1-minute load to drop below limit."""
    deadline = time.monotonic() + patience
    while load() > limit and time.monotonic() < deadline:
        time.sleep(15)
    return round(load(), 2)


def run_once(client, spec, tag: str, work: Path, cache: Path, logp: Path):
    with open(logp, "w") as logf:
        return bootstrap.bootstrap_image(client, spec, tag, epoch=EPOCH, work=work,
                                         cache_dir=cache, logf=logf)


def container_checks(client, ref: str) -> dict:
    script = (
        "set -e; "
        "echo layout=$(if [ -L /bin ]; then echo merged; else echo split; fi); "
        "echo useradd=$(command -v useradd || echo missing); "
        "echo sources=$(cat /etc/apt/sources.list | tr '\\n' ' '); "
        "echo trusted=$(ls /etc/apt/trusted.gpg.d/ /etc/apt/trusted.gpg 2>/dev/null | tr '\\n' ' '); "
        "apt-get update > /tmp/update.log 2>&1 && echo update=ok || echo update=FAILED; "
        "grep -E '^(W|E):' /tmp/update.log | head -5 | sed 's/^/update-warning=/' || true")
    out = client.containers.run(ref, ["sh", "-c", script], remove=True).decode()
    facts: dict[str, object] = {"update_warnings": []}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "update-warning":
            facts["update_warnings"].append(value)
        else:
            facts[key] = value.strip()
    return facts


def build_dockerfiles(client, distro, ref: str, image_id: str, logdir: Path) -> dict:
    data = DataFolders(ROOT)
    out = {}
    for role in ("build", "runtime"):
        text = data.render(f"docker/{role}.Dockerfile.j2",
                           base=images.ImageRef(ref, image_id), distro=distro)
        tag = f"{REPO}:{distro.codename}-{role}"
        start = time.monotonic()
        errors = []
        with open(logdir / f"{distro.codename}-{role}.log", "w") as logf:
            for chunk in client.api.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True,
                                          forcerm=True, pull=False, decode=True):
                if "stream" in chunk:
                    logf.write(chunk["stream"])
                if "error" in chunk:
                    errors.append(chunk["error"].strip())
                    logf.write("ERROR: " + chunk["error"] + "\n")
        out[role] = {"ok": not errors, "seconds": round(time.monotonic() - start, 1),
                     "error": errors[-1][:300] if errors else None}
    return out


def debootstrap_today(spec, work: Path, logdir: Path) -> dict:
    """Today's tool and variant to a directory, for the package count and size only."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        rootfs = tmp / "rootfs"
        logp = logdir / f"{spec.suite}-debootstrap.log"
        with open(logp, "w") as logf:
            start = time.monotonic()
            key = bootstrap._pinned_key(spec, work / "cache", tmp)
            cache = tmp / "debs"
            cache.mkdir()
            try:
                bootstrap.run_debootstrap(spec, rootfs, key, EPOCH, cache, logf)
            except Exception as exc:
                return {"ok": False, "error": str(exc)[:300]}
            seconds = round(time.monotonic() - start, 1)
            bootstrap.tidy_rootfs(rootfs, EPOCH, logf)
            packages = bootstrap.installed_packages(rootfs)
            tar = tmp / "rootfs.tar"
            sha = bootstrap.pack_rootfs(rootfs, tar, EPOCH)
            layout = "merged" if (rootfs / "bin").is_symlink() else "split"
            bootstrap._remove_tree(rootfs)
        return {"ok": True, "seconds": seconds, "mb": round(tar.stat().st_size / 1e6, 1)
                if tar.exists() else None, "packages": packages, "sha256": sha,
                "layout": layout}


def bench_suite(client, distro, args, work: Path, logdir: Path) -> dict:
    spec = distro.base.bootstrap
    result: dict = {"suite": spec.suite, "distro": distro.name, "tool": bootstrap.tool_for(spec)}
    cache = work / "cache"
    shutil.rmtree(bootstrap.deb_cache_dir(cache, spec))        # cold: no .debs
    runs = []
    for n in (1, 2):
        result[f"load_before_run{n}"] = wait_for_quiet(args.max_load, args.patience)
        tag = f"{REPO}:{spec.suite}-{n}"
        try:
            r = run_once(client, spec, tag, work / f"run{n}", cache,
                         logdir / f"{spec.suite}-run{n}.log")
        except Exception as exc:
            result["error"] = str(exc)[-1500:]
            return result
        runs.append(r)
        result[f"run{n}"] = {"seconds": r.seconds, "mb": round(r.rootfs_bytes / 1e6, 1),
                             "packages": len(r.packages), "rootfs_sha256": r.rootfs_sha256,
                             "image_id": r.image_id}
    a, b = runs
    result["tool_version"] = a.tool_version
    result["reproducible"] = a.rootfs_sha256 == b.rootfs_sha256 and a.image_id == b.image_id
    result["package_drift_between_runs"] = bootstrap.package_drift(a.packages, b.packages)
    result["packages"] = a.packages
    ref = f"{REPO}:{spec.suite}-1"
    result["container"] = container_checks(client, ref)
    if not args.no_dockerfiles:
        result["dockerfiles"] = build_dockerfiles(client, distro, ref, a.image_id, logdir)
    if args.debootstrap:
        today = debootstrap_today(spec, work, logdir)
        if today.get("packages"):
            today["only_in_debootstrap"] = sorted(today["packages"].keys() - a.packages.keys())
            today["only_in_ours"] = sorted(a.packages.keys() - today["packages"].keys())
            today["packages"] = len(today["packages"])
        result["debootstrap_minbase"] = today
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="", help="comma-separated suites (default: all)")
    parser.add_argument("--debootstrap", action="store_true",
                        help="also run today's debootstrap minbase for the package count")
    parser.add_argument("--no-dockerfiles", action="store_true")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=2.5)
    parser.add_argument("--patience", type=float, default=600,
                        help="seconds to wait for the load to drop before each run")
    parser.add_argument("--work", default="/var/tmp/mxbuild-bootbench")
    parser.add_argument("--json", default="")
    parser.add_argument("--keep", action="store_true", help="keep the images")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    logdir = work / "logs"
    logdir.mkdir(exist_ok=True)
    client = engine.client()
    m = matrix.load(ROOT / "matrix.yaml")
    distros = [d for d in m.distros.values() if d.base.bootstrap]
    out: dict = {"machine_cores": os.cpu_count(), "epoch": EPOCH}
    try:
        wanted = set(filter(None, args.suite.split(",")))
        out["suites"] = []
        for distro in distros:
            if wanted and distro.codename not in wanted:
                continue
            res = bench_suite(client, distro, args, work, logdir)
            out["suites"].append(res)
            brief = {k: v for k, v in res.items() if k != "packages"}
            print(json.dumps(brief), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    finally:
        if not args.keep:
            for image in client.images.list(name=REPO):
                for t in image.tags:
                    client.images.remove(t, force=True)
    text = json.dumps(out, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
