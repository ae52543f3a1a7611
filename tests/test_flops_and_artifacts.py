import json
import shutil

import numpy as np
import pytest

from service import flops as F
from service.artifacts import ArtifactError, load_artifact
from service.families import build_model
from random_model import make_random_classifier


def test_flop_formulas_hand_computed():
    # e=50, d=100, d'=10: read = 8*100*150 + 10*100 = 121000; skim = 8*10*150 + 100 = 12100; decision = 600
    assert F.read_flops(50, 100) == 121_000
    assert F.skim_flops(50, 100, 10) == 12_100
    assert F.decision_flops(50, 100) == 600
    c = F.layer_cost(50, 100, 10, tokens=10, skimmed=7, skims=True)
    assert c.flops == 3 * 121_000 + 7 * 12_100 + 10 * 600 == 453_700
    assert c.flops_full == 1_210_000
    assert c.skim_rate == 0.7
    plain = F.layer_cost(50, 100, 0, tokens=10, skimmed=0, skims=False)
    assert plain.flops == plain.flops_full == 1_210_000
    with pytest.raises(ValueError):
        F.layer_cost(50, 100, 10, tokens=3, skimmed=4, skims=True)


def test_request_cost_matches_formula(random_models_dir):
    m = build_model(load_artifact(random_models_dir / "tiny-skim"), kernel="reference")
    r = m.classify("the film was good but the plot was awful", 0.5)
    e, d, ds = 16, 24, 4
    T, s = r.cost.tokens, r.cost.skimmed
    head = 2 * d * 2
    assert r.cost.flops == (T - s) * F.read_flops(e, d) + s * F.skim_flops(e, d, ds) + T * F.decision_flops(e, d) + head
    assert r.cost.flops_full == T * F.read_flops(e, d) + head


def _copy(random_models_dir, tmp_path, name="tiny-skim"):
    dst = tmp_path / name
    shutil.copytree(random_models_dir / name, dst)
    return dst


def test_tampered_weights_are_refused(random_models_dir, tmp_path):
    dst = _copy(random_models_dir, tmp_path)
    with np.load(dst / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    w["rnn.W_hh"][0, 0] += 1e-3
    np.savez(dst / "weights.npz", **w)
    with pytest.raises(ArtifactError, match="checksum mismatch for 'weights.npz'"):
        load_artifact(dst)


def test_shape_mismatch_is_refused(random_models_dir, tmp_path):
    dst = _copy(random_models_dir, tmp_path)
    man = json.loads((dst / "manifest.json").read_text())
    man["weights"]["rnn.W_hh"] = [1, 1]
    (dst / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="shape"):
        load_artifact(dst)


def test_pickled_weights_are_refused(random_models_dir, tmp_path):
    dst = _copy(random_models_dir, tmp_path)
    np.savez(dst / "weights.npz", embedding=np.array([object()], dtype=object))
    from service.artifacts import refresh_checksums
    refresh_checksums(dst)  # even a correctly signed file must not be unpickled
    with pytest.raises(ArtifactError):
        load_artifact(dst)


def test_missing_file_is_refused(random_models_dir, tmp_path):
    dst = _copy(random_models_dir, tmp_path)
    (dst / "vocab.txt").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(dst)


def test_tokenizer_reproduces_training_tokenization():
    from service.tokenizer import tokenize, tokenize_with_spans
    assert tokenize("They won't sit still.<br /><br />It's GREAT!") == \
        ["they", "wo", "n't", "sit", "still", ".", "it", "'s", "great", "!"]
    # already tokenized SST-2 text passes through
    assert tokenize("they presume their audience wo n't sit still") == \
        ["they", "presume", "their", "audience", "wo", "n't", "sit", "still"]
    text = "Don't stop"
    assert [(t.text, text[t.start:t.end]) for t in tokenize_with_spans(text)] == [("do", "Do"), ("n't", "n't"), ("stop", "stop")]
