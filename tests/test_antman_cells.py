"""AntMan cells (antman-lstm, antman-skim-lstm): the reference equals the dense cells run on the reconstructed
matrices (identical skim decisions), FLOPs are Table 1 against the dense teacher, and a random AntMan
artifact is served through POST /classify with its manifest checked at load."""
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from random_model import make_random_classifier, random_layer_weights
from service import flops as F
from service.artifacts import load_artifact
from service.cells import get_cell
from service.cells.gated import run_reference
from service.config import Settings
from service.engine.layer import LayerWeights
from service.manifest import Manifest, new_manifest
from service.registry import Registry, RegistryError

E, D, DS = 20, 40, 8   # 4d = 160
COMPRESSIONS = [
    {"W_ih": {"module": "lgp-shuffle", "groups": 4}, "W_hh": {"module": "lgp-shuffle", "groups": 10}},
    {"W_ih": {"module": "lgp-dense", "groups": 2}, "W_hh": {"module": "lowrank-lgp", "groups_in": 2,
                                                           "groups_out": 4, "rank": 2}},
    {"W_ih": {"module": "dense"}, "W_hh": {"module": "lgp-dense", "groups": 5}},
    {"W_ih": {"module": "lowrank-lgp", "groups_in": 5, "groups_out": 10, "rank": 2},
     "W_hh": {"module": "lowrank-lgp", "groups_in": 10, "groups_out": 10, "rank": 2}},
]


def layer(compression, d_small, seed=0, skim_bias=0.0):
    rng = np.random.default_rng(seed)
    w = random_layer_weights(rng, E, D, d_small, compression=compression, skim_bias=skim_bias)
    cell = get_cell("antman-skim-lstm" if d_small else "antman-lstm")
    return cell, cell.weights(w, "rnn."), w


def densified(aw) -> LayerWeights:
    """The same layer with the modules' explicit matrices: a plain 'lstm' / 'skim-lstm' layer."""
    return LayerWeights(aw.W_ih.dense().astype(np.float32), aw.W_hh.dense().astype(np.float32), aw.b,
                        aw.Ws_ih, aw.Ws_hh, aw.bs, aw.Wd, aw.bd)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_antman_lstm_reference_equals_lstm_on_reconstructed_weights(compression):
    cell, aw, _ = layer(compression, 0)
    x = np.random.default_rng(5).standard_normal((30, E)).astype(np.float32)
    out = cell.reference(aw, x, 0.5)
    ref = run_reference(densified(aw), x, 0.5)
    assert out.hs.dtype == np.float32 and not out.skim.any()
    # float32: the module's product order differs from the dense matvec's
    np.testing.assert_allclose(out.hs, ref.hs, rtol=0, atol=2e-5)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_antman_skim_equals_skim_lstm_on_reconstructed_weights(compression, threshold):
    cell, aw, _ = layer(compression, DS, seed=2)
    x = np.random.default_rng(6).standard_normal((60, E)).astype(np.float32)
    out = cell.reference(aw, x, threshold)
    ref = get_cell("skim-lstm").reference(densified(aw), x, threshold)
    assert np.array_equal(out.skim, ref.skim)
    assert 0 < out.skimmed < len(x), "the test needs both decisions"
    np.testing.assert_allclose(out.hs, ref.hs, rtol=0, atol=2e-5)
    np.testing.assert_allclose(out.p_skim, ref.p_skim, rtol=0, atol=2e-6)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_flops_are_table1_against_the_dense_teacher(compression):
    for d_small in (0, DS):
        cell, aw, _ = layer(compression, d_small)
        macs = [F.module_macs(compression[p], 4 * D, n) for p, n in (("W_ih", E), ("W_hh", D))]
        assert [aw.W_ih.macs, aw.W_hh.macs] == macs
        read = 2 * sum(macs) + F.ELEMENTWISE_PER_UNIT * D
        teacher = 8 * D * (E + D) + F.ELEMENTWISE_PER_UNIT * D
        T, s = 25, (7 if d_small else 0)
        lc = cell.cost(aw, T, s)
        extra = s * F.skim_flops(E, D, d_small) + T * F.decision_flops(E, D) if d_small else 0
        assert lc.flops == (T - s) * read + extra
        dense_teacher = LayerWeights(aw.W_ih.dense(), aw.W_hh.dense(), aw.b)
        assert lc.flops_full == T * teacher == get_cell("lstm").cost(dense_teacher, T, 0).flops


def test_lgp_shuffle_g10_cost_is_a_tenth():
    cell, aw, _ = layer({"W_ih": {"module": "lgp-shuffle", "groups": 10},
                         "W_hh": {"module": "lgp-shuffle", "groups": 10}}, 0)
    assert aw.W_ih.macs == 4 * D * E // 10 and aw.W_hh.macs == 4 * D * D // 10


