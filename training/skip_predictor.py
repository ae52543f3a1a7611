"""Train a skip predictor on a frozen, already trained LSTM classifier (issue 19; the note
../shared/papers/skip-steps-without-retraining.txt) and write it as a 'skip-lstm' artifact.

  python -m training.skip_predictor models/sst2-lstm --out models/sst2-lstm-skip [--data-dir DIR]

A skip-LSTM is a Skim-LSTM layer whose small cell has size d' = 0: at each token a logistic layer on
[x_t; h_{t-1}] gives p_skip = sigmoid(z1 - z0), (z0, z1) = Wd [x_t; h_{t-1}] + bd; the token is skipped iff
float32(p_skip) > float32(threshold) (h and c carried over unchanged), else the frozen LSTM step runs.
The LSTM's weights are never changed: the artifact holds only the predictor (rnn.Wd, rnn.bd) and names its
base model by the SHA-256 of the base's weights.npz and vocab.txt.

Method (docs/skip-predictor.md):
1. Run the frozen LSTM over the training split (tokenized exactly as the base was trained: train.encode, the
   base's vocabulary) and measure every step's state change, ||h_t - h_{t-1}||_2 and the cosine distance
   1 - cos(h_t, h_{t-1}); their quantiles go into the manifest.
2. A step is labelled "skip" when its change is below tau (--measure l2 | cosine).  tau is chosen on dev
   among quantiles of the training distribution: dev is run with the *oracle* that skips exactly the
   steps whose change (on the trajectory actually followed, i.e. after earlier skips) is below tau, and
   the largest tau whose oracle changes at most --oracle-flips of dev predictions is kept.
3. The logistic predictor is fitted (PyTorch L-BFGS, class-balanced, standardised features folded back
   into Wd) on [x_t; h_{t-1}] -> label.  Round 2 (--rounds 2): the steps are collected again on the
   training split while the round-1 predictor really skips (the state diverges from the unskipped run;
   labels are the change the LSTM step would make from that state), and the predictor is refitted on both
   sets.  The round that does better on dev (FLOPs saved at the accuracy bar) is kept.
4. Sweep thresholds on dev with the compiled kernel (actual skipping, as served): accuracy, agreement with
   the base, skip rate, FLOP reduction (service/flops.py: the predictor's 4(e+d) FLOPs on every token);
   the default threshold is the one that saves the most FLOPs with dev accuracy at most --max-loss points
   under the base (and, when possible, at least --min-saving of the FLOPs saved).

Everything below takes a loaded base (load_base) and predictor weights, so evaluation is usable standalone:
    base = load_base("models/sst2-lstm"); w = skip_layer(base, Wd, bd); evaluate(base, w, ids, labels, [0.5])
One core by default (OMP/MKL threads 1, as training/evaluate.py).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service import flops as F  # noqa: E402
from service.artifacts import MANIFEST, VOCAB, WEIGHTS, load_artifact, sha256_file, write_artifact  # noqa: E402
from service.engine import reference  # noqa: E402
from service.engine.layer import LayerWeights  # noqa: E402

from . import data  # noqa: E402
from .runlog import command_line  # noqa: E402

FAMILY = "skip-lstm"
QUANTILES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TAU_QUANTILES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
              0.85, 0.9, 0.95, 1.0)


def _kernel():
    try:
        from service.engine import fast
        return fast
    except ImportError:  # the extension was not built: the reference gives the same decisions, slowly
        return reference


# --- the base --------------------------------------------------------------------------------------
@dataclass
class Base:
    path: Path
    manifest: dict
    layer: LayerWeights      # the frozen LSTM layer (dense)
    embedding: np.ndarray
    head_W: np.ndarray
    head_b: np.ndarray
    vocab: list[str]

    @property
    def e(self) -> int:
        return self.layer.input_size

    @property
    def d(self) -> int:
        return self.layer.hidden_size

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.vocab)}

    @property
    def dataset(self) -> str | None:
        return self.manifest.get("training", {}).get("dataset")


def load_base(folder: str | Path) -> Base:
    """A dense LSTM classifier artifact (family 'lstm', one forward layer 'rnn'), checksum-verified."""
    art = load_artifact(folder)
    m = art.manifest
    if m.get("family") != "lstm" or m.get("task", "classify") != "classify":
        raise ValueError(f"{folder}: a skip predictor needs a dense LSTM classifier (family 'lstm'), "
                         f"got task {m.get('task')!r} family {m.get('family')!r}")
    if len(m.get("layers") or [{"name": "rnn"}]) != 1:
        raise ValueError(f"{folder}: only single-layer classifiers are supported")
    layer = LayerWeights.from_dict(art.weights, "rnn.")
    if layer.skims:
        raise ValueError(f"{folder}: the base layer already has a decision layer")
    return Base(Path(folder), m, layer, art.weights["embedding"], art.weights["head.W"], art.weights["head.b"],
                art.vocab)


def skip_layer(base: Base, Wd: np.ndarray, bd: np.ndarray) -> LayerWeights:
    """The frozen LSTM layer with the predictor as its decision layer and an empty small cell (d' = 0)."""
    e, d = base.e, base.d
    w = LayerWeights(base.layer.W_ih, base.layer.W_hh, base.layer.b,
                     np.zeros((0, e), np.float32), np.zeros((0, d), np.float32), np.zeros(0, np.float32),
                     np.ascontiguousarray(Wd, np.float32), np.ascontiguousarray(bd, np.float32))
    w.check()
    return w


def encode_texts(base: Base, examples) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids as the base was trained (train.encode: service.tokenizer, the base's vocabulary; whole texts,
    as the server reads them) and the labels."""
    from .train import encode
    enc = encode(examples, base.index, 0)
    return [np.asarray(ids, np.int64) for ids, _ in enc], np.array([y for _, y in enc], np.int64)


def embed(base: Base, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(base.embedding[ids], dtype=np.float32)


# --- batched NumPy simulation (labels, the oracle, round-2 collection) -------------------------------
def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def simulate(base: Base, seqs: list[np.ndarray], mode: str = "none", tau: float = 0.0, measure: str = "l2",
             Wd: np.ndarray | None = None, bd: np.ndarray | None = None, threshold: float = 1.0,
             record: float = 0.0, rng: np.random.Generator | None = None, batch: int = 512):
    """Run the frozen LSTM over seqs, batched, computing at every step the LSTM step's candidate state and
    its change from the current state (L2 of h' - h, cosine distance 1 - cos(h', h); 1 at a zero state).
    mode: 'none' reads every step; 'oracle' skips steps whose change (by `measure`) is below tau;
    'predictor' skips where the logistic predictor's float32 p_skip > threshold.
    Returns dict: h_last (N, d), skipped (N,), and when record > 0 a random fraction `record` of the steps:
    features [x_t; h_{t-1}] (float32), l2, cos (the candidate change from the state actually held)."""
    W_ih, W_hh, b = base.layer.W_ih, base.layer.W_hh, base.layer.b
    d = base.d
    N = len(seqs)
    lens = np.array([len(s) for s in seqs])
    order = np.argsort(-lens, kind="stable")
    h_last = np.zeros((N, d), np.float32)
    skipped = np.zeros(N, np.int64)
    feats, l2s, coss = [], [], []
    thr = np.float32(threshold)
    for b0 in range(0, N, batch):
        idx = order[b0:b0 + batch]
        L = lens[idx]
        T = int(L.max()) if len(L) else 0
        B = len(idx)
        ids = np.zeros((B, T), np.int64)
        for j, k in enumerate(idx):
            ids[j, :L[j]] = seqs[k]
        h = np.zeros((B, d), np.float32)
        c = np.zeros((B, d), np.float32)
        nskip = np.zeros(B, np.int64)
        for t in range(T):
            nb = int((L > t).sum())  # sorted by length: the rows still running are a prefix
            hp, cp = h[:nb], c[:nb]
            x = base.embedding[ids[:nb, t]].astype(np.float32)
            g = x @ W_ih.T + hp @ W_hh.T + b
            i, f, gg, o = _sig(g[:, :d]), _sig(g[:, d:2 * d]), np.tanh(g[:, 2 * d:3 * d]), _sig(g[:, 3 * d:])
            c_new = (f * cp + i * gg).astype(np.float32)
            h_new = (o * np.tanh(c_new)).astype(np.float32)
            diff = h_new - hp
            l2 = np.sqrt((diff * diff).sum(1))
            den = np.linalg.norm(hp, axis=1) * np.linalg.norm(h_new, axis=1)
            cos = np.where(den > 0, 1.0 - (hp * h_new).sum(1) / np.where(den > 0, den, 1.0), 1.0)
            if record > 0:
                keep = rng.random(nb) < record
                if keep.any():
                    feats.append(np.concatenate([x[keep], hp[keep]], 1))
                    l2s.append(l2[keep].astype(np.float32))
                    coss.append(cos[keep].astype(np.float32))
            if mode == "none":
                skip = np.zeros(nb, bool)
            elif mode == "oracle":
                skip = (l2 if measure == "l2" else cos) < tau
            elif mode == "predictor":
                z = np.concatenate([x, hp], 1) @ Wd.T + bd
                p = (1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0])))).astype(np.float32)
                skip = p > thr
            else:
                raise ValueError(f"unknown mode {mode!r}")
            nskip[:nb] += skip
            s = skip[:, None]
            h[:nb] = np.where(s, hp, h_new)
            c[:nb] = np.where(s, cp, c_new)
        h_last[idx] = h
        skipped[idx] = nskip
    out = {"h_last": h_last, "skipped": skipped, "tokens": lens}
    if record > 0:
        out["features"] = np.concatenate(feats) if feats else np.zeros((0, base.e + d), np.float32)
        out["l2"] = np.concatenate(l2s) if l2s else np.zeros(0, np.float32)
        out["cos"] = np.concatenate(coss) if coss else np.zeros(0, np.float32)
    return out


def output_change(base: Base, seqs: list[np.ndarray], batch: int = 256) -> list[np.ndarray]:
    """Per step, the first-order change of the final logit margin (z_pred - z_other, base prediction) when
    that one step is skipped: |dm/dh_t . (h_{t-1} - h_t) + dm/dc_t . (c_{t-1} - c_t)|, the state change
    measured in the direction the classifier reads (one forward and one backward pass, PyTorch, unskipped
    run).  For two labels; with more, the margin of the predicted label over the runner-up."""
    import torch
    W_ih, W_hh, b = (torch.from_numpy(a) for a in (base.layer.W_ih, base.layer.W_hh, base.layer.b))
    E = torch.from_numpy(base.embedding)
    HW, Hb = torch.from_numpy(base.head_W), torch.from_numpy(base.head_b)
    d = base.d
    lens = np.array([len(s) for s in seqs])
    order = np.argsort(-lens, kind="stable")
    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(seqs)
    for b0 in range(0, len(seqs), batch):
        idx = order[b0:b0 + batch]
        L = torch.from_numpy(lens[idx])
        T = int(L.max())
        ids = torch.zeros(len(idx), T, dtype=torch.long)
        for j, k in enumerate(idx):
            ids[j, :lens[k]] = torch.from_numpy(seqs[k])
        h = torch.zeros(len(idx), d, requires_grad=True)
        c = torch.zeros(len(idx), d, requires_grad=True)
        hs, cs = [h], [c]
        for t in range(T):
            g = E[ids[:, t]] @ W_ih.T + h @ W_hh.T + b
            i, f, gg, o = g.split(d, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            act = (L > t)[:, None]
            h, c = torch.where(act, h_new, h), torch.where(act, c_new, c)
            h.retain_grad()
            c.retain_grad()
            hs.append(h)
            cs.append(c)
        z = h @ HW.T + Hb
        top2 = z.detach().topk(min(2, z.shape[1]), 1).indices
        m = (z.gather(1, top2[:, :1]) - z.gather(1, top2[:, -1:])).sum()
        m.backward()
        with torch.no_grad():
            gr = lambda v: v.grad if v.grad is not None else torch.zeros_like(v)  # noqa: E731 (c_T: unread)
            imp = torch.stack([((gr(hs[t + 1]) * (hs[t] - hs[t + 1])).sum(1)
                                + (gr(cs[t + 1]) * (cs[t] - cs[t + 1])).sum(1)).abs() for t in range(T)], 1).numpy()
        for j, k in enumerate(idx):
            out[k] = imp[j, :lens[k]].astype(np.float32)
    return out


def logits_of(base: Base, h_last: np.ndarray) -> np.ndarray:
    return h_last @ base.head_W.T + base.head_b


def quantiles(v: np.ndarray) -> dict[str, float]:
    if not len(v):
        return {}
    qs = np.quantile(v.astype(np.float64), QUANTILES)
    return {f"q{int(round(100 * q)):02d}": round(float(x), 6) for q, x in zip(QUANTILES, qs)} | {
        "mean": round(float(v.mean()), 6), "steps": int(len(v))}


# --- the predictor ---------------------------------------------------------------------------------
def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-4, iters: int = 200, balanced: bool = True,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Logistic regression of y (1 = skip) on X, PyTorch L-BFGS on standardised features (class-balanced
    weights), folded back into the decision layer's form: Wd (2, k) with row 0 zero, bd = (0, bias), so that
    sigmoid(z1 - z0) is the fitted probability."""
    import torch
    torch.manual_seed(seed)
    mu = X.mean(0, dtype=np.float64)
    sd = X.std(0, dtype=np.float64) + 1e-6
    Xt = torch.from_numpy(((X - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    pos = float(y.mean()) if len(y) else 0.5
    wt = torch.ones_like(yt)
    if balanced and 0 < pos < 1:
        wt = torch.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))
    w = torch.zeros(X.shape[1], requires_grad=True)
    b0 = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b0], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = Xt @ w + b0
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none") * wt).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    loss = float(closure().detach())
    with torch.no_grad():
        z = Xt @ w + b0
        acc = float((((z > 0).float() == yt).float() * wt).sum() / wt.sum())
    wn = w.detach().numpy().astype(np.float64) / sd
    bn = float(b0.detach().numpy()[0]) - float((wn * mu).sum())
    Wd = np.zeros((2, X.shape[1]), np.float32)
    Wd[1] = wn
    bd = np.array([0.0, bn], np.float32)
    return Wd, bd, {"loss": round(loss, 5), "balanced_accuracy": round(acc, 4), "skip_fraction": round(pos, 4),
                    "examples": int(len(y)), "l2": l2}


