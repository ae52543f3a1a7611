"""A cell defined and registered here, in the test file, is served end to end through POST /classify with
no edit to the package: the manifest names it, the layer stack builds it, the backends fall back to its
reference (logged), its own FLOP formula gives the cost."""
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.artifacts import load_artifact, write_artifact
from service.cells import CELLS, Cell, LayerCost, register_cell
from service.config import Settings
from service.engine.layer import LayerOutput
from service.manifest import new_manifest
from service.registry import Registry

E, D = 8, 6


@dataclass(frozen=True)
class ElmanWeights:
    W: np.ndarray  # (d, e)
    U: np.ndarray  # (d, d)
    b: np.ndarray  # (d,)

    @property
    def input_size(self):
        return self.W.shape[1]

    @property
    def hidden_size(self):
        return self.W.shape[0]


class ElmanCell(Cell):
    """h_t = tanh(W x_t + U h_{t-1} + b); skims when x_t's first unit is negative and the threshold < 1."""
    name = "toy-elman"
    skims = True

    def weights(self, weights, prefix):
        w = ElmanWeights(weights[prefix + "W"], weights[prefix + "U"], weights[prefix + "b"])
        if w.U.shape != (w.hidden_size, w.hidden_size):
            raise ValueError("U must be square")
        return w

    def cost(self, w, tokens, skimmed):
        e, d = w.input_size, w.hidden_size
        read = 2 * d * (e + d) + 2 * d
        return LayerCost(tokens, skimmed, (tokens - skimmed) * read, tokens * read)

    def reference(self, w, x, threshold):
        h = np.zeros(w.hidden_size, np.float32)
        hs, skim = np.zeros((len(x), w.hidden_size), np.float32), np.zeros(len(x), bool)
        for t, xt in enumerate(x):
            skim[t] = threshold < 1.0 and xt[0] < 0
            if not skim[t]:  # a skimmed step keeps h
                h = np.tanh(w.W @ xt + w.U @ h + w.b).astype(np.float32)
            hs[t] = h
        return LayerOutput(hs, skim, skim.astype(np.float32))


@pytest.fixture
def toy_cell():
    register_cell(ElmanCell)
    yield CELLS["toy-elman"]
    CELLS.pop("toy-elman", None)


def make_toy_model(folder):
    rng = np.random.default_rng(0)
    vocab = ["<pad>", "<unk>", "good", "bad", "film", "not"]
    weights = {"embedding": rng.standard_normal((len(vocab), E)).astype(np.float32),
               "rnn.W": rng.standard_normal((D, E)).astype(np.float32) * 0.5,
               "rnn.U": rng.standard_normal((D, D)).astype(np.float32) * 0.5,
               "rnn.b": np.zeros(D, np.float32),
               "head.W": rng.standard_normal((2, D)).astype(np.float32), "head.b": np.zeros(2, np.float32)}
    manifest = new_manifest("toy", "classify", "toy-elman", sizes={"embed": E, "hidden": D},
                            labels=["negative", "positive"], layers=[{"name": "rnn"}])
    write_artifact(folder, manifest, weights, vocab)
    return weights


def test_toy_cell_served_through_classify(toy_cell, tmp_path, caplog):
    from service.api.app import create_app

    weights = make_toy_model(tmp_path / "models" / "toy")
    registry = Registry(tmp_path / "models").load_all()
    with TestClient(create_app(Settings(models_dir=str(tmp_path / "models")), registry)) as client:
        r = client.post("/classify", params={"threshold": 0.5, "explain": "true"},
                        json={"text": "good film , not bad"})
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["model"] == "toy" and b["kernel"] == "reference"
        # the same answer by hand, from the cell's own reference
        art = load_artifact(tmp_path / "models" / "toy")
        ids = [art.vocab.index(w) if w in art.vocab else 1 for w in "good film , not bad".split()]
        out = toy_cell.reference(toy_cell.weights(weights, "rnn."), weights["embedding"][ids], 0.5)
        logits = weights["head.W"] @ out.hs[-1] + weights["head.b"]
        assert b["label"] == ["negative", "positive"][int(np.argmax(logits))]
        assert b["tokens"] == 5 and b["skimmed"] == int(out.skim.sum())
        read = 2 * D * (E + D) + 2 * D
        head = 2 * D * 2
        assert b["flops"] == (5 - b["skimmed"]) * read + head and b["flops_full"] == 5 * read + head
        assert [t["decision"] == "skim" for t in b["explanation"]] == out.skim.tolist()
        models = client.get("/models").json()["models"]
        assert models[0]["cell"] == "toy-elman"


def test_unknown_cell_is_refused_at_load(tmp_path):
    make_toy_model(tmp_path / "models" / "toy")  # no toy cell registered here
    from service.registry import RegistryError

    with pytest.raises(RegistryError, match="unknown cell 'toy-elman'"):
        Registry(tmp_path / "models").load_all()
