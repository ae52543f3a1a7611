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


# --- the no-sync skim path (gpu_skim.py / gpu_fused.py): every mode against the reference -------------------

from service.engine import gpu_skim  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
FUSED = pytest.mark.skipif(not torch.cuda.is_available() or gpu_skim.fused_module() is None,
                           reason="needs CUDA and Triton")
MODE_DEVICES = [("loop", "cpu"), pytest.param("loop", "cuda", marks=CUDA), pytest.param("graph", "cuda", marks=CUDA),
                pytest.param("fused", "cuda", marks=FUSED), pytest.param("sync", "cuda", marks=CUDA),
                pytest.param("cuda", "cuda", marks=CUDA)]


def _batch(e, lengths, seed):
    return [np.random.default_rng(seed + i).standard_normal((n, e)).astype(np.float32) for i, n in enumerate(lengths)]


@pytest.mark.parametrize("mode,device", MODE_DEVICES)
@pytest.mark.parametrize("dims", [(16, 24, 4), (50, 100, 10), (8, 20, 19)])
def test_batch_matches_reference_per_text(mode, device, dims):
    """A packed batch of texts of mixed lengths (one empty), each with its own threshold: identical skim
    decisions to the NumPy reference, hs and p_skim within 1e-4."""
    e, d, ds = dims
    w = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(sum(dims)), e, d, ds), "rnn.")
    xs = _batch(e, [40, 7, 0, 63, 1], seed=11)
    thresholds = [0.5, 0.3, 0.5, 0.7, 0.0]
    outs = gpu.run_layers_on(w, xs, thresholds, device, mode)
    assert len(outs) == len(xs)
    for x, thr, out in zip(xs, thresholds, outs):
        ref = reference.run_layer(w, x, thr)
        np.testing.assert_array_equal(out.skim, ref.skim)
        np.testing.assert_allclose(out.p_skim, ref.p_skim, atol=1e-4)
        np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)
    assert 0 < sum(o.skimmed for o in outs) < sum(len(x) for x in xs), "fixture should skim some tokens"


@pytest.mark.parametrize("mode,device", MODE_DEVICES)
def test_long_text_crosses_graph_chunks(mode, device):
    w = _layer(seed=13)
    x = np.random.default_rng(14).standard_normal((gpu_skim.MAX_BUCKET + 37, 16)).astype(np.float32)
    ref = reference.run_layer(w, x, 0.5)
    out = gpu.run_layer_on(w, x, 0.5, device, mode=mode)
    np.testing.assert_array_equal(out.skim, ref.skim)
    np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)


def test_dense_batch_is_packed():
    w = _layer(ds=0, seed=15)
    xs = _batch(16, [5, 0, 30], seed=16)
    for x, out in zip(xs, gpu.run_layers_on(w, xs, [0.5] * 3, "cpu")):
        np.testing.assert_allclose(out.hs, reference.run_layer(w, x, 0.5).hs, atol=1e-4)


@pytest.mark.parametrize("ds", [0, 4])
def test_reversed_views_are_accepted(ds):
    """A backward direction hands the kernel x[::-1]; with one token NumPy calls that view contiguous but its
    stride is negative, which torch refuses (the GPU server failed its start-up warm-up on this)."""
    w = _layer(ds=ds, seed=17)
    xs = [np.random.default_rng(18).standard_normal((n, 16)).astype(np.float32)[::-1] for n in (1, 6)]
    for x, out in zip(xs, gpu.run_layers_on(w, xs, [0.5] * 2, "cpu")):
        np.testing.assert_allclose(out.hs, reference.run_layer(w, np.ascontiguousarray(x), 0.5).hs, atol=1e-4)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown skim mode"):
        gpu.run_layer_on(_layer(seed=1), np.zeros((3, 16), np.float32), 0.5, "cpu", mode="nope")