@pytest.mark.parametrize("bad,match", [
    (lambda w: w.pop("rnn.W_hh.blocks"), "missing tensor rnn.W_hh"),
    (lambda w: w.__setitem__("rnn.W_ih.blocks", np.zeros((4, 30, 5), np.float32)),
     r"W_ih has shape \(120, 20\), expected \(160, 20\)"),
    (lambda w: w.__setitem__("rnn.b", np.zeros(10, np.float32)), "b has shape"),
    (lambda w: w.__setitem__("rnn.Wd", np.zeros((2, 3), np.float32)), "decision layer"),
])
def test_bad_layer_weights_refused(bad, match):
    rng = np.random.default_rng(0)
    w = random_layer_weights(rng, E, D, 0, compression=COMPRESSIONS[0])
    bad(w)
    with pytest.raises(ValueError, match=match):
        get_cell("antman-lstm").weights(w, "rnn.")


def test_skim_cell_needs_a_decision_layer():
    rng = np.random.default_rng(0)
    w = random_layer_weights(rng, E, D, 0, compression=COMPRESSIONS[0])
    with pytest.raises(ValueError, match="no decision layer"):
        get_cell("antman-skim-lstm").weights(w, "rnn.")


@pytest.mark.parametrize("spec,match", [
    ({"module": "lgp-shuffle"}, "missing 'groups'"),
    ({"module": "lgp-shuffle", "groups": 2, "rank": 2}, "unexpected 'rank'"),
    ({"module": "lowrank-lgp", "groups_in": 2, "groups_out": 2}, "missing 'rank'"),
    ({"module": "lgp-shuffle", "groups": 0}, "greater than or equal to 1"),
    ({"module": "svd", "groups": 2}, "compression"),
])
def test_manifest_refuses_bad_module_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        new_manifest("m", "classify", "antman-lstm", compression={"W_ih": spec, "W_hh": {"module": "dense"}})


def test_manifest_keeps_compression_teacher_distillation():
    comp = COMPRESSIONS[1]
    data = new_manifest("m", "classify", "antman-lstm", compression=comp, teacher="imdb-lstm-d400",
                        distillation={"C_target": 1.0, "C_mse": 3.0, "C_kl": 100.0})
    spec = Manifest.parse(data)
    assert {k: v.as_dict() for k, v in spec.compression.items()} == comp
    assert spec.teacher == "imdb-lstm-d400" and spec.distillation["C_kl"] == 100.0
    assert spec.to_dict()["compression"] == comp


@pytest.fixture
def antman_models(tmp_path):
    root = tmp_path / "models"
    make_random_classifier(root / "am", e=E, d=D, d_small=0, seed=3, compression=COMPRESSIONS[1])
    make_random_classifier(root / "am-skim", e=E, d=D, d_small=DS, seed=4, compression=COMPRESSIONS[0])
    return root


@pytest.mark.parametrize("kernel", ["auto", "reference", "onnx"])
def test_antman_models_served_through_classify(antman_models, kernel):
    from service.api.app import create_app

    registry = Registry(antman_models, kernel=kernel).load_all()
    text = "good film , not bad . the plot was very boring but the acting was great"
    with TestClient(create_app(Settings(models_dir=str(antman_models)), registry)) as client:
        for name, thr in (("am", 0.5), ("am-skim", 0.5)):
            r = client.post("/classify", params={"threshold": thr, "explain": "true", "model": name},
                            json={"text": text})
            assert r.status_code == 200, r.text
            b = r.json()
            # by hand from the artifact: the cell's reference on the embedded tokens, then the head
            art = load_artifact(antman_models / name)
            cell = get_cell(art.spec.cell)
            ids = [art.vocab.index(w) if w in art.vocab else 1 for w in text.split()]
            out = cell.reference(cell.weights(art.weights, "rnn."), art.weights["embedding"][ids], thr)
            logits = art.weights["head.W"] @ out.hs[-1] + art.weights["head.b"]
            assert b["label"] == ["negative", "positive"][int(np.argmax(logits))]
            assert b["skimmed"] == out.skimmed
            aw = cell.weights(art.weights, "rnn.")
            lc = cell.cost(aw, len(ids), out.skimmed)
            head = F.head_flops(D, 2)
            assert b["flops"] == lc.flops + head and b["flops_full"] == len(ids) * F.read_flops(E, D) + head
            assert b["flop_reduction"] == pytest.approx(b["flops_full"] / b["flops"])
            if name == "am":
                assert b["flop_reduction"] > 1.5
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["am"]["cell"] == "antman-lstm" and models["am-skim"]["cell"] == "antman-skim-lstm"


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.pop("compression"), "needs the manifest's 'compression'"),
    (lambda m: m["compression"].pop("W_hh"), "no entry for W_hh"),
    (lambda m: m["compression"].__setitem__("W_ih", {"module": "lgp-shuffle", "groups": 2}),
     "compression W_ih says .*'groups': 2.* are .*lgp-dense"),
    (lambda m: m["compression"]["W_hh"].__setitem__("rank", 3), "rank=3 does not divide n=40"),
    (lambda m: m["compression"]["W_hh"].__setitem__("groups_in", 5), "compression W_hh says"),
    (lambda m: m["compression"]["W_ih"].__setitem__("groups", "two"), "compression.W_ih.groups"),
])
def test_bad_compression_spec_fails_loudly_at_load(antman_models, edit, match):
    path = antman_models / "am" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match=match):
        Registry(antman_models).load_all()


