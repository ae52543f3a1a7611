"""Compiled 'fast' kernel vs the NumPy reference: identical skim decisions, hs/logits within 1e-5.

Random weights (several e, d, d'; lengths 0, 1, 7, 300; thresholds 0 .. 1; both read forms; the AVX2 and
the portable path) and the shipped trained models on real test text. The whole module skips, with the
reason, when the C extension was not built (`pip install -e .` builds it); the fallback test below runs
regardless.
"""
import gc
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.artifacts import load_artifact
from service.engine import reference
from service.engine.backends import get_layer_kernel
from service.engine.layer import LayerWeights
from service.families.classifier import Classifier
from random_model import random_layer_weights

from conftest import assert_same_layer_output, real_sentences  # noqa: E402

try:
    from service.engine import fast
    from service.engine import _skimkernel
except ImportError as exc:  # the extension is optional: the engine falls back to the reference
    fast = None
    _SKIP_REASON = f"compiled kernel not built ({exc}); run `pip install -e .`"
else:
    _SKIP_REASON = ""

needs_ext = pytest.mark.skipif(fast is None, reason=_SKIP_REASON or "built")

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-5
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 1.0)
LENGTHS = (0, 1, 7, 300)
SIZES = [  # (e, d, d'): multiples of 8, odd sizes (gate tails), d' = 1, the benchmark's shapes
    (16, 24, 4), (30, 37, 5), (50, 100, 10), (100, 200, 10), (7, 9, 1), (100, 100, 20),
]


def _layer(rng, e, d, ds, skim_bias=0.0) -> LayerWeights:
    return LayerWeights.from_dict(random_layer_weights(rng, e, d, ds, skim_bias=skim_bias), "rnn.")


def _same(ref, out, where=""):
    assert_same_layer_output(ref, out, where, TOL)


@pytest.fixture
def scalar_path():
    """Run a test on the portable C path, then restore the CPU's choice."""
    was = _skimkernel.has_avx2()
    _skimkernel.set_avx2(False)
    yield
    _skimkernel.set_avx2(was)


# --- random weights -----------------------------------------------------------------------------
@needs_ext
@pytest.mark.parametrize("e,d,ds", SIZES)
def test_random_weights_equal_reference(e, d, ds):
    rng = np.random.default_rng(e * 1000 + d)
    w = _layer(rng, e, d, ds)
    counts = set()
    for T in LENGTHS:
        x = rng.standard_normal((T, e)).astype(np.float32)
        for thr in THRESHOLDS:
            ref = reference.run_layer(w, x, thr)
            _same(ref, fast.run_layer(w, x, thr), f"e={e} d={d} d'={ds} T={T} thr={thr}")
            if T == 300:
                counts.add(ref.skimmed)
    assert len(counts) >= 4, f"thresholds should give a mix of decisions, got skim counts {counts}"


@needs_ext
@pytest.mark.parametrize("pre_reads", [0, 1, 3, 7])
def test_both_read_forms(monkeypatch, pre_reads):
    """pre_reads 0/1: every read uses a precomputed input projection; 7 (> window): none does."""
    monkeypatch.setattr(fast, "PRE_READS", pre_reads)
    rng = np.random.default_rng(3)
    for e, d, ds in [(50, 100, 10), (30, 37, 5)]:
        w = _layer(rng, e, d, ds)
        for T in (1, 5, 6, 7, 13, 300):
            x = rng.standard_normal((T, e)).astype(np.float32)
            for thr in (0.2, 0.5, 0.8):
                _same(reference.run_layer(w, x, thr), fast.run_layer(w, x, thr), f"pre={pre_reads} T={T}")


@needs_ext
def test_portable_path_equals_reference(scalar_path):
    assert not _skimkernel.has_avx2()
    rng = np.random.default_rng(4)
    for e, d, ds in [(16, 24, 4), (30, 37, 5)]:
        w = _layer(rng, e, d, ds)
        dense = LayerWeights(w.W_ih, w.W_hh, w.b)
        for T in (0, 1, 7, 120):
            x = rng.standard_normal((T, e)).astype(np.float32)
            for thr in THRESHOLDS:
                _same(reference.run_layer(w, x, thr), fast.run_layer(w, x, thr), f"scalar T={T} thr={thr}")
            _same(reference.run_layer(dense, x, 0.5), fast.run_layer(dense, x, 0.5), "scalar dense")


@needs_ext
@pytest.mark.parametrize("e,d", [(16, 24), (30, 37), (50, 100), (100, 200)])
def test_plain_lstm_layers(e, d):
    rng = np.random.default_rng(5)
    w = LayerWeights.from_dict(random_layer_weights(rng, e, d, 0), "rnn.")
    for T in LENGTHS:
        x = rng.standard_normal((T, e)).astype(np.float32)
        out = fast.run_layer(w, x, 0.5)
        _same(reference.run_layer(w, x, 0.5), out, f"lstm T={T}")
        assert not out.skim.any() and not out.p_skim.any()


