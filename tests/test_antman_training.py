"""AntMan training side (training/antman.py, training/train_antman.py): every module equals its explicit dense
matrix (torch forward, and the NumPy reconstruction of its exported tensors per the artifact contract), the
layer equals nn.LSTM on dense modules, the coefficient rule, and a seconds-long CPU run of the whole recipe
(teacher, single-loss probes, distilled students, AntMan+skim) that writes loadable artifacts. Once the
runtime's antman cells are registered, the served model must compute what the torch model computes."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import MODELS_DIR, real_sentences, require_dataset  # noqa: E402
from service.artifacts import load_artifact  # noqa: E402
from training.antman import (AntManClassifier, AntManLSTM, AntManSkimClassifier, dense_from_export,  # noqa: E402
                             from_artifact, make_module, parse_spec)
from training.train_antman import coefficients  # noqa: E402

# (m, n, spec): m = 4d rows; both product shapes of d=40, e=20 and the d=400, e=50 students shipped
CASES = [
    (160, 20, {"module": "lgp-shuffle", "groups": 4}),
    (160, 40, {"module": "lgp-shuffle", "groups": 10}),
    (1600, 50, {"module": "lgp-shuffle", "groups": 10}),
    (160, 20, {"module": "lgp-dense", "groups": 2}),     # n < m: mix before the blocks
    (8, 40, {"module": "lgp-dense", "groups": 4}),       # m < n: mix after the blocks
    (160, 40, {"module": "lowrank-lgp", "groups_in": 2, "groups_out": 4, "rank": 2}),
    (160, 40, {"module": "lowrank-lgp", "groups_in": 10, "groups_out": 10, "rank": 2}),
    (160, 40, {"module": "dense"}),
]


@pytest.mark.parametrize("m,n,spec", CASES)
def test_module_equals_its_dense_matrix(m, n, spec):
    torch.manual_seed(0)
    mod = make_module(spec, m, n).double()
    x = torch.randn(3, 5, n, dtype=torch.float64)
    A = mod.dense()
    assert A.shape == (m, n)
    torch.testing.assert_close(mod(x), x @ A.t(), rtol=0, atol=1e-12)
    # the exported tensors, read by the contract's NumPy formulas, give the same matrix
    w = {k: v.detach().numpy() for k, v in mod.export("rnn.X").items()}
    np.testing.assert_allclose(dense_from_export(w, "rnn.", "X", spec), A.detach().numpy(), rtol=0, atol=1e-12)
    assert mod.spec() == spec


def test_lgp_shuffle_is_the_transpose_shuffle():
    """y[j*g + k] = (blocks[k] @ x_k)[j]: the contract's index rule, element by element."""
    g, m, n = 4, 12, 8
    mod = make_module({"module": "lgp-shuffle", "groups": g}, m, n).double()
    x = torch.randn(n, dtype=torch.float64)
    y = mod(x)
    B, c = mod.blocks.detach(), n // g
    for k in range(g):
        v = B[k] @ x[k * c:(k + 1) * c]
        for j in range(m // g):
            assert abs(y[j * g + k] - v[j]) < 1e-12


@pytest.mark.parametrize("m,n,spec", CASES)
def test_cost_is_table_1(m, n, spec):
    mod = make_module(spec, m, n)
    kind = spec["module"]
    if kind == "dense":
        want = m * n
    elif kind == "lgp-shuffle":
        want = m * n // spec["groups"]
    elif kind == "lgp-dense":
        want = m * n // spec["groups"] + min(m, n) ** 2
    else:
        r, gi, go = spec["rank"], spec["groups_in"], spec["groups_out"]
        want = m * n // (r * go) + n * n // (r * gi) + n * n // (r * r)
    assert mod.cost() == want
    assert mod.cost() == sum(p.numel() for p in mod.parameters())  # each weight used once per product


def test_bad_groups_are_refused():
    with pytest.raises(ValueError, match="groups 3 must divide"):
        make_module({"module": "lgp-shuffle", "groups": 3}, 160, 40)
    with pytest.raises(ValueError, match="unknown AntMan module"):
        parse_spec("lgp-sparse:2")


def test_layer_with_dense_modules_is_nn_lstm():
    """Gate order i, f, g, o, one bias, padding keeps the state: the same function as nn.LSTM over a packed batch."""
    torch.manual_seed(1)
    e, d = 6, 5
    layer = AntManLSTM(e, d, {"module": "dense"}, {"module": "dense"}).double()
    ref = torch.nn.LSTM(e, d, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.ih.W), ref.weight_hh_l0.copy_(layer.hh.W)
        ref.bias_ih_l0.copy_(layer.b), ref.bias_hh_l0.zero_()
    x = torch.randn(3, 7, e, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    _, (h, _) = ref(packed)
    torch.testing.assert_close(layer(x, lengths), h[0], rtol=0, atol=1e-12)


def test_skim_student_at_threshold_one_is_the_plain_student():
    torch.manual_seed(2)
    emb = torch.randn(30, 8)
    spec = {"module": "lgp-shuffle", "groups": 4}
    skim = AntManSkimClassifier(emb, 12, 3, 2, spec, spec).eval()
    plain = AntManClassifier(emb, 12, 2, spec, spec).eval()
    plain.rnn.load_state_dict(skim.big.state_dict())
    plain.head.load_state_dict(skim.head.state_dict())
    ids = torch.randint(1, 30, (4, 9))
    lengths = torch.tensor([9, 4, 6, 1])
    with torch.no_grad():
        a, aux = skim(ids, lengths, threshold=1.0)
        b, _ = plain(ids, lengths)
    assert aux[1].sum() == 0
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_coefficient_rule_scales_each_term_to_the_target_loss():
    c = coefficients({"target": 0.4, "mse": 0.02, "kl": 0.005})
    assert c == {"C_target": 1.0, "C_mse": 20.0, "C_kl": 80.0}
    assert coefficients({"target": 0.3, "mse": 0.7, "kl": 0.123})["C_kl"] == 2.4  # two significant digits


def test_encoded_splits_round_trip(tmp_path):
    from training import encoded_splits

    splits = {"train": [([1, 2, 3], 0), ([4], 1)], "dev": [([], 1), ([65535, 7], 0)]}
    encoded_splits.write(tmp_path / "x.npz.xz", splits, {"splits": ["train", "dev"], "dataset": "sst2"})
    meta, back = encoded_splits.read(tmp_path / "x.npz.xz")
    assert back == splits and meta["dataset"] == "sst2"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The recipe of scripts/train_antman.sh, seconds long: teacher, three probes, a distilled student and an
    AntMan+skim student of 200 SST-2 examples, through the real CLI."""
    require_dataset("sst2", "train")
    from training import train_antman

    out = tmp_path_factory.mktemp("antman")
    (out / "sst2-lstm").symlink_to((MODELS_DIR / "sst2-lstm").resolve())
    common = ["--dataset", "sst2", "--base", str(out / "sst2-lstm"), "--out-dir", str(out), "--limit", "120",
              "--eval-every", "2", "--batch-size", "16", "--device", "cpu", "--d", "20", "--max-steps", "4"]
    train_antman.main([*common, "--cell", "lstm", "--name", "t-d20"])
    g = ["--W-ih", "lgp-shuffle:10", "--W-hh", "lgp-shuffle:10", "--teacher", str(out / "t-d20")]
    probes = []
    for loss in ("target", "mse", "kl"):
        probes.append(str(out / f"probe-{loss}.json"))
        train_antman.main([*common, "--cell", "antman-lstm", *g, "--loss", loss, "--probe-out", probes[-1]])
    train_antman.main([*common, "--cell", "antman-lstm", *g, "--probes", *probes, "--name", "s-10x",
                       "--results", str(out / "s-10x.json")])
    train_antman.main([*common, "--cell", "antman-skim-lstm", "--W-ih", "lgp-shuffle:5", "--W-hh",
                       "lowrank-lgp:2,2,2", "--teacher", str(out / "t-d20"), "--probes", *probes, "--d-small", "4",
                       "--read-warmup", "2", "--name", "s-skim"])
    return out


def test_recipe_writes_students_that_name_teacher_compression_and_coefficients(recipe):
    probes = {json.loads((recipe / f"probe-{k}.json").read_text())["loss"] for k in ("target", "mse", "kl")}
    assert probes == {"target", "mse", "kl"}
    for name, family in (("s-10x", "antman-lstm"), ("s-skim", "antman-skim-lstm")):
        art = load_artifact(recipe / name)  # checksums, shapes, the base's embedding merged in by checksum
        m = art.manifest
        assert m["family"] == family and m["teacher"] == "t-d20" and m["base"]["name"] == "sst2-lstm"
        assert "embedding" not in np.load(recipe / name / "weights.npz").files  # only the recurrent layer + head
        conv = m["distillation"]["converged"]
        assert m["distillation"]["C_mse"] == coefficients(conv)["C_mse"]
        assert set(m["compression"]) == {"W_ih", "W_hh"}
    res = json.loads((recipe / "s-10x.json").read_text())
    # d=20, e=50: teacher 8*20*70 + 200; g=10: 2*(80*50/10 + 80*20/10) + 200
    assert res["teacher_read_flops"] == 11400 and res["read_flops"] == 1320
    assert 0 <= res["test_accuracy"] <= 1 and res["teacher"] == "t-d20"


def test_exported_student_is_the_trained_model(recipe):
    """from_artifact rebuilds the torch model from the artifact; the NumPy reconstruction of its products from
    the exported tensors is the module's dense matrix."""
    art = load_artifact(recipe / "s-skim")
    model = from_artifact(art)
    for prod, mod in (("W_ih", model.big.ih), ("W_hh", model.big.hh)):
        A = dense_from_export(art.weights, "rnn.", prod, art.manifest["compression"][prod])
        np.testing.assert_allclose(A, mod.dense().detach().double().numpy(), rtol=0, atol=1e-6)


def _runtime_has_antman() -> bool:
    from service.cells import CELLS
    return "antman-lstm" in CELLS and "antman-skim-lstm" in CELLS


@pytest.mark.skipif(not _runtime_has_antman(), reason="the runtime's antman cells are not on this branch")
@pytest.mark.parametrize("name", ["s-10x", "s-skim"])
def test_served_model_computes_what_torch_computes(recipe, name):
    from service.families import build_model

    art = load_artifact(recipe / name)
    served, tmodel = build_model(art, kernel="reference"), from_artifact(art)
    for text in real_sentences("sst2", 8):
        ids = served.to_ids(served.tokenize(text))
        for thr in (0.3, 0.5, 0.7) if served.layer.skims else (0.5,):
            logits, out = served.forward(ids, thr)
            with torch.no_grad():
                t_logits, aux = tmodel(torch.tensor(ids)[None], torch.tensor([len(ids)]), threshold=thr)
            assert np.max(np.abs(logits - t_logits[0].numpy())) <= 1e-4, (name, thr, text)
            if served.layer.skims:
                assert np.array_equal(out.skim, aux[1][0].numpy().astype(bool)), (name, thr, text)


def test_report_counts_the_flops_the_training_run_recorded(recipe):
    """training/antman_report.py's per-token FLOPs (from the manifest) equal those train_antman.py recorded."""
    from training.antman_report import per_token_flops

    m = load_artifact(recipe / "s-10x").manifest
    assert per_token_flops(m, 0.0) == (m["training"]["recurrent_flops"]["read_flops"],) * 2
    sk = load_artifact(recipe / "s-skim").manifest
    rec = sk["training"]["recurrent_flops"]
    read, per_token = per_token_flops(sk, sk["training"]["dev_skim_rate"])
    assert read == rec["read_flops"] and round(per_token, 1) == rec["per_token_flops"]


def test_skim_student_starts_from_a_trained_student(recipe):
    """--init-from copies the big cell and head of an antman-lstm student of the same compression (lr 0: the
    exported big cell is the source's); another compression is refused."""
    from training import train_antman

    common = ["--dataset", "sst2", "--base", str(recipe / "sst2-lstm"), "--out-dir", str(recipe), "--limit", "40",
              "--eval-every", "1", "--batch-size", "16", "--device", "cpu", "--d", "20", "--max-steps", "1",
              "--cell", "antman-skim-lstm", "--teacher", str(recipe / "t-d20"), "--coefficients", "1,0,0",
              "--d-small", "4", "--init-from", str(recipe / "s-10x")]
    train_antman.main([*common, "--W-ih", "lgp-shuffle:10", "--W-hh", "lgp-shuffle:10", "--lr", "0",
                       "--name", "s-init"])
    a, b = np.load(recipe / "s-init" / "weights.npz"), np.load(recipe / "s-10x" / "weights.npz")
    for k in ("rnn.W_ih.blocks", "rnn.W_hh.blocks", "rnn.b", "head.W", "head.b"):
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(SystemExit, match="compression"):
        train_antman.main([*common, "--W-ih", "lgp-shuffle:5", "--W-hh", "lgp-shuffle:10", "--name", "s-bad"])


def test_plain_student_continues_from_a_trained_student(recipe):
    """--init-from on an antman-lstm student continues it (e.g. on longer texts): at lr 0 the exported
    weights are the source's."""
    from training import train_antman

    train_antman.main(["--dataset", "sst2", "--base", str(recipe / "sst2-lstm"), "--out-dir", str(recipe),
                       "--limit", "40", "--eval-every", "1", "--batch-size", "16", "--device", "cpu", "--d", "20",
                       "--max-steps", "1", "--cell", "antman-lstm", "--W-ih", "lgp-shuffle:10", "--W-hh",
                       "lgp-shuffle:10", "--teacher", str(recipe / "t-d20"), "--coefficients", "1,0,0",
                       "--init-from", str(recipe / "s-10x"), "--lr", "0", "--name", "s-cont"])
    a, b = np.load(recipe / "s-cont" / "weights.npz"), np.load(recipe / "s-10x" / "weights.npz")
    for k in ("rnn.W_ih.blocks", "rnn.W_hh.blocks", "rnn.b", "head.W", "head.b"):
        np.testing.assert_array_equal(a[k], b[k])
