"""training/skip_predictor.py end to end on a tiny random dense LSTM and a small synthetic SST-2-format dataset:
the frozen base's files are byte-identical afterwards, the artifact holds only the predictor and names the base
by checksum, it loads, and at threshold 1.0 its outputs equal the base model's exactly. Also the standalone
evaluation helpers and the baselines' filters."""
import json
import shutil

import numpy as np
import pytest

from random_model import DEFAULT_WORDS, make_random_classifier
from service.artifacts import load_artifact, sha256_file
from service.engine import reference
from service.engine.layer import LayerWeights

from training import skip_baselines, skip_predictor as SP


def _synthetic_sst2(root, rng, n_train=120, n_dev=40):
    words = [w for w in DEFAULT_WORDS if w not in ("'", "n't", "'s")]
    (root / "sst2").mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):
        lines = []
        for _ in range(n):
            toks = rng.choice(words, size=int(rng.integers(1, 14)))
            label = int("good" in toks or "great" in toks or "funny" in toks)
            lines.append(f"{label} {' '.join(toks)}")
        (root / "sst2" / f"{split}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("skip")
    models = root / "models"
    make_random_classifier(models / "tiny-lstm", e=16, d=24, d_small=0, seed=3, training={"dataset": "sst2"})
    _synthetic_sst2(root / "data", np.random.default_rng(0))
    before = {f.name: f.read_bytes() for f in (models / "tiny-lstm").iterdir()}
    manifest = SP.main(["models/tiny-lstm".replace("models", str(models)), "--out", str(models / "tiny-lstm-skip"),
                        "--data-dir", str(root / "data"), "--rounds", "2", "--refine-epochs", "1",
                        "--refine-penalties", "0.05"])
    return models, before, manifest


def test_base_untouched(skip_run):
    models, before, _ = skip_run
    after = {f.name: f.read_bytes() for f in (models / "tiny-lstm").iterdir()}
    assert after == before


def test_artifact_holds_only_the_predictor(skip_run):
    models, _, manifest = skip_run
    folder = models / "tiny-lstm-skip"
    with np.load(folder / "weights.npz") as npz:
        assert sorted(npz.files) == ["rnn.Wd", "rnn.bd"]
        assert npz["rnn.Wd"].shape == (2, 16 + 24) and npz["rnn.bd"].shape == (2,)
        assert npz["rnn.Wd"].dtype == np.float32
    m = json.loads((folder / "manifest.json").read_text())
    assert m["family"] == "skip-lstm" and m["task"] == "classify"
    assert m["sizes"]["small_hidden"] == 0 and m["sizes"]["embed"] == 16 and m["sizes"]["hidden"] == 24
    base = m["base"]
    assert base["name"] == "tiny-lstm" and base["version"] == "0-random"
    assert base["files"]["weights.npz"] == sha256_file(models / "tiny-lstm" / "weights.npz")
    assert base["files"]["vocab.txt"] == sha256_file(models / "tiny-lstm" / "vocab.txt")
    assert (folder / "vocab.txt").read_bytes() == (models / "tiny-lstm" / "vocab.txt").read_bytes()
    t = m["training"]
    assert 0.0 <= m["default_threshold"] <= 1.0
    assert {"l2", "cosine"} <= set(t["state_change"]) and "q50" in t["state_change"]["l2"]
    assert t["labelling"]["tau"] >= 0 and t["dev_sweep"] and "base_dev_accuracy" in t
    assert manifest["files"] == m["files"]


def test_artifact_loads_and_threshold_one_is_the_base(skip_run):
    models, _, _ = skip_run
    art = load_artifact(models / "tiny-lstm-skip")          # merges the base's weights in, by checksum
    base_art = load_artifact(models / "tiny-lstm")
    for k in ("embedding", "rnn.W_ih", "rnn.W_hh", "rnn.b", "head.W", "head.b"):
        assert np.array_equal(art.weights[k], base_art.weights[k])
    base = SP.load_base(models / "tiny-lstm")
    w = SP.skip_layer(base, art.weights["rnn.Wd"], art.weights["rnn.bd"])
    rng = np.random.default_rng(1)
    for kernel in (SP._kernel(), reference):
        for T in (1, 5, 30):
            ids = rng.integers(0, len(base.vocab), T)
            z_skip, skipped, _ = SP.run_one(base, w, ids, 1.0, kernel)
            out = kernel.run_layer(base.layer, SP.embed(base, ids), 1.0)
            assert skipped == 0
            assert np.array_equal(z_skip, base.head_W @ out.hs[-1] + base.head_b)


def test_served_model_at_threshold_one(skip_run):
    """Through the serving side (the family the server builds)."""
    models, _, _ = skip_run
    from service.families import build_model
    model = build_model(load_artifact(models / "tiny-lstm-skip"), "fast")
    base = build_model(load_artifact(models / "tiny-lstm"), "fast")
    for text in ("a good film .", "the plot was boring but funny", "not very great , awful acting !"):
        a, b = model.classify(text, 1.0), base.classify(text, 1.0)
        assert np.array_equal(a.logits, b.logits) and a.cost.skimmed == 0


SHIPPED = [("sst2-lstm-skip", "sst2-lstm"), ("imdb-lstm-skip", "imdb-lstm")]
TEXTS = ("a charming , funny film .", "the plot was dull and the acting worse", "not bad at all , really",
         "i bought this movie because of the cast . <br /> it was a waste of two hours , sadly .", "great")


@pytest.mark.parametrize("skip,base", SHIPPED)
def test_shipped_predictors_keep_their_base_frozen(skip, base):
    """The shipped skip models: the frozen LSTM is the shipped base, byte for byte (named by checksum, not
    copied), and threshold 1.0 gives the base model's outputs exactly, through the family the server builds."""
    from conftest import MODELS_DIR
    from service.families import build_model
    folder, base_folder = MODELS_DIR / skip, MODELS_DIR / base
    m = json.loads((folder / "manifest.json").read_text())
    assert m["base"]["name"] == base
    assert m["base"]["files"] == {f: sha256_file(base_folder / f) for f in ("weights.npz", "vocab.txt")}
    with np.load(folder / "weights.npz") as npz:
        assert sorted(npz.files) == ["rnn.Wd", "rnn.bd"]  # the LSTM's weights are not copied
    art, base_art = load_artifact(folder), load_artifact(base_folder)
    with np.load(base_folder / "weights.npz") as npz:
        names = npz.files
    for k in names:  # the merged weights are the base's arrays as the base loads them, byte-identical
        a, b = art.weights[k], base_art.weights[k]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), k
    model, ref = build_model(art, "fast"), build_model(base_art, "fast")
    for text in TEXTS:
        a, b = model.classify(text, 1.0), ref.classify(text, 1.0)
        assert a.cost.skimmed == 0 and a.label == b.label
        assert a.logits.tobytes() == b.logits.tobytes() and a.probabilities == b.probabilities
    low = [model.classify(t, 0.1).cost.skimmed for t in TEXTS]
    assert sum(low) > 0  # and the predictor does skip when asked to: the comparison above is not vacuous


