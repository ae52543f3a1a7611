"""PyTorch LSTM+Attention reader for extractive QA (Seo et al. 2018, section 4.2 and appendix A.1),
dense or with every LSTM (2 layers x 2 directions) a Skim-LSTM.

  x_t, q_i    frozen GloVe 50d rows of context / question words (the fp16-rounded table that ships)
  a_t         softmax_i(w^T [x_t; q_i; x_t * q_i]) over the real question words, u_t = sum_i a_ti q_i
  layer 0     BiLSTM over [x_t; u_t; x_t * u_t] (150), d = 100 per direction
  layer 1     BiLSTM over [h0fw_t; h0bw_t] (200)
  logits      start_t = start.w . [h1fw_t; h1bw_t] + start.b, end likewise; loss CE(start) + CE(end)

The backward direction is the forward recurrence run over the reversed unpadded sequence, its outputs
reversed back to token order (what torch.nn.LSTM does on a packed sequence). The big cells are the
nn.LSTM parameters in both families (dense pretraining then skim fine-tuning shares them). Skim layers
add per direction a small cell (d') and a decision layer on [x_t; h_{t-1}], with the artifact layout of
service/engine/layer.py (prefix "l{0,1}.{fw,bw}."). Training: Gumbel-softmax (soft, or straight-through
with hard_gumbel) as training/torch_models.SkimLSTMClassifier; eval: skim iff
float32(sigmoid(z_skim - z_read)) > float32(threshold), one threshold per layer.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .torch_models import lstm_cell, skim_loss  # noqa: F401  (skim_loss re-exported for train_qa)

LAYER_NAMES = ("l0.fw", "l0.bw", "l1.fw", "l1.bw")
NEG = -1e30


def reverse_within_length(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) gather index reversing each sequence's first `length` positions, padding left in place
    (an involution: applying it twice restores token order)."""
    ar = torch.arange(T, device=lengths.device)[None, :]
    idx = lengths[:, None] - 1 - ar
    return torch.where(idx >= 0, idx, ar.expand_as(idx))


