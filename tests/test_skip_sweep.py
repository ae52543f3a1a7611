"""benchmarks/skip_sweep.py's bookkeeping without a server: the baselines' filters, the accounting of a sweep
(empty texts, FLOPs saved, agreement, tokenizer round trip) and the verdict against issue 19's bar."""
from __future__ import annotations

from benchmarks import skip_sweep as S
from service.tokenizer import tokenize

MODELS = {"base": "b-lstm", "skip": "b-lstm-skip", "skim": None}


class FakeClient:
    """Answers like /classify: label 'pos' iff the text contains 'good'; flops 10 per token read; the skip
    model skips every 'the' whatever the threshold (so its rows differ from the base's)."""

    def __init__(self):
        self.calls = []

    def classify(self, model, texts, threshold):
        self.calls.append((model, len(texts), threshold))
        out = []
        for t in texts:
            toks = tokenize(t)
            assert toks, "an empty text must not be sent"
            skipped = sum(w == "the" for w in toks) if model.endswith("-skip") else 0
            out.append({"label": "pos" if "good" in toks else "neg", "tokens": len(toks), "skimmed": skipped,
                        "flops": 10 * (len(toks) - skipped) + 1 * len(toks) * model.endswith("-skip"),
                        "latency_ms": 0.001 * len(toks)})
        return out


def test_filters():
    cfg = {c["key"]: c for c in S.configs_for("sst2", MODELS, {0.3: 0.5, 0.4: 0.25, 0.5: 0.2, 0.7: 0.1}, seed=0)}
    toks = "the movie is not good , and the acting was".split()
    assert cfg["stop-words"]["keep"](toks, 0) == ["movie", "not", "good", "acting"]
    assert cfg["concat-2"]["keep"](toks, 0) == ["the", "movie", "acting", "was"]
    assert cfg["concat-10"]["keep"](toks, 0) == toks
    long = [f"w{i}" for i in range(4000)]
    kept = cfg["random-0.3"]["keep"](long, 7)
    assert kept == cfg["random-0.3"]["keep"](long, 7)  # seeded: the same draw every run
    assert 0.45 < 1 - len(kept) / len(long) < 0.55
    assert cfg["predictor-0.4"]["model"] == "b-lstm-skip" and cfg["predictor-0.4"]["threshold"] == 0.4
    assert "random-0.3" not in {c["key"] for c in S.configs_for("sst2", MODELS, None, 0)}


def test_sweep_accounting():
    texts = ["the good film", "the the", "a bad film .", "good"]
    labels = [1, 0, 0, 1]
    cfgs = [c for c in S.configs_for("sst2", MODELS, None, 0) if c["key"] in ("full", "predictor-0.5", "stop-words")]
    client = FakeClient()
    rows = {r["key"]: r for r in S.sweep(client, cfgs, texts, labels, ["neg", "pos"], bias_label=1, head=5)}
    full, pred, stop = rows["full"], rows["predictor-0.5"], rows["stop-words"]
    assert full["accuracy"] == 1.0 and full["flops_saved"] == 0 and full["agreement"] == 1.0
    # 10 tokens: the predictor skipped the 3 'the', paid 1 FLOP per token: 1 - (70 + 10) / 100 saved
    assert pred["skip_rate"] == 0.3 and abs(pred["flops_saved"] - 0.2) < 1e-9
    # stop words: "the the" is left empty, not sent; the head's bias (label 1 = pos) answers it, wrongly
    assert stop["empty"] == 1 and stop["accuracy"] == 0.75 and stop["agreement"] == 0.75
    assert abs(stop["flops_saved"] - (1 - (10 * 5 + 5) / 100)) < 1e-9  # 5 tokens read + one head
    assert stop["tokenizer_mismatches"] == 0
    assert all(n <= S.BATCH for _, n, _ in client.calls)


def test_verdict():
    def row(t, saved, change):
        return {"key": f"predictor-{t:g}", "threshold": t, "flops_saved": saved, "change_points": change}
    test = {"split": "test", "default_threshold": 0.8,
            "rows": [row(0.4, 0.26, -0.06), row(0.8, 0.06, 0.0), row(0.3, 0.35, -0.6)]}
    dev = {"rows": [row(0.4, 0.28, -2.3)]}
    v = S.verdict(test, dev)
    assert "default t=0.8" in v and "not met" in v
    assert "t=0.4 (26.0%, -0.06; dev 28.0%, -2.30)" in v and "t=0.3" not in v
    test["default_threshold"] = 0.4
    assert ": met." in S.verdict(test, None)