def test_evaluate_counts_flops():
    base_dir_rng = np.random.default_rng(2)
    e, d = 8, 16
    layer = LayerWeights(*(base_dir_rng.standard_normal(s).astype(np.float32) * 0.3
                           for s in ((4 * d, e), (4 * d, d), (4 * d,))))
    base = SP.Base(None, {"name": "x"}, layer, base_dir_rng.standard_normal((20, e)).astype(np.float32),
                   base_dir_rng.standard_normal((2, d)).astype(np.float32), np.zeros(2, np.float32), ["w"] * 20)
    Wd = np.zeros((2, e + d), np.float32)
    seqs = [np.arange(5), np.arange(3, 12)]
    labels = np.array([0, 1])
    skip_all = SP.skip_layer(base, Wd, np.array([0.0, 10.0], np.float32))   # p_skip ~ 1 everywhere
    r_all, r_none = SP.evaluate(base, skip_all, seqs, labels, [0.5, 1.0])
    assert r_all["skip_rate"] == 1.0 and r_none["skip_rate"] == 0.0
    assert r_none["flops_saved"] < 0                 # the predictor costs 4(e+d) per token when nothing skips
    from service import flops as F
    n = 14
    full = n * F.read_flops(e, d) + 2 * F.head_flops(d, 2)
    assert r_all["flops_saved"] == pytest.approx(1 - (n * F.decision_flops(e, d) + 2 * F.head_flops(d, 2)) / full, abs=1e-6)


def test_simulate_matches_the_kernel():
    """The batched NumPy simulation (labels, oracle, round 2) follows the same trajectory as the kernel."""
    rng = np.random.default_rng(3)
    e, d = 8, 16
    layer = LayerWeights(*(rng.standard_normal(s).astype(np.float32) * 0.5 for s in ((4 * d, e), (4 * d, d), (4 * d,))))
    base = SP.Base(None, {"name": "x"}, layer, rng.standard_normal((30, e)).astype(np.float32),
                   rng.standard_normal((2, d)).astype(np.float32), np.zeros(2, np.float32), ["w"] * 30)
    Wd = rng.standard_normal((2, e + d)).astype(np.float32)
    bd = np.zeros(2, np.float32)
    seqs = [rng.integers(0, 30, int(n)) for n in rng.integers(1, 25, 17)]
    w = SP.skip_layer(base, Wd, bd)
    sim = SP.simulate(base, seqs, "predictor", Wd=Wd, bd=bd, threshold=0.5, batch=5)
    for j, s in enumerate(seqs):
        out = reference.run_layer(w, SP.embed(base, s), 0.5)
        assert sim["skipped"][j] == out.skimmed
        assert np.abs(sim["h_last"][j] - out.hs[-1]).max() < 1e-5
    dense = SP.simulate(base, seqs, "none")
    assert not dense["skipped"].any()


def test_refuses_non_lstm(tmp_path):
    make_random_classifier(tmp_path / "tiny-skim", d_small=4, seed=1)
    with pytest.raises(ValueError, match="dense LSTM"):
        SP.load_base(tmp_path / "tiny-skim")


def test_baseline_filters():
    ids = np.arange(10)
    assert list(skip_baselines.concat_filter(ids, 2)) == [0, 1, 8, 9]
    assert list(skip_baselines.concat_filter(ids, 5)) == list(range(10))
    vocab = ["<pad>", "<unk>", "the", "good", ",", "not", "film"]
    assert list(skip_baselines.stop_filter(np.array([2, 3, 4, 5, 6]), vocab)) == [3, 5, 6]
    assert "not" not in skip_baselines.STOP_WORDS and "the" in skip_baselines.STOP_WORDS