def test_fused_kernel_interpreted_on_cpu():
    """The Triton kernel's logic on CPU tensors (TRITON_INTERPRET=1, in a subprocess: the flag is read when
    the kernel is defined). Skipped where Triton is not installed (CI); the CUDA cases run it compiled."""
    pytest.importorskip("triton")
    import os
    import subprocess
    import sys

    code = ("import numpy as np, sys; sys.path.insert(0, 'tests')\n"
            "from random_model import random_layer_weights\n"
            "from service.engine import gpu, reference\n"
            "from service.engine.layer import LayerWeights\n"
            "w = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(2), 16, 24, 4), 'rnn.')\n"
            "xs = [np.random.default_rng(i).standard_normal((n, 16)).astype(np.float32) for i, n in enumerate([30, 0, 9])]\n"
            "for x, t, o in zip(xs, [0.5, 0.5, 0.2], gpu.run_layers_on(w, xs, [0.5, 0.5, 0.2], 'cpu', 'fused')):\n"
            "    r = reference.run_layer(w, x, t)\n"
            "    assert (o.skim == r.skim).all() and np.allclose(o.hs, r.hs, atol=1e-4), 'mismatch'\n"
            "print('ok')\n")
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


# --- the register-resident CUDA kernel (gpu_cuda.py) ------------------------------------------------------

from service.cells import get_cell  # noqa: E402
from service.cells.gated import run_reference  # noqa: E402
from service.engine import gpu_cuda  # noqa: E402
from service.engine.budget import layer_budget  # noqa: E402


def test_cuda_kernel_fit_rule():
    """The served sizes fit one block with their weights in registers; wide layers go to Triton."""
    assert gpu_cuda.fits(100, 10) and gpu_cuda.threads_for(100, 10) == 448
    assert gpu_cuda.fits(24, 4) and gpu_cuda.fits(20, 19)
    assert not gpu_cuda.fits(128, 16) and not gpu_cuda.fits(400, 40)


@CUDA
@pytest.mark.parametrize("d,ds", [(100, 10), (24, 4), (20, 19), (30, 3)])
def test_cuda_kernel_compiles(d, ds):
    """NVRTC builds the kernel on a GPU machine (a failure would silently fall back to Triton)."""
    assert gpu_cuda.kernel(torch, d, ds) is not None, gpu_cuda._unavailable


@CUDA
def test_cuda_kernel_is_used_for_a_wide_layer_too():
    """A layer too wide for registers runs on the fallback and still matches the reference."""
    w = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(5), 16, 160, 16), "rnn.")
    x = np.random.default_rng(6).standard_normal((30, 16)).astype(np.float32)
    out = gpu.run_layer_on(w, x, 0.5, "cuda", mode="cuda")
    ref = reference.run_layer(w, x, 0.5)
    np.testing.assert_array_equal(out.skim, ref.skim)
    np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)


def _budget_case():
    cell = get_cell("skim-lstm")
    w = cell.weights(random_layer_weights(np.random.default_rng(21), 12, 20, 3, skim_bias=-1.0), "rnn.")
    xs = _batch(12, [60, 0, 95, 7, 230], seed=22)
    thr = [0.4, 0.5, 0.9, 1.0, 0.0]
    budgets = [layer_budget(cell, w, len(x), b) for x, b in zip(xs, [0.1, 0.3, None, 0.5, 0.2])]
    return w, xs, thr, budgets


@pytest.mark.parametrize("device", DEVICES)
def test_budgets_in_a_batch_match_the_reference(device, monkeypatch):
    """Each text of a batch keeps its own FLOP budget: on CUDA the kernel applies the rule on the device
    (the per-token host loop must not run); elsewhere the host loop does. Same decisions either way."""
    w, xs, thr, budgets = _budget_case()
    if device == "cuda":
        monkeypatch.setattr(gpu, "_run_sync", lambda *a, **k: pytest.fail("budget ran on the host loop"))
    outs = gpu.run_layers_on(w, xs, thr, device, None, budgets)
    for x, t, lb, out in zip(xs, thr, budgets, outs):
        ref = run_reference(w, x, t, lb)
        np.testing.assert_array_equal(out.skim, ref.skim)
        np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)
    assert any(lb is not None and o.skimmed > run_reference(w, x, t).skimmed
               for x, t, lb, o in zip(xs, thr, budgets, outs)), "fixture: some budget should bite"