def _lstm_float64(w: LayerWeights, x: np.ndarray) -> np.ndarray:
    d = w.hidden_size
    Wi, Wh, b = (getattr(w, k).astype(np.float64) for k in ("W_ih", "W_hh", "b"))
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    h, c, hs = np.zeros(d), np.zeros(d), []
    for xt in x.astype(np.float64):
        g = Wi @ xt + Wh @ h + b
        c = sig(g[d:2 * d]) * c + sig(g[:d]) * np.tanh(g[2 * d:3 * d])
        h = sig(g[3 * d:]) * np.tanh(c)
        hs.append(h)
    return np.array(hs)


@needs_ext
def test_long_sequences_as_accurate_as_the_reference():
    """2000 tokens with forget gates near 1 (the cell state integrates every rounding error): the kernel's
    distance to float64 stays within that of the float32 reference itself (a biased reciprocal estimate in
    the gates failed this)."""
    for seed in range(2):
        rng = np.random.default_rng(seed)
        wd = random_layer_weights(rng, 50, 100, 10)
        wd["rnn.b"][100:200] += 3.0
        w = LayerWeights.from_dict(wd, "rnn.")
        x = rng.standard_normal((2000, 50)).astype(np.float32)
        exact = _lstm_float64(w, x)
        err_ref = np.abs(reference.run_layer(w, x, 1.0).hs - exact).max()
        err_fast = np.abs(fast.run_layer(w, x, 1.0).hs - exact).max()
        assert err_fast <= 2 * err_ref + 2e-6, (seed, err_fast, err_ref)


@needs_ext
def test_threshold_edge_cases():
    """Negative (skim everything), > 1 and NaN (skim nothing: the dense form), near-1 float32 rounding."""
    rng = np.random.default_rng(6)
    w = _layer(rng, 16, 24, 4, skim_bias=3.0)  # p_skim near 1 on many tokens
    x = rng.standard_normal((50, 16)).astype(np.float32)
    for thr in (-1.0, -0.0, 1.5, float("nan"), 1.0 - 1e-9, np.float32(0.9999999), 0.999):
        _same(reference.run_layer(w, x, thr), fast.run_layer(w, x, thr), f"thr={thr}")
    assert fast.run_layer(w, x, -1.0).skim.all()
    assert not fast.run_layer(w, x, float("nan")).skim.any()
    assert fast.no_skim_possible(1.0 - 1e-9) and not fast.no_skim_possible(0.999)


@needs_ext
def test_forced_decisions():
    rng = np.random.default_rng(7)
    w = _layer(rng, 30, 37, 5)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    ref = reference.run_layer(w, x, 0.5)
    forced = fast.run_layer_forced(w, x, ref.skim)  # the reference's own decisions give its outputs
    _same(ref, forced, "forced = reference decisions")
    for rate in (0.0, 0.5, 1.0):
        mask = rng.random(40) < rate
        out = fast.run_layer_forced(w, x, mask)
        assert np.array_equal(out.skim, mask)
    with pytest.raises(ValueError):
        fast.run_layer_forced(w, x, np.zeros(39, bool))
    with pytest.raises(ValueError):
        fast.run_layer_forced(LayerWeights(w.W_ih, w.W_hh, w.b), x, np.zeros(40, bool))


def _forced_reference(w, x, mask):
    """service/cells/gated.run_reference with the decisions given (p_skim computed as it computes it)."""
    from service.cells.gated import lstm_step, sigmoid

    d, ds = w.hidden_size, w.small_size
    h, c = np.zeros(d, np.float32), np.zeros(d, np.float32)
    hs, p = np.zeros((len(x), d), np.float32), np.zeros(len(x), np.float32)
    for t, xt in enumerate(x):
        z = w.Wd @ np.concatenate([xt, h]) + w.bd
        p[t] = sigmoid(z[1] - z[0])
        if mask[t]:
            h_s, c_s = lstm_step(w.Ws_ih, w.Ws_hh, w.bs, xt, h, c[:ds])
            h, c = np.concatenate([h_s, h[ds:]]), np.concatenate([c_s, c[ds:]])
        else:
            h, c = lstm_step(w.W_ih, w.W_hh, w.b, xt, h, c)
        hs[t] = h
    return hs, p


