"""ONNX Runtime backend vs the NumPy reference: outputs within 1e-4, identical skim decisions, same costs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from service.artifacts import load_artifact  # noqa: E402
from service.engine import onnx_backend  # noqa: E402
from service.engine.backends import DEFAULTS_FILE, get_layer_kernel  # noqa: E402
from service.engine.layer import LayerWeights  # noqa: E402
from service.families import build_model  # noqa: E402
from service.onnx_export import export_artifact  # noqa: E402
from random_model import make_random_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-4
THRESHOLDS = (0.0, 0.2, 0.5, 0.8, 1.0)
LENGTHS = (1, 2, 9, 60)
SIZES = {  # name: (e, d, d_small); d_small=0 is a dense LSTM
    "tiny-skim": (16, 24, 4), "tiny-lstm": (16, 24, 0),
    "skim-e50-d100": (50, 100, 10), "lstm-e50-d100": (50, 100, 0),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """name -> (reference model, onnx model); model.onnx written into the artifact and signed."""
    root = tmp_path_factory.mktemp("onnx_backend")
    out = {}
    for seed, (name, (e, d, ds)) in enumerate(SIZES.items()):
        make_random_classifier(root / name, e=e, d=d, d_small=ds, seed=10 + seed)
        export_artifact(root / name)
        art = load_artifact(root / name)
        out[name] = (build_model(art, "reference"), build_model(art, "onnx"))
    return out


def _compare(ref, onx, ids, thr):
    lr, outr = ref.forward(ids, thr)
    lo, outo = onx.forward(ids, thr)
    assert outo.hs.shape == outr.hs.shape and outo.hs.dtype == np.float32
    assert np.array_equal(outo.skim, outr.skim), f"decisions differ at T={len(ids)} thr={thr}"
    assert np.abs(lo - lr).max() <= TOL
    if len(ids):
        assert np.abs(outo.hs - outr.hs).max() <= TOL
        assert np.abs(outo.p_skim - outr.p_skim).max() <= TOL
    return outr


@pytest.mark.parametrize("name", list(SIZES))
def test_onnx_equals_reference(models, name):
    ref, onx = models[name]
    assert onx.kernel_name == "onnx" and onx.runner.source.endswith("model.onnx")
    rng = np.random.default_rng(0)
    skim_counts = set()
    for T in LENGTHS:
        ids = rng.integers(0, len(ref.artifact.vocab), T).astype(np.int64)
        for thr in THRESHOLDS:
            out = _compare(ref, onx, ids, thr)
            skim_counts.add(out.skimmed)
    if SIZES[name][2]:
        assert len(skim_counts) > 2, "the thresholds should give a mix of decisions"
    else:
        assert skim_counts == {0}


@pytest.mark.parametrize("name", ["tiny-skim", "tiny-lstm"])
def test_empty_sequence(models, name):
    ref, onx = models[name]
    logits, out = onx.forward(np.zeros(0, np.int64), 0.5)
    d = ref.layer.hidden_size
    assert out.hs.shape == (0, d) and out.skim.shape == (0,) and out.p_skim.shape == (0,)
    np.testing.assert_allclose(logits, ref.head_b, atol=TOL)  # zero hidden state -> the bias


@pytest.mark.parametrize("name", ["tiny-skim", "tiny-lstm"])
def test_cost_identical_whichever_backend(models, name):
    ref, onx = models[name]
    text = "this film was not very good , but the acting was great and the plot funny ."
    for thr in (0.0, 0.5, 1.0):
        a, b = ref.classify(text, thr), onx.classify(text, thr)
        for k in ("tokens", "skimmed", "flops", "flops_full", "per_layer"):
            ca, cb = a.cost.as_dict()[k], b.cost.as_dict()[k]
            if k == "per_layer":  # timings differ; counts may not
                ca, cb = ([{f: v for f, v in x.items() if f not in ("latency_ms", "per_token_us")} for x in c]
                          for c in (ca, cb))
            assert ca == cb, (k, ca, cb)
        assert a.label == b.label


def test_in_memory_export_when_artifact_has_no_onnx(tmp_path):
    make_random_classifier(tmp_path / "m", d_small=4, seed=5)
    art = load_artifact(tmp_path / "m")
    m = build_model(art, "onnx")
    assert m.runner.source == "exported in memory"
    ref = build_model(art, "reference")
    _compare(ref, m, np.array([3, 4, 5, 6], np.int64), 0.5)


def test_layer_kernel_interface():
    name, kernel = get_layer_kernel("onnx")
    assert name == "onnx"
    rng = np.random.default_rng(1)
    from random_model import random_layer_weights

    for ds in (0, 5):
        w = LayerWeights.from_dict(random_layer_weights(rng, 12, 20, ds), "rnn.")
        x = rng.standard_normal((17, 12)).astype(np.float32)
        _, ref = get_layer_kernel("reference")
        for thr in (0.3, 0.5, 1.0):
            a, b = ref(w, x, thr), kernel(w, x, thr)
            assert np.array_equal(a.skim, b.skim)
            assert np.abs(a.hs - b.hs).max() <= TOL


def test_session_options_explicit(monkeypatch):
    so = onnx_backend.session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    from service.engine import backends

    monkeypatch.setitem(backends.OPTIONS, "onnx_threads", 2)
    monkeypatch.setitem(backends.OPTIONS, "onnx_opt_level", "basic")
    so = onnx_backend.session_options()
    assert so.intra_op_num_threads == 2
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_defaults_agree_with_benchmark():
    """service/engine/defaults.json records the fastest backend per family of the committed benchmark."""
    results = json.loads((ROOT / "benchmarks" / "results" / "backends.json").read_text())
    defaults = json.loads(DEFAULTS_FILE.read_text())["kernel_by_family"]
    for fam in ("lstm", "skim-lstm"):
        rows = [r for r in results["rows"] if r["family"] == fam]
        means = {b: np.mean([r["us_per_token"] for r in rows if r["backend"] == b]) for b in {r["backend"] for r in rows}}
        assert defaults[fam] == min(means, key=means.get) == results["fastest"][fam]


def test_auto_uses_family_default(models, tmp_path):
    defaults = json.loads(DEFAULTS_FILE.read_text())["kernel_by_family"]
    make_random_classifier(tmp_path / "s", d_small=4, seed=6)
    m = build_model(load_artifact(tmp_path / "s"))  # kernel="auto"
    want = defaults["skim-lstm"]
    assert m.kernel_name in (want, "reference")  # 'fast' falls back to the reference where not built


@pytest.mark.parametrize("name", ["sst2-skim", "sst2-lstm", "imdb-skim"])
def test_trained_models(name, tmp_path):
    folder = ROOT / "models" / name
    if not (folder / "manifest.json").is_file():
        pytest.skip(f"{folder} not present")
    shutil.copytree(folder, tmp_path / name)
    if "model.onnx" not in load_artifact(tmp_path / name).manifest["files"]:
        export_artifact(tmp_path / name)
    art = load_artifact(tmp_path / name)
    ref, onx = build_model(art, "reference"), build_model(art, "onnx")
    texts = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boring and the acting is awful",
             "it 's not a bad film , but it never quite finds its footing ."]
    for text in texts:
        ids = ref.to_ids(ref.tokenize(text))
        for thr in (0.3, 0.5, 1.0):
            _compare(ref, onx, ids, thr)
    _compare(ref, onx, ids[:1], 0.5)
