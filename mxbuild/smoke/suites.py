"""The smoke suites, one per thin-client kind, each in its own fresh container of the
cell's distro: "python" (tests/smoke with mxnet-thin, in the client image) and "jvm"
(examples/jvm-predictor with the thin jar, in the distro's JRE image). A new client kind
registers its suite here; the pipeline names none."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from ..fetch import cached_wheel
from ..images import ImageRef
from ..matrix import Cell
from ..payload import Payload
from ..thin import ThinClient
from . import SmokeCounts, client_image, jvm, merge_junit, run as run_python


@dataclass(frozen=True)
class Suite:
    image: Callable[..., ImageRef]      # (ctx, cell, runtime, logf) -> the image it runs in
    run: Callable[..., SmokeCounts]     # (ctx, cell, image, client, payload, url, keyring,
                                        #  logf, work) -> counts; raises on a failure


def _python_image(ctx, cell: Cell, runtime: ImageRef, logf: IO[str]) -> ImageRef:
    wheel = cached_wheel(cell.wheel, ctx.opts.cache_dir / "downloads",
                         ctx.opts.extra_ca_bundle)
    return client_image.ensure_client_image(ctx, cell, runtime, wheel, logf)


def _python_run(ctx, cell, image, client: ThinClient, payload: Payload, url, keyring, logf,
                work) -> SmokeCounts:
    return run_python(ctx, cell, image, payload, client.version, url, keyring, logf, work)


def _jvm_run(ctx, cell, image, client: ThinClient, payload: Payload, url, keyring, logf,
             work) -> SmokeCounts:
    return jvm.run(ctx, cell, image, client, url, keyring, logf, work)


SUITES = {"python": Suite(_python_image, _python_run), "jvm": Suite(jvm.ensure_image, _jvm_run)}


def images(ctx, cell: Cell, runtime: ImageRef, clients: tuple[ThinClient, ...],
           logf: IO[str]) -> dict[str, ImageRef]:
    """The image of each client's suite (built or reused)."""
    return {c.kind: SUITES[c.kind].image(ctx, cell, runtime, logf) for c in clients}


def run_all(ctx, cell: Cell, suite_images: dict[str, ImageRef],
            clients: tuple[ThinClient, ...], payload: Payload, url: str, keyring: bytes,
            logf: IO[str], work: Path) -> tuple[SmokeCounts, Path]:
    """Every client's suite, in the clients' order; the counts together and one JUnit file
    holding every suite's cases. The first failing suite stops the stage."""
    counts, parts = None, []
    for c in clients:
        start = time.monotonic()
        got = SUITES[c.kind].run(ctx, cell, suite_images[c.kind], c, payload, url, keyring,
                                 logf, work / c.kind)
        got = dataclasses.replace(got, seconds={c.kind: round(time.monotonic() - start, 1)})
        logf.write(f"{c.kind} suite: {got.seconds[c.kind]} s\n")
        counts = got if counts is None else counts + got
        parts.append(work / c.kind / "junit.xml")
    return counts, merge_junit(parts, work / "junit.xml")
