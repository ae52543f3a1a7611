"""The FLOP budget (service/engine/budget.py): the same decisions and states on the reference, the C kernel
and torch-cpu, and the guarantee flops <= max(budget, floor) * flops_full on random models and inputs."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same_layer_output
from random_model import make_random_classifier, make_random_reader, random_layer_weights

from service.cells import get_cell
from service.cells.gated import run_reference
from service.engine.budget import LayerBudget, check_budget, floor_share, layer_budget

fast = pytest.importorskip("service.engine.fast")
BUDGETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.9)


def _layer(seed, e, d, ds, skim_bias):
    """ds = 0: a skip layer (a decision layer, no small cell)."""
    rng = np.random.default_rng(seed)
    raw = random_layer_weights(rng, e, d, max(ds, 1), skim_bias=skim_bias)
    if ds == 0:
        raw = {k: v for k, v in raw.items() if not k.startswith("rnn.Ws_") and k != "rnn.bs"}
    return get_cell("skip-lstm" if ds == 0 else "skim-lstm").weights(raw, "rnn."), rng


@pytest.mark.parametrize("ds", [0, 3])
@pytest.mark.parametrize("seed", range(4))
def test_reference_and_fast_agree_and_keep_the_cap(seed, ds):
    cell = get_cell("skip-lstm" if ds == 0 else "skim-lstm")
    w, rng = _layer(seed, 12, 20, ds, skim_bias=-1.0)  # reads more often than not: the budget has work to do
    for T in (1, 7, 95, 97, 230):
        x = rng.standard_normal((T, 12)).astype(np.float32)
        for thr in (0.0, 0.4, 0.9, 1.0):
            for b in BUDGETS:
                lb = layer_budget(cell, w, T, b)
                ref = run_reference(w, x, thr, lb)
                out = fast.run_layer(w, x, thr, lb)
                assert_same_layer_output(ref, out, f"T={T} thr={thr} budget={b}")
                free = run_reference(w, x, thr)
                assert not np.any(free.skim & ~ref.skim), "a budget never turns a skim into a read"
                cost = cell.cost(w, T, ref.skimmed)
                assert cost.flops <= max(b * cost.flops_full, T * lb.skim), (T, thr, b)
                if b >= floor_share(cell, w):
                    assert cost.flops <= b * cost.flops_full


def test_the_rule_reads_greedily_then_skims():
    lb = LayerBudget(allowance=100, read=30, skim=5)
    T, spent, decisions = 6, 0, []
    for t in range(T):
        read = lb.allows_read(spent, t, T)
        decisions.append(read)
        spent += lb.step(not read)
    # 30 + 5*5 = 55 <= 100; 60 + 4*5 = 80; 90 + 3*5 = 105 > 100 -> skims from here on
    assert decisions == [True, True, False, False, False, False] and spent <= 100


def test_budget_one_or_none_caps_nothing():
    cell = get_cell("skim-lstm")
    w, _ = _layer(0, 8, 10, 2, 0.0)
    assert layer_budget(cell, w, 10, None) is None and layer_budget(cell, w, 10, 1.0) is None
    assert layer_budget(get_cell("lstm"), w, 10, 0.5) is None


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, float("nan"), float("inf")])
def test_check_budget_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        check_budget(bad)


def test_torch_cpu_enforces_the_same_rule():
    pytest.importorskip("torch")
    from service.engine import gpu

    cell = get_cell("skim-lstm")
    w, rng = _layer(3, 10, 16, 4, -1.0)
    x = rng.standard_normal((60, 10)).astype(np.float32)
    for b in (0.1, 0.3, 0.6):
        lb = layer_budget(cell, w, 60, b)
        assert_same_layer_output(run_reference(w, x, 0.5, lb), gpu.run_layer_cpu(w, x, 0.5, lb), f"b={b}", 1e-4)


@pytest.mark.parametrize("kernel", ["reference", "fast", "onnx"])
def test_served_classifier_under_budget_same_on_every_backend(tmp_path, kernel):
    from service.artifacts import load_artifact
    from service.families import build_model

    make_random_classifier(tmp_path / "m", e=12, d=20, d_small=3, seed=5)
    art = load_artifact(tmp_path / "m")
    ref = build_model(art, "reference")
    model = build_model(art, kernel)
    rng = np.random.default_rng(0)
    words = art.vocab[2:]
    for b in (0.1, 0.3, 0.5):
        text = " ".join(rng.choice(words, 150))
        r0, r1 = ref.classify(text, 0.0 if b == 0.5 else 0.3, b), model.classify(text, 0.0 if b == 0.5 else 0.3, b)
        assert np.array_equal(r0.layer.skim, r1.layer.skim)
        assert r0.cost.flops == r1.cost.flops
        assert np.allclose(r0.logits, r1.logits, atol=1e-4)
        recurrent = r0.cost.per_layer[0]
        assert recurrent["flops"] <= max(b, ref.stack.floor_share()) * recurrent["flops_full"]


def test_reader_caps_every_layer(tmp_path):
    from service.artifacts import load_artifact
    from service.families import build_model

    make_random_reader(tmp_path / "qa", e=8, d=10, d_small=3)
    model = build_model(load_artifact(tmp_path / "qa"), "fast")
    ref = build_model(load_artifact(tmp_path / "qa"), "reference")
    ctx = " ".join(["the film was good and the plot was bad"] * 12)
    for b in (0.2, 0.5):
        a = model.answer_tokens(ctx, model.tokenize(ctx), model.tokenize("was the plot good"), 1.0, budget=b)
        r = ref.answer_tokens(ctx, ref.tokenize(ctx), ref.tokenize("was the plot good"), 1.0, budget=b)
        assert a.cost.flops == r.cost.flops
        for pl in a.cost.per_layer:
            assert pl["flops"] <= max(b, model.stack.floor_share()) * pl["flops_full"], pl
        assert [pl["skimmed"] for pl in a.cost.per_layer] == [pl["skimmed"] for pl in r.cost.per_layer]
