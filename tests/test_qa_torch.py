"""The PyTorch LSTM+Att reader: artifact round trip, the backward direction, a train_qa smoke run."""
import json

import numpy as np
import pytest
import torch

from service.artifacts import load_artifact, write_artifact
from training.qa_torch import NEG, LAYER_NAMES, QAReader, from_artifact, infer, span_kd_loss


def _manifest(skim):
    return {"name": "qa-tiny", "version": "1", "task": "qa", "family": "skim-lstm" if skim else "lstm",
            "sizes": {"embed": 8, "hidden": 6, "layers": 2, "directions": 2, **({"small_hidden": 2} if skim else {})},
            "default_threshold": 0.5, "max_answer_tokens": 15,
            "layers": [{"name": n, "direction": "forward" if n.endswith("fw") else "backward"} for n in LAYER_NAMES],
            "tokenizer": {"name": "skimserve-ptb-lower-v1", "module": "service/tokenizer.py", "lowercase": True}}


def _tiny(skim, seed=0):
    torch.manual_seed(seed)
    emb = torch.randn(20, 8).half().float()
    emb[0] = 0
    return QAReader(emb, d=6, d_small=2, skim=skim, dropout=0.0).eval()


@pytest.mark.parametrize("skim", [False, True])
def test_artifact_round_trip(tmp_path, skim):
    m = _tiny(skim)
    w = m.export_weights()
    assert w["embedding"].dtype == np.float16 and w["att.w"].shape == (24,)
    assert w["l0.fw.W_ih"].shape == (24, 24) and w["l1.bw.W_ih"].shape == (24, 12) and w["start.b"].shape == (1,)
    if skim:
        assert w["l1.bw.Ws_ih"].shape == (8, 12) and w["l0.fw.Wd"].shape == (2, 30) and w["l1.fw.bd"].shape == (2,)
    write_artifact(tmp_path, _manifest(skim), w, [f"w{i}" for i in range(20)])
    r = from_artifact(load_artifact(tmp_path))
    rng = np.random.default_rng(0)
    for T in (1, 3, 17):
        ctx, q = rng.integers(2, 20, T), rng.integers(2, 20, 4)
        for thr in ((0.5, 0.5), (0.3, 0.7)):
            s0, e0, d0 = infer(m, ctx, q, thr)
            s1, e1, d1 = infer(r, ctx, q, thr)
            assert np.abs(s0 - s1).max() < 1e-5 and np.abs(e0 - e1).max() < 1e-5
            assert s1.shape == (T,) and set(d1) == set(LAYER_NAMES)
            for k in d0:
                assert (d0[k][0] == d1[k][0]).all() and np.abs(d0[k][1] - d1[k][1]).max() < 1e-5
        # rebuilt weights are the artifact's
        assert all(np.array_equal(v, load_artifact(tmp_path).weights[k].astype(v.dtype)) for k, v in r.export_weights().items())


def _ref_direction(W_ih, W_hh, b, xs):
    """A plain LSTM recurrence in numpy (gate order i, f, g, o)."""
    d = W_hh.shape[1]
    h, c, out = np.zeros(d), np.zeros(d), []
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for x in xs:
        g = W_ih @ x + W_hh @ h + b
        i, f, gg, o = np.split(g, 4)
        c = sig(f) * c + sig(i) * np.tanh(gg)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.array(out)


@pytest.mark.parametrize("T", [1, 3])
def test_backward_direction(T):
    """bw = the forward recurrence over the reversed sequence, reversed back; the skim path at threshold 1.0
    (never skims) equals the dense cuDNN-style nn.LSTM path, batched with padding or not."""
    m = _tiny(True, seed=1)
    rng = np.random.default_rng(T)
    ctx = torch.tensor(rng.integers(2, 20, (2, T)))
    q = torch.tensor(rng.integers(2, 20, (2, 3)))
    clen, qlen = torch.tensor([T, max(1, T - 1)]), torch.tensor([3, 2])
    with torch.no_grad():
        s_skim, e_skim, _ = m(ctx, clen, q, qlen, thresholds=(1.0, 1.0))
        m.use_skim = False
        s_dense, e_dense, _ = m(ctx, clen, q, qlen)
        m.use_skim = True
        valid = torch.arange(T)[None] < clen[:, None]
        assert torch.allclose(s_skim[valid], s_dense[valid], atol=1e-5)
        assert torch.allclose(e_skim[valid], e_dense[valid], atol=1e-5)
        # layer 0 backward direction by hand
        qmask = torch.arange(3)[None] < qlen[:, None]
        x0 = m.attend(m.embedding(ctx), m.embedding(q), qmask)[0].numpy()
        out, _ = m._dense_layer(torch.tensor(x0)[None], torch.tensor([T]), 0)
        w = m.export_weights()
        bw = _ref_direction(w["l0.bw.W_ih"], w["l0.bw.W_hh"], w["l0.bw.b"], x0[::-1])[::-1]
        fw = _ref_direction(w["l0.fw.W_ih"], w["l0.fw.W_hh"], w["l0.fw.b"], x0)
        assert np.abs(out[0, :, 6:].numpy() - bw).max() < 1e-5
        assert np.abs(out[0, :, :6].numpy() - fw).max() < 1e-5
        _, _, d = infer(m, ctx[0].numpy(), q[0].numpy(), (0.0, 0.0))
        assert all(v[0].shape == (T,) for v in d.values())


