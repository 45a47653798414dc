"""Export the smoke suite's model and its reference outputs, computed on the host.

Run as `python -m mxbuild.smoke_model OUTDIR` (a separate process: it loads MXNet).
The expectations therefore come from the official wheel on the host, never from the
library under test.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 20221
PREFIX = "smokenet"


def export(out: Path) -> None:
    import mxnet as mx
    import numpy as np
    from mxnet import gluon

    out.mkdir(parents=True, exist_ok=True)
    mx.random.seed(SEED)
    rng = np.random.RandomState(SEED)
    net = gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gluon.nn.Conv2D(8, kernel_size=3, padding=1, activation="relu"),
                gluon.nn.BatchNorm(),
                gluon.nn.MaxPool2D(2),
                gluon.nn.Conv2D(16, kernel_size=3, activation="relu"),
                gluon.nn.GlobalAvgPool2D(),
                gluon.nn.Flatten(),
                gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier(magnitude=2.0))
    net.hybridize()
    single = rng.uniform(-1, 1, (1, 3, 32, 32)).astype("float32")
    batch = rng.uniform(-1, 1, (8, 3, 32, 32)).astype("float32")
    net(mx.nd.array(single))
    # Non-trivial running statistics, so BatchNorm's inference path is really exercised.
    for name, param in net.collect_params().items():
        if name.endswith("running_mean"):
            param.set_data(mx.nd.array(rng.uniform(-0.1, 0.1, param.shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    net.export(str(out / PREFIX), epoch=0)
    np.savez(out / "reference.npz", single=single, batch=batch,
             out_single=net(mx.nd.array(single)).asnumpy(),
             out_batch=net(mx.nd.array(batch)).asnumpy())
    (out / "model.json").write_text(json.dumps({
        "prefix": PREFIX, "epoch": 0, "input": "data", "made_with": mx.__version__,
        "seed": SEED}, indent=2))


if __name__ == "__main__":
    export(Path(sys.argv[1]))