def _gather_t(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) reordered along T by idx (B, T)."""
    shape = idx.shape + (1,) * (x.dim() - 2)
    return torch.gather(x, 1, idx.view(shape).expand_as(x))


class QAReader(nn.Module):
    def __init__(self, emb: torch.Tensor, d: int = 100, d_small: int = 20, skim: bool = False, dropout: float = 0.2):
        super().__init__()
        e = emb.shape[1]
        self.e, self.d, self.ds, self.skim = e, d, d_small, skim
        self.embedding = nn.Embedding.from_pretrained(emb.float(), freeze=True, padding_idx=0)
        self.att_w = nn.Parameter(torch.empty(3 * e).uniform_(-(3 * e) ** -0.5, (3 * e) ** -0.5))
        self.lstm0 = nn.LSTM(3 * e, d, batch_first=True, bidirectional=True)
        self.lstm1 = nn.LSTM(2 * d, d, batch_first=True, bidirectional=True)
        self.start = nn.Linear(2 * d, 1)
        self.end = nn.Linear(2 * d, 1)
        self.drop = nn.Dropout(dropout)
        self.use_skim = skim        # False: the big cells alone (dense pretraining of a skim model)
        self.hard_gumbel = False
        if skim:
            ds = d_small
            for layer, e_l in ((0, 3 * e), (1, 2 * d)):
                ks, kd = ds ** -0.5, (e_l + d) ** -0.5
                u = lambda shape, s: nn.Parameter(torch.empty(shape).uniform_(-s, s))  # noqa: E731
                setattr(self, f"Ws_ih{layer}", u((2, 4 * ds, e_l), ks))
                setattr(self, f"Ws_hh{layer}", u((2, 4 * ds, d), ks))
                setattr(self, f"bs{layer}", u((2, 4 * ds), ks))
                setattr(self, f"Wd{layer}", u((2, 2, e_l + d), kd))
                setattr(self, f"bd{layer}", nn.Parameter(torch.zeros(2, 2)))

    # ---- pieces -------------------------------------------------------------------------------------
    def attend(self, x, q, qmask):
        """x (B,T,e), q (B,Q,e), qmask (B,Q) bool -> [x; u; x*u] (B,T,3e)."""
        e = self.e
        w1, w2, w3 = self.att_w[:e], self.att_w[e:2 * e], self.att_w[2 * e:]
        scores = (x @ w1)[:, :, None] + (q @ w2)[:, None, :] + torch.bmm(x * w3, q.transpose(1, 2))
        scores = scores.masked_fill(~qmask[:, None, :], float("-inf"))
        u = torch.bmm(torch.softmax(scores, dim=-1), q)
        return torch.cat([x, u, x * u], dim=-1)

    def big(self, layer: int):
        L = getattr(self, f"lstm{layer}")
        W_ih = torch.stack([L.weight_ih_l0, L.weight_ih_l0_reverse])
        W_hh = torch.stack([L.weight_hh_l0, L.weight_hh_l0_reverse])
        b = torch.stack([L.bias_ih_l0 + L.bias_hh_l0, L.bias_ih_l0_reverse + L.bias_hh_l0_reverse])
        return W_ih, W_hh, b

    def _dense_layer(self, x, lengths, layer: int):
        L = getattr(self, f"lstm{layer}")
        T = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = L(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        return out, None

    def _skim_layer(self, x, lengths, layer: int, tau: float, threshold: float):
        """Both directions in one batched recurrence. Returns (B,T,2d) outputs in token order and
        (logp (2,B,T,2), p_skim (2,B,T), skim (2,B,T) bool or None), direction 0 = fw, 1 = bw, token order."""
        B, T, e = x.shape
        d, ds = self.d, self.ds
        rev = reverse_within_length(lengths, T)
        X = torch.stack([x, _gather_t(x, rev)])                               # (2,B,T,e)
        W_ih, W_hh, b = self.big(layer)
        Ws_ih, Ws_hh, bs = getattr(self, f"Ws_ih{layer}"), getattr(self, f"Ws_hh{layer}"), getattr(self, f"bs{layer}")
        Wd, bd = getattr(self, f"Wd{layer}"), getattr(self, f"bd{layer}")
        W_in = torch.cat([W_ih, Ws_ih, Wd[:, :, :e]], 1)                        # (2,G,e)
        b_in = torch.cat([b, bs, bd], 1)                                       # (2,G)
        W_rec_t = torch.cat([W_hh, Ws_hh, Wd[:, :, e:]], 1).transpose(1, 2)    # (2,d,G)
        G = W_in.shape[1]
        pre = (torch.bmm(X.reshape(2, B * T, e), W_in.transpose(1, 2)) + b_in[:, None, :]).view(2, B, T, G)
        pre = pre.permute(2, 0, 1, 3)                                          # (T,2,B,G)
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]   # (B,T)
        mask = valid.t()[:, None, :, None]                                      # (T,1,B,1)
        h = x.new_zeros(2, B, d)
        c = x.new_zeros(2, B, d)
        training = self.training
        if training:
            gumbel = -torch.empty(T, 2, B, 2, device=x.device, dtype=x.dtype).exponential_().log()
            inv_tau = 1.0 / tau
        thr = torch.tensor(threshold, dtype=torch.float32, device=x.device)  # float32(threshold)
        hs, logps, ps, skims = [], [], [], []
        for t in range(T):
            gates = torch.baddbmm(pre[t], h, W_rec_t)
            z = gates[..., 4 * d + 4 * ds:]
            logp = F.log_softmax(z, dim=-1)
            h_r, c_r = lstm_cell(gates[..., :4 * d], c)
            h_s, c_s = lstm_cell(gates[..., 4 * d:4 * d + 4 * ds], c[..., :ds])
            h_s = torch.cat([h_s, h[..., ds:]], dim=-1)
            c_s = torch.cat([c_s, c[..., ds:]], dim=-1)
            if training:
                soft = F.softmax((logp + gumbel[t]) * inv_tau, dim=-1)
                w = soft[..., 1:2]
                if self.hard_gumbel:
                    w = (soft[..., 1:2] > soft[..., 0:1]).to(soft.dtype) - w.detach() + w
                h_new = (1 - w) * h_r + w * h_s
                c_new = (1 - w) * c_r + w * c_s
            else:
                p = torch.sigmoid(z[..., 1] - z[..., 0])
                sk = p > thr
                h_new = torch.where(sk[..., None], h_s, h_r)
                c_new = torch.where(sk[..., None], c_s, c_r)
                ps.append(p), skims.append(sk)
            m = mask[t]
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            hs.append(h)
            logps.append(logp)
        H = torch.stack(hs, 2)                                                 # (2,B,T,d)
        out = torch.cat([H[0], _gather_t(H[1], rev)], dim=-1)
        back = lambda a: torch.stack([a[0], _gather_t(a[1], rev)])  # noqa: E731  (bw direction to token order)
        logp = back(torch.stack(logps, 2))
        if training:
            return out, (logp, None, None)
        return out, (logp, back(torch.stack(ps, 2)), back(torch.stack(skims, 2)))

    # ---- forward --------------------------------------------------------------------------------------
    def forward(self, ctx, clen, q, qlen, tau: float = 1.0, thresholds=(0.5, 0.5)):
        """ctx (B,T), q (B,Q) padded with 0; clen, qlen (B,). Returns start, end logits (B,T) (padding at
        NEG) and aux: list of 2 per-layer tuples (logp, p_skim, skim) or None (dense path), valid (B,T)."""
        T = ctx.shape[1]
        valid = torch.arange(T, device=ctx.device)[None, :] < clen[:, None]
        qmask = torch.arange(q.shape[1], device=q.device)[None, :] < qlen[:, None]
        x = self.embedding(ctx)
        qe = self.embedding(q)
        h = self.drop(self.attend(x, qe, qmask))
        aux = []
        for layer in (0, 1):
            if self.use_skim:
                h, a = self._skim_layer(h, clen, layer, tau, float(thresholds[layer]))
            else:
                h, a = self._dense_layer(h, clen, layer)
            aux.append(a)
            h = self.drop(h)
        s = self.start(h)[..., 0].masked_fill(~valid, NEG)
        e = self.end(h)[..., 0].masked_fill(~valid, NEG)
        return s, e, (aux, valid)

    # ---- artifact ---------------------------------------------------------------------------------------
    def export_weights(self) -> dict[str, np.ndarray]:
        """The artifact's weights (float32 numpy, the embedding float16)."""
        f = lambda t: t.detach().cpu().float().numpy().copy()  # noqa: E731
        w = {"embedding": self.embedding.weight.detach().cpu().numpy().astype(np.float16),
             "att.w": f(self.att_w)}
        for layer in (0, 1):
            W_ih, W_hh, b = self.big(layer)
            for k, D in enumerate(("fw", "bw")):
                p = f"l{layer}.{D}."
                w[p + "W_ih"], w[p + "W_hh"], w[p + "b"] = f(W_ih[k]), f(W_hh[k]), f(b[k])
                if self.skim:
                    for name in ("Ws_ih", "Ws_hh", "bs", "Wd", "bd"):
                        w[p + name] = f(getattr(self, f"{name}{layer}")[k])
        w["start.w"], w["start.b"] = f(self.start.weight[0]), f(self.start.bias)
        w["end.w"], w["end.b"] = f(self.end.weight[0]), f(self.end.bias)
        return w

    def load_weights(self, w: dict, strict_skim: bool = True) -> None:
        """Copy artifact-layout weights (name -> array) in; the big cells' bias goes to bias_ih (bias_hh = 0).
        Skim parameters are copied where present (a dense artifact loads into a skim model's big cells)."""
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        with torch.no_grad():
            if "embedding" in w:
                self.embedding.weight.copy_(t(w["embedding"]))
            self.att_w.copy_(t(w["att.w"]))
            for layer in (0, 1):
                L = getattr(self, f"lstm{layer}")
                for D, suf in (("fw", ""), ("bw", "_reverse")):
                    p = f"l{layer}.{D}."
                    getattr(L, f"weight_ih_l0{suf}").copy_(t(w[p + "W_ih"]))
                    getattr(L, f"weight_hh_l0{suf}").copy_(t(w[p + "W_hh"]))
                    getattr(L, f"bias_ih_l0{suf}").copy_(t(w[p + "b"]))
                    getattr(L, f"bias_hh_l0{suf}").zero_()
                    if self.skim and (p + "Wd") in w:
                        k = 0 if D == "fw" else 1
                        for name in ("Ws_ih", "Ws_hh", "bs", "Wd", "bd"):
                            getattr(self, f"{name}{layer}")[k].copy_(t(w[p + name]))
            self.start.weight[0].copy_(t(w["start.w"])), self.start.bias.copy_(t(w["start.b"]))
            self.end.weight[0].copy_(t(w["end.w"])), self.end.bias.copy_(t(w["end.b"]))