def test_train_qa_smoke(tmp_path):
    from training.data import data_dir
    if not (data_dir() / "squad" / "train.json").is_file():
        pytest.skip("no ../shared/data/squad")
    import training.train_qa as tq
    words = ["<pad>", "<unk>", "the", "of", "in", "what", "who", "a", "and", "to"]
    vdir = tmp_path / "vocab" / "squad"
    vdir.mkdir(parents=True)
    (vdir / "vocab.txt").write_text("\n".join(words) + "\n")
    np.save(vdir / "emb.npy", np.random.default_rng(0).normal(0, 0.3, (len(words), 50)).astype(np.float32))
    (vdir / "stats.json").write_text("{}")
    tq.main(["--family", "skim", "--name", "smoke", "--out-dir", str(tmp_path), "--vocab-cache", str(tmp_path / "vocab"),
             "--limit", "24", "--max-steps", "4", "--eval-every", "2", "--pretrain-steps", "2", "--batch-size", "8",
             "--device", "cpu", "--max-train-len", "120", "--d", "16", "--d-small", "4"])
    a = load_artifact(tmp_path / "smoke")
    assert a.manifest["task"] == "qa" and a.manifest["family"] == "skim-lstm"
    assert a.weights["l1.bw.Wd"].shape == (2, 32 + 16)
    log = [json.loads(x) for x in (tmp_path / "smoke" / "train_log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "switch_to_skim" for r in log) and log[-1]["event"] == "final"
    from_artifact(a)
    # a skim reader started from a trained one and distilled from it (full pretraining + KL)
    tq.main(["--family", "skim", "--name", "smoke-kd", "--out-dir", str(tmp_path), "--vocab-cache", str(tmp_path / "vocab"),
             "--limit", "24", "--max-steps", "2", "--eval-every", "2", "--batch-size", "8", "--device", "cpu",
             "--max-train-len", "120", "--d", "16", "--d-small", "4", "--init-from", str(tmp_path / "smoke"),
             "--distill-from", str(tmp_path / "smoke")])
    kd = load_artifact(tmp_path / "smoke-kd").manifest["training"]
    assert kd["base"]["teacher"] == "smoke" and kd["base"]["name"] == "smoke"
    assert kd["base"]["teacher_weights_sha256"] == a.manifest["files"]["weights.npz"]


def test_span_kd_loss_is_the_kl_of_the_span_distributions():
    """Zero for a student equal to its teacher, the hand-computed KL otherwise; padded positions (NEG in
    both) carry no mass and change nothing."""
    g = torch.Generator().manual_seed(0)
    ts, te = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    s, e = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    assert float(span_kd_loss(ts, te, ts, te)) == pytest.approx(0.0, abs=1e-6)

    def kl(a, b, temp):
        p = torch.softmax(b / temp, -1)
        return float((p * (torch.log_softmax(b / temp, -1) - torch.log_softmax(a / temp, -1))).sum(-1).mean())

    for temp in (1.0, 2.0):
        want = temp * temp * (kl(s, ts, temp) + kl(e, te, temp))
        assert float(span_kd_loss(s, e, ts, te, temp)) == pytest.approx(want, rel=1e-5)
    pad = lambda x: torch.cat([x, torch.full((3, 4), NEG)], 1)  # noqa: E731
    assert float(span_kd_loss(pad(s), pad(e), pad(ts), pad(te))) == pytest.approx(float(span_kd_loss(s, e, ts, te)), rel=1e-5)
