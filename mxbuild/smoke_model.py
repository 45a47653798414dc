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
# Deconvolution (issue 27: it crashed a compiled build in oneDNN's path): channel counts
# that are no multiple of 8 or 16, so oneDNN cannot pick a blocked layout without padding
DECONV = {"kernel": (3, 3), "stride": (2, 2), "pad": (1, 1), "num_filter": 5,
          "num_group": 1}
DECONV_DATA = (2, 3, 7, 7)


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
    export_deconvolution(out, rng)


def export_deconvolution(out: Path, rng) -> None:
    """Inputs, outputs and the gradients (autograd, a random head gradient) of a 2-D
    Deconvolution with and without bias: deconvolution.npz, deconvolution.json."""
    import mxnet as mx
    import numpy as np

    channels = DECONV_DATA[1]
    weight_shape = (channels, DECONV["num_filter"] // DECONV["num_group"], *DECONV["kernel"])
    arrays = {"data": rng.uniform(-1, 1, DECONV_DATA).astype("float32"),
              "weight": rng.uniform(-1, 1, weight_shape).astype("float32"),
              "bias": rng.uniform(-1, 1, (DECONV["num_filter"],)).astype("float32")}
    for case, no_bias in (("bias", False), ("nobias", True)):
        inputs = {k: mx.nd.array(arrays[k]) for k in ("data", "weight", "bias")
                  if k != "bias" or not no_bias}
        for value in inputs.values():
            value.attach_grad()
        with mx.autograd.record():
            result = mx.nd.Deconvolution(**inputs, no_bias=no_bias, **DECONV)
        if "head" not in arrays:
            arrays["head"] = rng.uniform(-1, 1, result.shape).astype("float32")
        result.backward(mx.nd.array(arrays["head"]))
        arrays[f"out_{case}"] = result.asnumpy()
        arrays.update({f"grad_{name}_{case}": value.grad.asnumpy()
                       for name, value in inputs.items()})
    np.savez(out / "deconvolution.npz", **arrays)
    (out / "deconvolution.json").write_text(json.dumps(
        {"params": DECONV, "made_with": mx.__version__, "seed": SEED}, indent=2))


if __name__ == "__main__":
    export(Path(sys.argv[1]))