def from_artifact(artifact) -> QAReader:
    """Rebuild the reader (eval mode, CPU, float32) from a shipped artifact's numpy weights."""
    w = artifact.weights
    sizes = artifact.manifest["sizes"]
    skim = artifact.manifest["family"] == "skim-lstm"
    m = QAReader(torch.as_tensor(np.asarray(w["embedding"], np.float32)), sizes["hidden"],
                 sizes.get("small_hidden", 20), skim=skim, dropout=0.0)
    m.load_weights(w)
    return m.eval()


@torch.no_grad()
def infer(model: QAReader, ctx_ids, q_ids, thresholds=(0.5, 0.5)):
    """One example, no batch padding, eval mode. Returns start logits (T,), end logits (T,) as float32 numpy,
    and per layer-direction name -> (skim bool (T,), p_skim float32 (T,)), both in token order (all False
    and 0 for a dense model)."""
    was = model.training
    model.eval()
    dev = model.att_w.device
    ctx = torch.as_tensor(np.asarray(ctx_ids, np.int64), device=dev)[None]
    q = torch.as_tensor(np.asarray(q_ids, np.int64), device=dev)[None]
    T = ctx.shape[1]
    s, e, (aux, _) = model(ctx, torch.tensor([T], device=dev), q, torch.tensor([q.shape[1]], device=dev),
                           thresholds=thresholds)
    model.train(was)
    out = {}
    for layer in (0, 1):
        for k, D in enumerate(("fw", "bw")):
            if aux[layer] is None:
                out[f"l{layer}.{D}"] = (np.zeros(T, bool), np.zeros(T, np.float32))
            else:
                _, p, sk = aux[layer]
                out[f"l{layer}.{D}"] = (sk[k, 0].cpu().numpy().astype(bool), p[k, 0].cpu().numpy().astype(np.float32))
    return s[0].cpu().numpy().astype(np.float32), e[0].cpu().numpy().astype(np.float32), out


