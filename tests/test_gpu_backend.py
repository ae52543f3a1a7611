"""The PyTorch layer kernel ("torch-cuda", "torch-cpu") against the NumPy reference.

CPU-tensor tests run wherever torch is installed (they prove the logic); CUDA tests skip without a GPU.
"""
import numpy as np
import pytest

from service.engine import reference
from service.engine.backends import get_layer_kernel
from service.engine.layer import LayerWeights
from random_model import random_layer_weights

torch = pytest.importorskip("torch", reason="torch not installed: the GPU backend needs PyTorch")
from service.engine import gpu  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA GPU on this machine"))]


def _layer(e=16, d=24, ds=4, seed=0, skim_bias=0.0):
    w = random_layer_weights(np.random.default_rng(seed), e, d, ds, skim_bias=skim_bias)
    return LayerWeights.from_dict(w, "rnn.")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_skim_layer_matches_reference(device, threshold):
    w = _layer(seed=3)
    x = np.random.default_rng(4).standard_normal((40, 16)).astype(np.float32)
    ref = reference.run_layer(w, x, threshold)
    out = gpu.run_layer_on(w, x, threshold, device)
    np.testing.assert_array_equal(out.skim, ref.skim)
    np.testing.assert_allclose(out.p_skim, ref.p_skim, atol=1e-4)
    np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)
    if threshold == 1.0:
        assert not out.skim.any()
    if threshold == 0.0:
        assert out.skim.all() or out.skim.mean() > 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_skim_rate_is_mixed_and_exact(device):
    w = _layer(seed=5)
    x = np.random.default_rng(6).standard_normal((60, 16)).astype(np.float32)
    ref = reference.run_layer(w, x, 0.5)
    assert 0 < ref.skimmed < 60, "fixture should skim some but not all tokens"
    out = gpu.run_layer_on(w, x, 0.5, device)
    assert out.skimmed == ref.skimmed
    np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_dense_layer_uses_torch_lstm(device):
    w = _layer(ds=0, seed=7)
    x = np.random.default_rng(8).standard_normal((33, 16)).astype(np.float32)
    ref = reference.run_layer(w, x, 0.5)
    out = gpu.run_layer_on(w, x, 0.5, device)
    assert not out.skim.any()
    np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)
    assert isinstance(gpu._prepared(w, torch.device(device)).lstm, torch.nn.LSTM)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input(device):
    w = _layer(seed=9)
    out = gpu.run_layer_on(w, np.zeros((0, 16), np.float32), 0.5, device)
    assert out.hs.shape == (0, 24) and out.skim.shape == (0,)


def test_registered_kernels():
    name, k = get_layer_kernel("torch-cpu")
    assert name == "torch-cpu" and k is gpu.run_layer_cpu
    name, k = get_layer_kernel("torch-cuda")
    if torch.cuda.is_available():
        assert name == "torch-cuda"
    else:  # logged fallback, not a crash
        assert name == "reference"


def test_classifier_serves_on_torch_kernel(random_models_dir):
    from service.artifacts import load_artifact
    from service.families import build_model

    art = load_artifact(random_models_dir / "tiny-skim")
    ref = build_model(art, "reference")
    tm = build_model(art, "torch-cpu")
    text = "the film was not very good but the acting was great ."
    for thr in (0.2, 0.5, 0.9):
        a, b = ref.classify(text, thr), tm.classify(text, thr)
        assert a.label == b.label and a.cost.skimmed == b.cost.skimmed
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
