"""The NumPy engine computes what the trained PyTorch model computes, on the shipped models and real sentences."""
import json
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402
from training.torch_models import from_artifact  # noqa: E402

from conftest import MODELS_DIR, real_sentences  # noqa: E402

# The classifiers of training/torch_models.py (QA readers: tests/test_qa_equivalence.py; skip predictors:
# tests/test_skip_predictor.py and tests/test_skip_kernel.py).
MODELS = [p.parent.name for p in sorted(MODELS_DIR.glob("*/manifest.json"))
          if (lambda m: m["task"] == "classify" and m["family"] in ("lstm", "skim-lstm"))(json.loads(p.read_text()))]
THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 1.0]


@pytest.mark.parametrize("name", MODELS)
def test_numpy_engine_matches_pytorch(name):
    art = load_artifact(MODELS_DIR / name)
    served = build_model(art, kernel="reference")
    tmodel = from_artifact(art)
    sentences = real_sentences(art.manifest["training"]["dataset"], 12)
    for text in sentences:
        ids = served.to_ids(served.tokenize(text))
        t_ids = torch.tensor(ids)[None]
        for thr in THRESHOLDS if served.layer.skims else [0.5]:
            logits, out = served.forward(ids, thr)
            with torch.no_grad():
                t_logits, aux = tmodel(t_ids, torch.tensor([len(ids)]), threshold=thr)
            assert np.max(np.abs(logits - t_logits[0].numpy())) <= 1e-4, (name, thr, text)
            if served.layer.skims:
                assert np.array_equal(out.skim, aux[1][0].numpy().astype(bool)), (name, thr, text)


@pytest.mark.parametrize("name", [m for m in MODELS if "skim" in m])
def test_threshold_one_is_the_plain_lstm_path(name):
    """threshold=1.0 never skims: the hidden states equal a plain LSTM run of the big cell."""
    art = load_artifact(MODELS_DIR / name)
    served = build_model(art, kernel="reference")
    from dataclasses import replace

    from service.engine.reference import run_layer
    plain = replace(served.layer, Ws_ih=None, Ws_hh=None, bs=None, Wd=None, bd=None)
    for text in real_sentences(art.manifest["training"]["dataset"], 5):
        x = served.embed(served.to_ids(served.tokenize(text)))
        a, b = run_layer(served.layer, x, 1.0), run_layer(plain, x, 1.0)
        assert a.skimmed == 0
        assert np.array_equal(a.hs, b.hs)


@pytest.mark.parametrize("name", [m for m in MODELS if "skim" in m])
def test_skim_rate_non_increasing_in_threshold(name):
    art = load_artifact(MODELS_DIR / name)
    served = build_model(art, kernel="reference")
    texts = real_sentences(art.manifest["training"]["dataset"], 8)
    rates = []
    for thr in np.linspace(0, 1, 11):
        rates.append(sum(served.classify(t, thr).cost.skimmed for t in texts))
    assert all(a >= b for a, b in zip(rates, rates[1:])), rates
    assert rates[0] > rates[-1] == 0