@needs_ext
@pytest.mark.parametrize("pattern", ["long runs", "read every 7th", "first only", "alternate", "skim first"])
def test_skim_runs_reuse_only_what_a_skim_leaves(pattern):
    """Along a run of skims the kernel keeps the decision's and the small cell's parts over h[d':] (a skim
    step does not change them) and recomputes them after a read: long runs, isolated reads, a read at the
    very start or never after it, alternation; states and p_skim as the reference's with the same decisions."""
    rng = np.random.default_rng(11)
    T = 200
    mask = {"long runs": (np.arange(T) // 25) % 2 == 1, "read every 7th": np.arange(T) % 7 != 0,
            "first only": np.arange(T) > 0, "alternate": np.arange(T) % 2 == 1,
            "skim first": np.arange(T) < 150}[pattern]
    for e, d, ds in [(50, 100, 10), (30, 37, 5), (16, 24, 1)]:
        w = _layer(rng, e, d, ds)
        x = rng.standard_normal((T, e)).astype(np.float32)
        hs, p = _forced_reference(w, x, mask)
        out = fast.run_layer_forced(w, x, mask)
        np.testing.assert_allclose(out.hs, hs, atol=2e-5, err_msg=f"{pattern} d={d} d'={ds}")
        np.testing.assert_allclose(out.p_skim, p, atol=2e-5, err_msg=f"{pattern} d={d} d'={ds}")


@needs_ext
def test_last_state_only_is_the_last_row():
    """run_layer(last_only=True): hs is the last state of the full run, bit for bit, in every form (dense,
    skim loop, budget, T = 1), and the decisions and p_skim are the same."""
    rng = np.random.default_rng(12)
    w = _layer(rng, 30, 37, 5)
    for T in (1, 2, 7, 150):
        x = rng.standard_normal((T, 30)).astype(np.float32)
        for thr in (0.0, 0.5, 1.0):
            full, last = fast.run_layer(w, x, thr), fast.run_layer(w, x, thr, None, True)
            assert last.hs.shape == (1, 37) and np.array_equal(last.hs[0], full.hs[-1]), (T, thr)
            assert np.array_equal(last.skim, full.skim) and np.array_equal(last.p_skim, full.p_skim)
    dense = LayerWeights(w.W_ih, w.W_hh, w.b)
    x = rng.standard_normal((20, 30)).astype(np.float32)
    assert np.array_equal(fast.run_layer(dense, x, 0.5, None, True).hs[0], fast.run_layer(dense, x, 0.5).hs[-1])


@needs_ext
def test_input_checks_and_layouts():
    rng = np.random.default_rng(8)
    w = _layer(rng, 16, 24, 4)
    x64 = rng.standard_normal((60, 16))                       # float64, converted
    xt = np.asfortranarray(x64.astype(np.float32))           # not C-contiguous
    ref = reference.run_layer(w, x64.astype(np.float32), 0.5)
    _same(ref, fast.run_layer(w, x64, 0.5), "float64 input")
    _same(ref, fast.run_layer(w, xt, 0.5), "Fortran-order input")
    with pytest.raises(ValueError):
        fast.run_layer(w, np.zeros((3, 15), np.float32), 0.5)
    with pytest.raises(ValueError):
        fast.run_layer(w, np.zeros(16, np.float32), 0.5)


@needs_ext
def test_packing_cached_per_object_and_released():
    rng = np.random.default_rng(9)
    w = _layer(rng, 16, 24, 4)
    p1 = fast.packed(w)
    assert fast.packed(w) is p1
    twin = LayerWeights(*(getattr(w, f) for f in ("W_ih", "W_hh", "b", "Ws_ih", "Ws_hh", "bs", "Wd", "bd")))
    assert fast.packed(twin) is not p1  # keyed on the object, not on equality
    key = id(w)
    del w, p1
    gc.collect()
    assert key not in fast._cache


@needs_ext
def test_threads_release_the_gil_and_agree():
    rng = np.random.default_rng(10)
    w = _layer(rng, 50, 100, 10)
    xs = [rng.standard_normal((200, 50)).astype(np.float32) for _ in range(8)]
    want = [fast.run_layer(w, x, 0.5) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: fast.run_layer(w, x, 0.5), xs))
    for a, b in zip(want, got):
        assert np.array_equal(a.skim, b.skim) and np.array_equal(a.hs, b.hs)


# --- the engine: loading, warm-up, fallback -----------------------------------------------------
@needs_ext
def test_classifier_prepares_at_load(random_models_dir):
    art = load_artifact(random_models_dir / "tiny-skim")
    m = Classifier(art, "fast")
    assert m.kernel_name == "fast"
    assert id(m.layer) in fast._cache  # packed (and warmed up) at construction, not on the first request
    ref = Classifier(art, "reference")
    for text in ("", "good", "this film was not very good , but the acting was great ."):
        for thr in (0.0, 0.5, 1.0):
            a, b = ref.classify(text, thr), m.classify(text, thr)
            assert np.array_equal(a.layer.skim, b.layer.skim)
            assert np.abs(a.logits - b.logits).max() <= TOL
            assert a.cost.flops == b.cost.flops and a.label == b.label