def qa_loss(s, e, span):
    """CE of the start + CE of the end; span (B, 2) token indices."""
    return F.cross_entropy(s, span[:, 0]) + F.cross_entropy(e, span[:, 1])


def span_kd_loss(s, e, ts, te, temp: float = 1.0) -> torch.Tensor:
    """temp^2 * (KL(teacher || student) of the start distributions + the same for the end), batch mean.
    Padding sits at NEG in both, so it carries no mass and adds nothing."""
    kl = lambda a, b: F.kl_div(F.log_softmax(a / temp, -1), F.log_softmax(b / temp, -1),  # noqa: E731
                               log_target=True, reduction="batchmean")
    return temp * temp * (kl(s, ts) + kl(e, te))


def skim_loss_qa(aux_valid, gamma: float) -> torch.Tensor:
    """gamma * mean over real tokens of all 4 layer-directions of -log p_skim (training/torch_models.skim_loss)."""
    aux, valid = aux_valid
    logp = torch.cat([a[0] for a in aux], 0)                  # (4,B,T,2)
    return skim_loss((logp, None, valid[None].expand(logp.shape[0], -1, -1)), gamma)


def decode_spans(s, e, max_answer_tokens: int = 15):
    """Batched span decoding: (i, j), i <= j < i + max_answer_tokens, maximising s[i] + e[j] (first max)."""
    B, T = s.shape
    scores = s[:, :, None] + e[:, None, :]
    i = torch.arange(T, device=s.device)
    band = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_tokens)
    scores = scores.masked_fill(~band[None], float("-inf"))
    flat = scores.view(B, -1).argmax(-1)
    return flat // T, flat % T
