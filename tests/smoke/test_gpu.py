"""GPU checks: run only on a host with a GPU (docker run --gpus all); otherwise skipped
with the reason, never reported as passed."""
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def gpu(expect, mx):
    if not expect["gpu"]:
        pytest.skip("no GPU")
    return mx


def test_cuda_features_on(mx, expect):
    features = mx.runtime.Features()
    assert features.is_enabled("CUDA")


def test_a_gpu_is_visible(gpu):
    assert gpu.context.num_gpus() >= 1


@pytest.mark.parametrize("case", ["single", "batch"])
def test_model_on_gpu_matches_the_cpu_reference(gpu, fixtures, expect, case):
    meta = json.loads((fixtures / "model.json").read_text())
    prefix = str(fixtures / meta["prefix"])
    ref = np.load(str(fixtures / "reference.npz"))
    net = gpu.gluon.SymbolBlock.imports(prefix + "-symbol.json", [meta["input"]],
                                        "{}-{:04d}.params".format(prefix, meta["epoch"]),
                                        ctx=gpu.gpu(0))
    out = net(gpu.nd.array(ref[case], ctx=gpu.gpu(0))).asnumpy()
    np.testing.assert_allclose(out, ref["out_" + case], rtol=1e-4, atol=1e-5)