@pytest.mark.parametrize("name", ["tiny-skim", "tiny-lstm"])
def test_classifier_lean_forward_equals_the_stack(random_models_dir, name):
    """forward_all's direct call of the kernel (one forward layer on 'fast') gives exactly what the stack
    gives: the same decisions, last state, logits, probabilities and cost (it keeps the last state only);
    budgets < 1 keep the stack."""
    m = Classifier(load_artifact(random_models_dir / name), "fast")
    assert m._lean is not None
    texts = ["good", "this film was not very good , but the acting was great .", "the plot " * 40]
    for text in texts:
        for thr in (0.0, 0.3, 0.5, 1.0):
            for budget in (None, 1.0):
                lean = m.classify(text, thr, budget)
                lean_layer, m._lean = m._lean, None
                try:
                    stack = m.classify(text, thr, budget)
                finally:
                    m._lean = lean_layer
                assert np.array_equal(lean.layer.skim, stack.layer.skim)
                assert lean.layer.hs.shape == (1, stack.layer.hs.shape[1])  # the last state only
                assert np.array_equal(lean.layer.hs[-1], stack.layer.hs[-1])
                assert np.array_equal(lean.logits, stack.logits) and np.array_equal(lean.layer.p_skim, stack.layer.p_skim)
                assert lean.probabilities == stack.probabilities and lean.label == stack.label
                a, b = lean.cost, stack.cost
                assert (a.tokens, a.skimmed, a.flops, a.flops_full) == (b.tokens, b.skimmed, b.flops, b.flops_full)
                assert [{k: v for k, v in d.items() if k not in ("latency_ms", "per_token_us")} for d in a.per_layer] \
                    == [{k: v for k, v in d.items() if k not in ("latency_ms", "per_token_us")} for d in b.per_layer]
    assert Classifier(load_artifact(random_models_dir / name), "reference")._lean is None


def test_fallback_to_reference_with_logged_reason(monkeypatch, caplog, random_models_dir):
    """Without the extension, kernel 'fast' serves through the NumPy reference and says why."""
    monkeypatch.delitem(sys.modules, "service.engine.fast", raising=False)
    monkeypatch.setitem(sys.modules, "service.engine._skimkernel", None)  # import -> ImportError
    import service.engine as engine_pkg

    monkeypatch.delattr(engine_pkg, "fast", raising=False)
    monkeypatch.delattr(engine_pkg, "_skimkernel", raising=False)
    with caplog.at_level(logging.WARNING, logger="service.engine.backends"):
        name, kernel = get_layer_kernel("fast")
    assert name == "reference" and kernel is reference.run_layer
    assert any("'fast' unavailable" in r.getMessage() and "_skimkernel" in r.getMessage() for r in caplog.records)
    m = Classifier(load_artifact(random_models_dir / "tiny-skim"), "fast")
    assert m.kernel_name == "reference"
    assert m.classify("a good film", 0.5).label in m.labels


# --- trained models on real text ----------------------------------------------------------------
REAL = {"sst2-skim": "sst2", "imdb-skim": "imdb", "imdb-lstm": "imdb", "sst2-lstm": "sst2"}


@needs_ext
@pytest.mark.parametrize("name", list(REAL))
def test_trained_models_on_real_text(name):
    folder = ROOT / "models" / name
    if not (folder / "manifest.json").is_file():
        pytest.skip(f"{folder} not present")
    n = 12 if REAL[name] == "imdb" else 40
    texts = real_sentences(REAL[name], n)
    art = load_artifact(folder)
    ref, fst = Classifier(art, "reference"), Classifier(art, "fast")
    assert fst.kernel_name == "fast"
    thresholds = sorted({0.3, 0.5, fst.default_threshold, 0.7, 1.0})
    skimmed, tokens = 0, 0
    for text in texts:
        ids = ref.to_ids(ref.tokenize(text))
        for ids_ in (ids, ids[:1], ids[:0]):
            for thr in thresholds:
                lr, outr = ref.forward(ids_, thr)
                lf, outf = fst.forward(ids_, thr)
                _same(outr, outf, f"{name} T={len(ids_)} thr={thr}")
                assert np.abs(lf - lr).max() <= TOL
                if ids_ is ids and thr == fst.default_threshold:
                    skimmed, tokens = skimmed + outr.skimmed, tokens + len(ids)
    if art.manifest["family"] == "skim-lstm":
        assert 0 < skimmed < tokens, "the default threshold should skim some tokens, not all"
