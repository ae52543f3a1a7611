"""PyTorch training-time models: a standard LSTM classifier and a Skim-LSTM classifier (Seo et al. 2018).

Parameter names and layouts match the runtime artifact (service/engine/layer.py): gate order i,f,g,o,
one summed bias, small cell W_hh over the whole h_{t-1}, decision layer on [x_t; h_{t-1}].
Training uses the Gumbel-softmax relaxation (soft mixture of the read and skim states, eq. 6), or with
`hard_gumbel` its straight-through form (the forward pass takes the sampled hard decision, as serving does;
gradients flow through the soft weights); eval mode uses hard decisions: skim iff p_skim > threshold.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LSTMClassifier(nn.Module):
    def __init__(self, emb: torch.Tensor, d: int, n_labels: int, dropout: float = 0.3, freeze_emb: bool = True,
                 emb_dropout: float | None = None):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(emb, freeze=freeze_emb, padding_idx=0)
        self.lstm = nn.LSTM(emb.shape[1], d, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.emb_drop = nn.Dropout(dropout if emb_dropout is None else emb_dropout)
        self.head = nn.Linear(d, n_labels)

    def forward(self, ids, lengths, **_):
        x = self.emb_drop(self.embedding(ids))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(self.drop(h[-1])), None

    def export_weights(self) -> dict:
        L = self.lstm
        return {"rnn.W_ih": L.weight_ih_l0, "rnn.W_hh": L.weight_hh_l0, "rnn.b": L.bias_ih_l0 + L.bias_hh_l0,
                "head.W": self.head.weight, "head.b": self.head.bias}


class SkimLSTMClassifier(nn.Module):
    def __init__(self, emb: torch.Tensor, d: int, d_small: int, n_labels: int, dropout: float = 0.3,
                 freeze_emb: bool = True, emb_dropout: float | None = None):
        super().__init__()
        e = emb.shape[1]
        self.d, self.ds = d, d_small
        self.embedding = nn.Embedding.from_pretrained(emb, freeze=freeze_emb, padding_idx=0)
        k, ks, kd = 1 / d ** 0.5, 1 / d_small ** 0.5, 1 / (e + d) ** 0.5
        u = lambda shape, s: nn.Parameter(torch.empty(shape).uniform_(-s, s))  # noqa: E731
        self.W_ih, self.W_hh, self.b = u((4 * d, e), k), u((4 * d, d), k), u((4 * d,), k)
        self.Ws_ih, self.Ws_hh, self.bs = u((4 * d_small, e), ks), u((4 * d_small, d), ks), u((4 * d_small,), ks)
        self.Wd, self.bd = u((2, e + d), kd), nn.Parameter(torch.zeros(2))
        self.drop = nn.Dropout(dropout)
        self.emb_drop = nn.Dropout(dropout if emb_dropout is None else emb_dropout)
        self.head = nn.Linear(d, n_labels)
        self.hard_gumbel = False  # straight-through Gumbel-softmax in training (training/train.py --hard-gumbel)
        self.fast_train = True   # training forward: fused projections and one fused step (same math)
        self.step_fn = skim_step  # may be replaced by a torch.compile'd skim_step (training/train.py --compile)

    def init_from_lstm(self, lstm: LSTMClassifier) -> None:
        """Start the big cell, embedding and head from a trained LSTM (stabler skim training)."""
        w = lstm.export_weights()
        with torch.no_grad():
            self.W_ih.copy_(w["rnn.W_ih"]), self.W_hh.copy_(w["rnn.W_hh"]), self.b.copy_(w["rnn.b"])
            self.head.weight.copy_(w["head.W"]), self.head.bias.copy_(w["head.b"])
            self.embedding.weight.copy_(lstm.embedding.weight)

    def forward(self, ids, lengths, tau: float = 1.0, threshold: float = 0.5):
        """Returns logits and (log p per step (B,T,2), skim decisions (B,T) in eval mode, valid mask)."""
        if self.training and self.fast_train:
            return self._forward_train_fast(ids, lengths, tau)
        B, T = ids.shape
        d, ds = self.d, self.ds
        x = self.emb_drop(self.embedding(ids))
        e = x.shape[-1]
        xb = self.big_input(x)                   # input parts for all steps at once
        xs = x @ self.Ws_ih.t() + self.bs
        xd = x @ self.Wd[:, :e].t() + self.bd
        Wd_h = self.Wd[:, e:]
        h = x.new_zeros(B, d)
        c = x.new_zeros(B, d)
        valid = (torch.arange(T, device=ids.device)[None, :] < lengths[:, None])
        logps, skims = [], []
        for t in range(T):
            z = xd[:, t] + h @ Wd_h.t()
            logp = F.log_softmax(z, dim=-1)
            h_r, c_r = lstm_cell(xb[:, t] + self.big_recurrent(h), c)
            h_s, c_s = lstm_cell(xs[:, t] + h @ self.Ws_hh.t(), c[:, :ds])
            h_s = torch.cat([h_s, h[:, ds:]], dim=1)
            c_s = torch.cat([c_s, c[:, ds:]], dim=1)
            if self.training:
                r = F.gumbel_softmax(logp, tau=tau, hard=self.hard_gumbel)
                skim_w = r[:, 1:2]
            else:
                skim_w = (torch.sigmoid(z[:, 1] - z[:, 0]) > threshold).float()[:, None]
                skims.append(skim_w[:, 0])
            h_new = (1 - skim_w) * h_r + skim_w * h_s
            c_new = (1 - skim_w) * c_r + skim_w * c_s
            m = valid[:, t:t + 1].float()
            h = m * h_new + (1 - m) * h
            c = m * c_new + (1 - m) * c
            logps.append(logp)
        logits = self.head(self.drop(h))
        return logits, (torch.stack(logps, 1), torch.stack(skims, 1) if skims else None, valid)

    def big_input(self, x):
        """The big cell's input products W_ih x + b (subclasses replace the product: training/antman.py)."""
        return x @ self.W_ih.t() + self.b

    def big_recurrent(self, h):
        return h @ self.W_hh.t()

    def _forward_train_fast(self, ids, lengths, tau: float, gumbel: torch.Tensor | None = None):
        """Training forward, the same function as the reference loop below (soft Gumbel-softmax mixture),
        organised for speed: the input parts of the big cell, small cell and decision layer are one
        matmul over all steps, and each step is one call of `skim_step` (one matmul with the stacked
        recurrent weights, then elementwise work that torch.compile fuses into a few kernels)."""
        B, T = ids.shape
        d, ds = self.d, self.ds
        x = self.emb_drop(self.embedding(ids))
        e = x.shape[-1]
        W_in = torch.cat([self.W_ih, self.Ws_ih, self.Wd[:, :e]], 0)        # (4d + 4d' + 2, e)
        b_in = torch.cat([self.b, self.bs, self.bd], 0)
        W_rec = torch.cat([self.W_hh, self.Ws_hh, self.Wd[:, e:]], 0)       # (4d + 4d' + 2, d)
        pre = torch.addmm(b_in, x.transpose(0, 1).reshape(T * B, e), W_in.t()).view(T, B, -1)
        if gumbel is None:  # Gumbel(0, 1) noise for every step, as F.gumbel_softmax draws it
            gumbel = -torch.empty(T, B, 2, device=x.device, dtype=x.dtype).exponential_().log()
        valid = (torch.arange(T, device=ids.device)[None, :] < lengths[:, None])
        mask = valid.t().contiguous().to(x.dtype).unsqueeze(-1)  # (T, B, 1); contiguous: the same strides every batch
        inv_tau = torch.full((), 1.0 / tau, device=x.device, dtype=x.dtype)
        # requires_grad on the zero start states: every step then sees the same input kinds (one compiled graph)
        h = x.new_zeros(B, d).requires_grad_()
        c = x.new_zeros(B, d).requires_grad_()
        logps = []
        for t, pre_t in enumerate(pre.unbind(0)):
            h, c, logp = self.step_fn(pre_t, h, c, W_rec, gumbel[t], inv_tau, mask[t], d, ds, self.hard_gumbel)
            logps.append(logp)
        logits = self.head(self.drop(h))
        return logits, (torch.stack(logps, 1), None, valid)

    def export_weights(self) -> dict:
        return {"rnn.W_ih": self.W_ih, "rnn.W_hh": self.W_hh, "rnn.b": self.b, "rnn.Ws_ih": self.Ws_ih,
                "rnn.Ws_hh": self.Ws_hh, "rnn.bs": self.bs, "rnn.Wd": self.Wd, "rnn.bd": self.bd,
                "head.W": self.head.weight, "head.b": self.head.bias}