def refine(base: Base, seqs: list[np.ndarray], Wd: np.ndarray, bd: np.ndarray, penalty: float, epochs: float = 3,
           batch: int = 64, lr: float = 3e-3, max_len: int = 0, seed: int = 0, time_budget: float = 0,
           log=print) -> tuple[np.ndarray, np.ndarray, dict]:
    """Refit the predictor end to end with the LSTM frozen: the forward pass really skips (hard decisions
    with logistic noise, straight-through gradients, as the skim models train), the loss is the KL divergence
    from the base model's own output distribution plus `penalty` x the read rate.  Starts from (Wd, bd);
    returns the refined (Wd, bd) in the same form and a record.  Only the predictor's k+1 numbers move."""
    import torch
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    W_ih, W_hh, b, E, HW, Hb = map(f32, (base.layer.W_ih, base.layer.W_hh, base.layer.b, base.embedding,
                                         base.head_W, base.head_b))
    d = base.d
    seqs = [s[-max_len:] if max_len else s for s in seqs]
    seqs = [s for s in seqs if len(s)]
    kern = _kernel()
    with torch.no_grad():  # the base's output distribution on each (possibly cut) training text
        teacher = torch.stack([torch.log_softmax(HW @ f32(kern.run_layer(base.layer, embed(base, s), 1.0).hs[-1]) + Hb, 0)
                               for s in seqs])
    w = torch.tensor(Wd[1] - Wd[0], dtype=torch.float32, requires_grad=True)
    w0 = torch.tensor([float(bd[1] - bd[0])], requires_grad=True)
    opt = torch.optim.Adam([w, w0], lr=lr)
    lens = np.array([len(s) for s in seqs])
    # length buckets: batches of similar lengths (little padding), in random order
    order = np.argsort(lens + rng.random(len(lens)))
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    n_batches = int(round(epochs * len(batches)))
    t0 = time.time()
    hist = []
    for step in range(n_batches):
        if step % len(batches) == 0:
            rng.shuffle(batches)
        idx = batches[step % len(batches)]
        L = torch.from_numpy(lens[idx])
        T = int(L.max())
        ids = torch.zeros(len(idx), T, dtype=torch.long)
        for j, k in enumerate(idx):
            ids[j, :lens[k]] = torch.from_numpy(seqs[k])
        h = torch.zeros(len(idx), d)
        c = torch.zeros(len(idx), d)
        p_sum = torch.zeros(())
        hard_sum = 0.0
        for t in range(T):
            x = E[ids[:, t]]
            zt = torch.cat([x, h], 1) @ w + w0
            p = torch.sigmoid(zt)
            u = torch.rand_like(p).clamp(1e-6, 1 - 1e-6)
            hard = ((zt + torch.log(u) - torch.log1p(-u)) > 0).float()
            sk = (hard + p - p.detach())[:, None]
            g = x @ W_ih.T + h @ W_hh.T + b
            i, f, gg, o = g.split(d, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            act = (L > t)
            a = act[:, None]
            h = torch.where(a, sk * h + (1 - sk) * h_new, h)
            c = torch.where(a, sk * c + (1 - sk) * c_new, c)
            p_sum = p_sum + (p * act).sum()
            hard_sum += float((hard * act).sum())
        logp = torch.log_softmax(h @ HW.T + Hb, 1)
        kl = (teacher[idx].exp() * (teacher[idx] - logp)).sum(1).mean()
        read_rate = 1 - p_sum / float(L.sum())
        loss = kl + penalty * read_rate
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((float(kl.detach()), hard_sum / float(L.sum())))
        if (step + 1) % max(1, len(batches) // 4) == 0 or step + 1 == n_batches:
            k, sr = np.mean(hist[-50:], 0)
            log(f"refine step {step + 1}/{n_batches}: KL {k:.4f}, skip rate (noisy) {sr:.3f}")
        if time_budget and time.time() - t0 > time_budget:
            log(f"refine: time budget reached at step {step + 1}")
            break
    Wn = np.zeros_like(Wd)
    Wn[1] = w.detach().numpy()
    bn = np.array([0.0, float(w0.detach()[0])], np.float32)
    return Wn, bn, {"penalty": penalty, "steps": step + 1, "batch": batch, "lr": lr, "max_len": max_len,
                    "epochs": round((step + 1) / len(batches), 3), "seconds": round(time.time() - t0, 1),
                    "final_kl": round(float(np.mean([k for k, _ in hist[-50:]])), 5)}


# --- evaluation with actual skipping (the compiled kernel, as served) ------------------------------
def run_one(base: Base, w: LayerWeights, ids: np.ndarray, threshold: float, kernel=None):
    """(logits, skipped, tokens) of one text through the skip layer (kernel: fast, else the reference)."""
    k = kernel or _kernel()
    out = k.run_layer(w, embed(base, ids), threshold)
    h = out.hs[-1] if len(ids) else np.zeros(base.d, np.float32)
    return base.head_W @ h + base.head_b, int(out.skim.sum()), len(ids)


def evaluate(base: Base, w: LayerWeights, seqs: list[np.ndarray], labels: np.ndarray, thresholds,
             base_pred: np.ndarray | None = None, kernel=None) -> list[dict]:
    """Per threshold: accuracy, agreement with the base's predictions, skip rate, FLOPs (service/flops.py:
    read steps + the predictor on every token + the head) against the base's (every step read + head)."""
    e, d = base.e, base.d
    head = F.head_flops(d, len(base.head_b))
    rows = []
    for thr in thresholds:
        pred = np.empty(len(seqs), np.int64)
        tokens = skipped = flops = full = 0
        for j, ids in enumerate(seqs):
            z, s, n = run_one(base, w, ids, thr, kernel)
            pred[j] = int(np.argmax(z))
            lc = F.layer_cost(e, d, 0, n, s, True)
            tokens += n
            skipped += s
            flops += lc.flops + head
            full += lc.flops_full + head
        row = {"threshold": thr, "accuracy": round(float((pred == labels).mean()), 6),
               "skip_rate": round(skipped / max(tokens, 1), 6),
               "flop_reduction": round(full / flops, 4), "flops_saved": round(1 - flops / full, 6),
               "tokens": tokens, "skipped": skipped}
        if base_pred is not None:
            row["agreement"] = round(float((pred == base_pred).mean()), 6)
        rows.append(row)
    return rows


def base_predictions(base: Base, seqs: list[np.ndarray], kernel=None) -> np.ndarray:
    k = kernel or _kernel()
    out = np.empty(len(seqs), np.int64)
    for j, ids in enumerate(seqs):
        r = k.run_layer(base.layer, embed(base, ids), 1.0)
        h = r.hs[-1] if len(ids) else np.zeros(base.d, np.float32)
        out[j] = int(np.argmax(base.head_W @ h + base.head_b))
    return out


def choose_threshold(rows: list[dict], base_acc: float, max_loss: float, min_saving: float) -> tuple[dict, str]:
    """The row saving the most FLOPs whose accuracy is at most max_loss (fraction) under the base's; ties go
    to the higher threshold.  Threshold 1.0 (never skips) when none qualifies."""
    ok = [r for r in rows if r["accuracy"] >= base_acc - max_loss - 1e-12]
    best = max(ok, key=lambda r: (r["flops_saved"], r["threshold"])) if ok else rows[-1]
    why = (f"the most FLOPs saved with dev accuracy at most {100 * max_loss:.2f} points under the base "
           f"({100 * base_acc:.2f}%)")
    if best["flops_saved"] < min_saving:
        why += f"; below the {100 * min_saving:.0f}% FLOP-saving target"
    return best, why


def score(rows, base_acc, max_loss) -> float:
    return choose_threshold(rows, base_acc, max_loss, 0.0)[0]["flops_saved"]


# --- the command -----------------------------------------------------------------------------------
def file_sha(folder: Path, name: str) -> str:
    return sha256_file(Path(folder) / name)


def step_features(base: Base, seqs: list[np.ndarray], kernel=None) -> np.ndarray:
    """[x_t; h_{t-1}] of every step of the unskipped run, in text order (the compiled kernel's states)."""
    k = kernel or _kernel()
    out = []
    for s in seqs:
        x = embed(base, s)
        hs = k.run_layer(base.layer, x, 1.0).hs
        out.append(np.concatenate([x, np.vstack([np.zeros((1, base.d), np.float32), hs[:-1]])], 1))
    return np.concatenate(out) if out else np.zeros((0, base.e + base.d), np.float32)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="folder of a dense LSTM classifier artifact (family 'lstm')")
    ap.add_argument("--out", required=True, help="artifact folder to write (family 'skip-lstm')")
    ap.add_argument("--name", help="model name (default: the --out folder's name)")
    ap.add_argument("--dataset", help="sst2 | mr | imdb (default: the base manifest's training.dataset)")
    ap.add_argument("--data-dir", help="dataset root (training/data.py)")
    ap.add_argument("--measure", choices=("output", "l2", "cosine"), default="output",
                    help="state change that labels steps: l2 / cosine of h_t - h_{t-1} (the note), or 'output': "
                         "that change measured along the final logit margin's gradient (first order)")
    ap.add_argument("--oracle-flips", type=float, default=0.01,
                    help="largest fraction of dev predictions the labelling oracle may change (tau's choice)")
    ap.add_argument("--max-loss", type=float, default=0.3, help="dev accuracy points the default may lose")
    ap.add_argument("--min-saving", type=float, default=0.25, help="FLOP saving the default should reach")
    ap.add_argument("--rounds", type=int, default=2, help="l2/cosine: 2 refits on states collected under skipping")
    ap.add_argument("--refine-penalties", type=float, nargs="*", default=[0.02, 0.05],
                    help="end-to-end refinement (frozen LSTM), one run per read-rate penalty; none: skip it")
    ap.add_argument("--refine-epochs", type=float, default=6)
    ap.add_argument("--refine-lr", type=float, default=1e-2)
    ap.add_argument("--max-len", type=int, default=0, help="training texts cut to their last N tokens (0: whole)")
    ap.add_argument("--train-limit", type=int, help="a seeded random N training texts (IMDb: time)")
    ap.add_argument("--max-steps", type=int, default=1_000_000, help="training steps kept for the fit (sampled)")
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--limit", type=int, help="first N examples of each split (smoke tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", default=time.strftime("%Y%m%d"))
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    base_dir = Path(args.base)
    base_sha = {WEIGHTS: file_sha(base_dir, WEIGHTS), VOCAB: file_sha(base_dir, VOCAB)}
    base = load_base(base_dir)
    dataset = args.dataset or base.dataset
    if not dataset:
        raise SystemExit(f"{base_dir}: manifest names no training.dataset; pass --dataset")
    log = lambda msg: print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)  # noqa: E731
    train_ex = data.load(dataset, "train", args.data_dir, args.limit)
    if args.train_limit and args.train_limit < len(train_ex):
        pick_ix = np.random.default_rng(args.seed).choice(len(train_ex), args.train_limit, replace=False)
        train_ex = [train_ex[k] for k in sorted(pick_ix)]
    dev_ex = data.load(dataset, "dev", args.data_dir, args.limit)
    tr_ids, tr_y = encode_texts(base, train_ex)
    if args.max_len:
        tr_ids = [s[-args.max_len:] for s in tr_ids]
    dv_ids, dv_y = encode_texts(base, dev_ex)
    n_steps = int(sum(len(s) for s in tr_ids))
    frac = min(1.0, args.max_steps / max(n_steps, 1))
    log(f"{dataset}: train {len(tr_ids)} texts / {n_steps} steps (keeping {frac:.3f}), dev {len(dv_ids)}")
    kern = _kernel()

    # 1. the state-change distribution on the training split (unskipped run)
    r1 = simulate(base, tr_ids, "none", record=1.0, rng=rng)
    stats = {"l2": quantiles(r1["l2"]), "cosine": quantiles(r1["cos"])}
    del r1
    if args.measure == "output":
        X1 = step_features(base, tr_ids, kern)
        change = np.concatenate(output_change(base, tr_ids)) if tr_ids else np.zeros(0, np.float32)
        stats["output"] = quantiles(change)
        if frac < 1:
            keep = rng.random(len(change)) < frac
            X1, change = X1[keep], change[keep]
    else:
        r1 = simulate(base, tr_ids, "none", record=frac, rng=rng)
        X1 = r1["features"]
        change = r1["l2"] if args.measure == "l2" else r1["cos"]
    log(f"state change quantiles: L2 {stats['l2']}; cosine {stats['cosine']}")

    # 2. tau on dev with the oracle
    dv_base = base_predictions(base, dv_ids, kern)
    base_dev_acc = float((dv_base == dv_y).mean())
    dev_tokens = int(sum(len(s) for s in dv_ids))
    dv_change = output_change(base, dv_ids) if args.measure == "output" else None
    null = skip_layer(base, np.zeros((2, base.e + base.d), np.float32), np.zeros(2, np.float32))

    def oracle_row(measure, tau, q):
        if measure == "output":  # skip exactly the labelled steps of the unskipped run (forced masks)
            pred, sk = [], 0
            for s, ch in zip(dv_ids, dv_change):
                m = ch < tau
                sk += int(m.sum())
                if hasattr(kern, "run_layer_forced"):
                    hs = kern.run_layer_forced(null, embed(base, s), m).hs
                else:
                    hs = simulate(base, [s], "none")["h_last"]  # pragma: no cover (no compiled kernel)
                pred.append(int(np.argmax(base.head_W @ hs[-1] + base.head_b)))
            pred = np.array(pred)
        else:  # online: skip where the change from the state actually held is below tau
            o = simulate(base, dv_ids, "oracle", tau=tau, measure=measure)
            pred, sk = np.argmax(logits_of(base, o["h_last"]), 1), int(o["skipped"].sum())
        return {"measure": measure, "quantile": q, "tau": round(float(tau), 6),
                "skip_rate": round(sk / max(dev_tokens, 1), 6), "accuracy": round(float((pred == dv_y).mean()), 6),
                "changed": round(float((pred != dv_base).mean()), 6)}

    oracle = []
    for measure in dict.fromkeys([args.measure, "l2", "cosine"]):
        ref = change if measure == args.measure else None
        for q in TAU_QUANTILES:
            if ref is None:  # the other measures: their training quantiles, for the record
                key = "l2" if measure == "l2" else "cosine"
                tau = stats[key].get(f"q{int(round(100 * q)):02d}")
                if tau is None:
                    continue
            else:
                tau = float(np.quantile(ref, q)) if len(ref) else 0.0
            oracle.append(oracle_row(measure, tau, q))
            log(f"oracle {oracle[-1]}")
    mine = [o for o in oracle if o["measure"] == args.measure]
    ok = [o for o in mine if o["changed"] <= args.oracle_flips]
    pick = max(ok, key=lambda o: o["tau"]) if ok else mine[0]
    tau = pick["tau"]
    log(f"labelling: {args.measure} < {tau} (train quantile {pick['quantile']})")

    # 3. fit; round 2 (l2 / cosine) refits on states collected under skipping; then end-to-end refinement
    y1 = (change < tau).astype(np.float32)
    Wd, bd, fit = fit_logistic(X1, y1, args.l2, seed=args.seed)
    rows = evaluate(base, skip_layer(base, Wd, bd), dv_ids, dv_y, THRESHOLDS, dv_base, kern)
    max_loss = args.max_loss / 100
    stages = [{"stage": "fit on labels", "fit": fit, "dev_sweep": rows, "score": score(rows, base_dev_acc, max_loss),
               "Wd": Wd, "bd": bd}]
    log(f"fit on labels: {fit}, dev FLOPs saved at the bar {stages[0]['score']:.3f}")
    if args.measure != "output":
        for rnd in range(2, args.rounds + 1):
            thr_c = choose_threshold(rows, base_dev_acc, max_loss, args.min_saving)[0]["threshold"]
            thr_c = 0.5 if thr_c >= 1.0 else thr_c
            r2 = simulate(base, tr_ids, "predictor", Wd=Wd, bd=bd, threshold=thr_c, record=frac, rng=rng)
            ch2 = r2["l2"] if args.measure == "l2" else r2["cos"]
            X1 = np.concatenate([X1, r2["features"]])
            y1 = np.concatenate([y1, (ch2 < tau).astype(np.float32)])
            Wd, bd, fit2 = fit_logistic(X1, y1, args.l2, seed=args.seed)
            rows = evaluate(base, skip_layer(base, Wd, bd), dv_ids, dv_y, THRESHOLDS, dv_base, kern)
            stages.append({"stage": f"round {rnd}: + states collected while skipping at t={thr_c}", "fit": fit2,
                           "dev_sweep": rows, "score": score(rows, base_dev_acc, max_loss), "Wd": Wd, "bd": bd,
                           "train_skip_rate_while_collecting": round(float(r2["skipped"].sum() / max(n_steps, 1)), 4)})
            log(f"{stages[-1]['stage']}: {fit2}, dev FLOPs saved at the bar {stages[-1]['score']:.3f}")
    start = max(stages, key=lambda r: r["score"])
    for pen in args.refine_penalties or []:
        Wr, br, rec = refine(base, tr_ids, start["Wd"], start["bd"], pen, epochs=args.refine_epochs,
                             lr=args.refine_lr, seed=args.seed, log=log)
        rows = evaluate(base, skip_layer(base, Wr, br), dv_ids, dv_y, THRESHOLDS, dv_base, kern)
        stages.append({"stage": f"end-to-end refinement, penalty {pen}", "refine": rec, "dev_sweep": rows,
                       "score": score(rows, base_dev_acc, max_loss), "Wd": Wr, "bd": br})
        log(f"{stages[-1]['stage']}: {rec}, dev FLOPs saved at the bar {stages[-1]['score']:.3f}")
    kept_i = max(range(len(stages)), key=lambda i: (stages[i]["score"], -i))
    kept = stages[kept_i]
    Wd, bd, rows = kept["Wd"], kept["bd"], kept["dev_sweep"]
    best, why = choose_threshold(rows, base_dev_acc, max_loss, args.min_saving)
    log(f"kept '{kept['stage']}'; default threshold {best['threshold']}: {best}")
    for st in stages:
        st.pop("Wd"), st.pop("bd")

    # 4. the artifact: only the predictor; the base by checksum
    out = Path(args.out)
    bm = base.manifest
    manifest = {
        "name": args.name or out.name, "version": args.version, "task": "classify", "family": FAMILY,
        "sizes": {"embed": base.e, "hidden": base.d, "small_hidden": 0},
        "labels": bm.get("labels"), "default_threshold": float(best["threshold"]),
        "tokenizer": bm.get("tokenizer", {}),
        "base": {"name": bm["name"], "version": str(bm.get("version")), "files": base_sha},
        "training": {
            "command": command_line("training.skip_predictor", argv),
            "dataset": dataset, "data": str(data.data_dir(args.data_dir) / dataset),
            "splits": {"train": len(tr_ids), "dev": len(dv_ids)}, "limit": args.limit,
            "train_limit": args.train_limit, "max_len": args.max_len,
            "method": "logistic skip predictor on [x_t; h_{t-1}] over the frozen base LSTM (docs/skip-predictor.md)",
            "predictor_parameters": int(Wd.shape[1] + 1),
            "predictor_fraction_of_lstm": round((Wd.shape[1] + 1) / (base.layer.W_ih.size + base.layer.W_hh.size
                                                                     + base.layer.b.size), 5),
            "state_change": {"train_steps": n_steps, "fit_steps": int(len(change)), **stats},
            "labelling": {"measure": args.measure, "tau": tau, "train_quantile": pick["quantile"],
                          "train_skip_label_fraction": round(float((change < tau).mean()), 4) if len(change) else 0.0,
                          "rule": f"skip iff the step's {args.measure} state change < tau; tau the largest "
                                  f"whose dev oracle changes <= {args.oracle_flips:.1%} of dev predictions",
                          "dev_oracle": oracle},
            "stages": stages, "kept_stage": kept["stage"],
            "base_dev_accuracy": round(base_dev_acc, 6),
            "dev_sweep": rows, "default_threshold_rule": why, "at_default": best,
            "max_loss_points": args.max_loss, "min_saving": args.min_saving,
            "seed": args.seed, "seconds": round(time.time() - t0, 1), "python": platform.python_version(),
            "kernel": getattr(kern, "NAME", "?"),
        },
    }
    weights = {"rnn.Wd": Wd.astype(np.float32), "rnn.bd": bd.astype(np.float32)}
    written = write_artifact(out, manifest, weights, base.vocab)
    assert {WEIGHTS: file_sha(base_dir, WEIGHTS), VOCAB: file_sha(base_dir, VOCAB)} == base_sha, "base modified"
    log(f"wrote {out / MANIFEST}")
    return written


if __name__ == "__main__":
    main()