def test_tampered_antman_weights_fail_the_checksum(antman_models):
    path = antman_models / "am" / "weights.npz"
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="checksum mismatch for 'weights.npz'"):
        Registry(antman_models).load_all()


def test_antman_blocks_of_the_wrong_shape_fail_at_load(antman_models):
    """A consistent file and manifest whose blocks do not fit the layer (d=40: 4d=160 rows) is refused."""
    from service.artifacts import write_artifact

    art = load_artifact(antman_models / "am-skim")
    weights = dict(art.weights)
    weights["rnn.W_hh.blocks"] = np.zeros((10, 12, 4), np.float32)   # 120 rows, not 160
    manifest = {k: v for k, v in art.manifest.items() if k not in ("files", "weights", "weight_dtypes")}
    write_artifact(antman_models / "am-skim", manifest, weights, art.vocab)
    with pytest.raises(RegistryError, match=r"W_hh has shape \(120, 40\), expected \(160, 40\)"):
        Registry(antman_models).load_all()


def test_antman_artifact_on_a_base_model(tmp_path):
    """The contract's shape of a trained student: only the recurrent layer and the head in its weights, the
    vocab and embedding from the narrow model of the same dataset through `base` (by checksum)."""
    from service.artifacts import sha256_file, write_artifact

    root = tmp_path / "models"
    base = make_random_classifier(root / "narrow", e=E, d=16, d_small=0, seed=8)
    narrow = load_artifact(root / "narrow")
    rng = np.random.default_rng(9)
    comp = COMPRESSIONS[0]
    weights = random_layer_weights(rng, E, D, 0, compression=comp)
    weights.update({"head.W": rng.standard_normal((2, D)).astype(np.float32), "head.b": np.zeros(2, np.float32)})
    manifest = new_manifest("student", "classify", "antman-lstm", sizes={"embed": E, "hidden": D, "small_hidden": 0},
                            labels=["negative", "positive"], tokenizer={"name": "skimserve-ptb-lower-v1"},
                            compression=comp, teacher="narrow-teacher",
                            distillation={"C_target": 1.0, "C_mse": 0.5, "C_kl": 2.0},
                            base={"name": "narrow", "files": {"weights.npz": base["files"]["weights.npz"]}})
    write_artifact(root / "student", manifest, weights, narrow.vocab)
    art = load_artifact(root / "student")
    assert "embedding" not in np.load(root / "student" / "weights.npz").files
    np.testing.assert_array_equal(art.weights["embedding"], narrow.weights["embedding"])
    registry = Registry(root).load_all()
    assert "student" in registry.names()
    # the base changed after the student was built: refused by checksum
    np.savez(root / "narrow" / "weights.npz", **{**narrow.weights, "embedding": narrow.weights["embedding"] + 1})
    from service.artifacts import refresh_checksums

    refresh_checksums(root / "narrow")
    assert sha256_file(root / "narrow" / "weights.npz") != base["files"]["weights.npz"]
    with pytest.raises(RegistryError, match="base 'narrow' file 'weights.npz' has checksum"):
        Registry(root).load_all()


def test_fast_without_the_antman_extension_falls_back_to_the_reference(monkeypatch):
    import sys

    import service.engine
    from service.engine.backends import get_backend

    monkeypatch.setitem(sys.modules, "service.engine._antmankernel", None)   # import fails: not built
    monkeypatch.delitem(sys.modules, "service.engine.fast_antman", raising=False)
    for attr in ("fast_antman", "_antmankernel"):   # `from . import X` reads the package attribute first
        monkeypatch.delattr(service.engine, attr, raising=False)
    assert get_backend("fast", "antman-lstm").name == "reference"
    assert get_backend("auto", "antman-skim-lstm").name == "reference"