def lstm_cell(gates, c):
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def skim_step(pre_t, h, c, W_rec, gumbel_t, inv_tau, m, d: int, ds: int, hard: bool = False):
    """One training step of the Skim-LSTM (soft mixture, or straight-through if hard), given the input parts
    `pre_t` of [big gates | small gates | decision logits] for this step. Same arithmetic as the reference
    loop of SkimLSTMClassifier.forward in training mode; F.gumbel_softmax(logp, tau) = softmax((logp + g) / tau)."""
    gates = torch.addmm(pre_t, h, W_rec.t())
    z = gates[:, 4 * d + 4 * ds:]
    logp = F.log_softmax(z, dim=-1)
    h_r, c_r = lstm_cell(gates[:, :4 * d], c)
    h_s, c_s = lstm_cell(gates[:, 4 * d:4 * d + 4 * ds], c[:, :ds])
    h_s = torch.cat([h_s, h[:, ds:]], dim=1)
    c_s = torch.cat([c_s, c[:, ds:]], dim=1)
    soft = F.softmax((logp + gumbel_t) * inv_tau, dim=-1)
    skim_w = soft[:, 1:2]
    if hard:  # the value of the sampled one-hot decision, the gradient of the soft weight (as F.gumbel_softmax)
        skim_w = (soft[:, 1:2] > soft[:, 0:1]).to(soft.dtype) - skim_w.detach() + skim_w
    h_new = (1 - skim_w) * h_r + skim_w * h_s
    c_new = (1 - skim_w) * c_r + skim_w * c_s
    return m * h_new + (1 - m) * h, m * c_new + (1 - m) * c, logp


def skim_loss(aux, gamma: float) -> torch.Tensor:
    """gamma * mean over real tokens of -log p_skim (eq. 8)."""
    logp, _, valid = aux
    return gamma * (-(logp[..., 1] * valid).sum() / valid.sum())


def lstm_from_weights(w: dict, emb: torch.Tensor, n_labels: int) -> LSTMClassifier:
    """An LSTMClassifier holding an artifact's LSTM and head weights (w: name -> tensor), over the word vectors
    emb (the artifact's own, or those of a vocabulary extended from it)."""
    m = LSTMClassifier(emb, w["rnn.W_hh"].shape[1], n_labels)
    with torch.no_grad():
        m.lstm.weight_ih_l0.copy_(w["rnn.W_ih"]), m.lstm.weight_hh_l0.copy_(w["rnn.W_hh"])
        m.lstm.bias_ih_l0.copy_(w["rnn.b"]), m.lstm.bias_hh_l0.zero_()
        m.head.weight.copy_(w["head.W"]), m.head.bias.copy_(w["head.b"])
    return m


def from_artifact(artifact) -> nn.Module:
    """Rebuild the PyTorch model from a shipped artifact's numpy weights (for equivalence tests)."""
    w = {k: torch.tensor(v) for k, v in artifact.weights.items()}
    sizes = artifact.manifest["sizes"]
    n_labels = len(artifact.manifest["labels"])
    if artifact.manifest["family"].startswith("antman"):
        from .antman import from_artifact as antman_from_artifact  # antman.py builds on this module
        return antman_from_artifact(artifact)
    if artifact.manifest["family"] == "lstm":
        m = lstm_from_weights(w, w["embedding"], n_labels)
    else:
        m = SkimLSTMClassifier(w["embedding"], sizes["hidden"], sizes["small_hidden"], n_labels)
        with torch.no_grad():
            for k, v in m.export_weights().items():
                v.copy_(w[k])
    return m.eval()
