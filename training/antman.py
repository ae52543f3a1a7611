"""AntMan compression modules and layers in PyTorch (Wang et al., "AntMan: Sparse Low-Rank Compression to
Accelerate RNN inference", sections 3.1-3.5), for training.

A module replaces one matrix-vector product y = A x (A of size m x n) of an LSTM: W_ih x (m = 4d, n = e)
or W_hh h (m = 4d, n = d). The parameters and their layout are the artifact contract
(docs/antman-training.md, the runtime's `antman-lstm` / `antman-skim-lstm` cells):
- dense:        W (m, n)                                       y = W x
- lgp-shuffle:  blocks (g, m/g, n/g)                           V[k] = blocks[k] @ x_k, y = V.T.reshape(m)
                                                               (shuffle = transpose: y[j*g + k] = V[k, j])
- lgp-dense:    blocks (g, m/g, n/g), mix (n, n) if n <= m     y = blockdiag(blocks) @ (mix @ x)
                                      mix (m, m) if m < n      y = mix @ (blockdiag(blocks) @ x)
- lowrank-lgp:  in_blocks (gi, k/gi, n/gi), mix (k, k), out_blocks (go, m/go, k/go), k = n / r
                                                               y = blockdiag(out) @ (mix @ (blockdiag(in) @ x))
Every module gives `forward` (any leading dims), `dense()` (the explicit m x n matrix, for tests and
exports checks), `export(name)` (artifact tensors) and `cost()` (multiply-adds per product, Table 1).

Layers: `AntManLSTM` (the input product for all tokens at once, the hidden product in the time loop; padded
steps keep the state, so the final state is the one after each text's last token, as nn.LSTM over a packed
batch), `AntManClassifier` (frozen embedding, AntManLSTM, linear head) and `AntManSkimClassifier` (the
Skim-LSTM of training/torch_models.py with its big cell's two products replaced by modules).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from service.flops import ELEMENTWISE_PER_UNIT

from .torch_models import SkimLSTMClassifier, lstm_cell

MODULES = ("dense", "lgp-shuffle", "lgp-dense", "lowrank-lgp")


def _uniform(shape, fan_in: int) -> nn.Parameter:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's LSTM init with the factor's own fan-in: a block of an
    LGP of the hidden product then starts with the output variance of the dense matrix it replaces."""
    s = 1.0 / fan_in ** 0.5
    return nn.Parameter(torch.empty(shape).uniform_(-s, s))


def blockdiag_apply(blocks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """blockdiag(blocks) @ x over x's last dim: rows [k*r:(k+1)*r] = blocks[k] @ x[k*c:(k+1)*c]."""
    g, r, c = blocks.shape
    xs = x.reshape(*x.shape[:-1], g, c)
    return torch.einsum("...gc,grc->...gr", xs, blocks).reshape(*x.shape[:-1], g * r)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class Dense(nn.Module):
    kind = "dense"

    def __init__(self, m: int, n: int, fan_in: int | None = None):
        super().__init__()
        self.m, self.n = m, n
        self.W = _uniform((m, n), fan_in or n)

    def forward(self, x):
        return x @ self.W.t()

    def dense(self):
        return self.W

    def export(self, name: str) -> dict:
        return {name: self.W}

    def cost(self) -> int:
        return self.m * self.n

    def spec(self) -> dict:
        return {"module": "dense"}


class LGPShuffle(nn.Module):
    kind = "lgp-shuffle"

    def __init__(self, m: int, n: int, groups: int):
        super().__init__()
        _check(m % groups == 0 and n % groups == 0, f"lgp-shuffle: groups {groups} must divide m={m} and n={n}")
        self.m, self.n, self.g = m, n, groups
        self.blocks = _uniform((groups, m // groups, n // groups), n // groups)

    def forward(self, x):
        g = self.g
        v = blockdiag_apply(self.blocks, x).reshape(*x.shape[:-1], g, self.m // g)  # V (g, m/g) per row
        return v.transpose(-1, -2).reshape(*x.shape[:-1], self.m)                  # y[j*g + k] = V[k, j]

    def dense(self):
        g, r = self.g, self.m // self.g
        bd = torch.block_diag(*self.blocks)                          # row k*r + j: group k, output j
        order = torch.arange(self.m).view(g, r).t().reshape(-1)     # y[j*g + k] = row k*r + j
        return bd[order]

    def export(self, name: str) -> dict:
        return {name + ".blocks": self.blocks}

    def cost(self) -> int:
        return self.m * self.n // self.g

    def spec(self) -> dict:
        return {"module": "lgp-shuffle", "groups": self.g}


class LGPDense(nn.Module):
    kind = "lgp-dense"

    def __init__(self, m: int, n: int, groups: int):
        super().__init__()
        _check(m % groups == 0 and n % groups == 0, f"lgp-dense: groups {groups} must divide m={m} and n={n}")
        self.m, self.n, self.g = m, n, groups
        self.mix_before = n <= m
        q = n if self.mix_before else m
        self.blocks = _uniform((groups, m // groups, n // groups), n // groups)
        self.mix = _uniform((q, q), q)

    def forward(self, x):
        if self.mix_before:
            return blockdiag_apply(self.blocks, x @ self.mix.t())
        return blockdiag_apply(self.blocks, x) @ self.mix.t()

    def dense(self):
        bd = torch.block_diag(*self.blocks)
        return bd @ self.mix if self.mix_before else self.mix @ bd

    def export(self, name: str) -> dict:
        return {name + ".blocks": self.blocks, name + ".mix": self.mix}

    def cost(self) -> int:
        return self.m * self.n // self.g + min(self.m, self.n) ** 2

    def spec(self) -> dict:
        return {"module": "lgp-dense", "groups": self.g}


class LowRankLGP(nn.Module):
    kind = "lowrank-lgp"

    def __init__(self, m: int, n: int, groups_in: int, groups_out: int, rank: int):
        super().__init__()
        _check(n % rank == 0, f"lowrank-lgp: rank factor {rank} must divide n={n}")
        k = n // rank
        _check(k % groups_in == 0 and n % groups_in == 0, f"lowrank-lgp: groups_in {groups_in} must divide n={n}, k={k}")
        _check(m % groups_out == 0 and k % groups_out == 0,
               f"lowrank-lgp: groups_out {groups_out} must divide m={m}, k={k}")
        self.m, self.n, self.k, self.gi, self.go, self.r = m, n, k, groups_in, groups_out, rank
        self.in_blocks = _uniform((groups_in, k // groups_in, n // groups_in), n // groups_in)
        self.mix = _uniform((k, k), k)
        self.out_blocks = _uniform((groups_out, m // groups_out, k // groups_out), k // groups_out)

    def forward(self, x):
        return blockdiag_apply(self.out_blocks, blockdiag_apply(self.in_blocks, x) @ self.mix.t())

    def dense(self):
        return torch.block_diag(*self.out_blocks) @ self.mix @ torch.block_diag(*self.in_blocks)

    def export(self, name: str) -> dict:
        return {name + ".in_blocks": self.in_blocks, name + ".mix": self.mix, name + ".out_blocks": self.out_blocks}

    def cost(self) -> int:
        # Table 1: m*n/(r*go) + n*n/(r*gi) + n^2/r^2, i.e. the three factors' sizes
        return self.m * self.k // self.go + self.k * self.n // self.gi + self.k * self.k

    def spec(self) -> dict:
        return {"module": "lowrank-lgp", "groups_in": self.gi, "groups_out": self.go, "rank": self.r}


def make_module(spec: dict, m: int, n: int) -> nn.Module:
    """The module a manifest `compression` entry names, e.g. {"module": "lgp-shuffle", "groups": 10}."""
    kind = spec.get("module")
    if kind == "dense":
        return Dense(m, n)
    if kind == "lgp-shuffle":
        return LGPShuffle(m, n, int(spec["groups"]))
    if kind == "lgp-dense":
        return LGPDense(m, n, int(spec["groups"]))
    if kind == "lowrank-lgp":
        return LowRankLGP(m, n, int(spec["groups_in"]), int(spec["groups_out"]), int(spec["rank"]))
    raise ValueError(f"unknown AntMan module {kind!r} (known: {', '.join(MODULES)})")


def parse_spec(text: str) -> dict:
    """A module from the command line: 'dense', 'lgp-shuffle:10', 'lgp-dense:5', 'lowrank-lgp:GI,GO,R'."""
    kind, _, arg = text.partition(":")
    if kind == "dense":
        return {"module": "dense"}
    if kind in ("lgp-shuffle", "lgp-dense"):
        return {"module": kind, "groups": int(arg)}
    if kind == "lowrank-lgp":
        gi, go, r = (int(v) for v in arg.split(","))
        return {"module": kind, "groups_in": gi, "groups_out": go, "rank": r}
    raise ValueError(f"unknown AntMan module {text!r} (known: {', '.join(MODULES)})")


def dense_from_export(weights: dict, prefix: str, name: str, spec: dict) -> np.ndarray:
    """NumPy: the explicit dense matrix of an exported product (the contract's math, independent of torch)."""
    def bd(blocks):
        g, r, c = blocks.shape
        out = np.zeros((g * r, g * c), dtype=np.float64)
        for k in range(g):
            out[k * r:(k + 1) * r, k * c:(k + 1) * c] = blocks[k]
        return out

    key = prefix + name
    kind = spec["module"]
    if kind == "dense":
        return np.asarray(weights[key], dtype=np.float64)
    if kind == "lgp-shuffle":
        blocks = np.asarray(weights[key + ".blocks"], dtype=np.float64)
        g, r, c = blocks.shape
        A = np.zeros((g * r, g * c))
        for k in range(g):
            for j in range(r):
                A[j * g + k, k * c:(k + 1) * c] = blocks[k, j]
        return A
    if kind == "lgp-dense":
        B, M = bd(np.asarray(weights[key + ".blocks"], dtype=np.float64)), np.asarray(weights[key + ".mix"], np.float64)
        m, n = B.shape
        return B @ M if n <= m else M @ B  # mix before the blocks when n <= m, after them when m < n
    if kind == "lowrank-lgp":
        return (bd(np.asarray(weights[key + ".out_blocks"], np.float64)) @ np.asarray(weights[key + ".mix"], np.float64)
                @ bd(np.asarray(weights[key + ".in_blocks"], np.float64)))
    raise ValueError(f"unknown AntMan module {kind!r}")


def read_flops(d: int, ih_cost: int, hh_cost: int) -> int:
    """FLOPs of one read step: multiply-add = 2 FLOPs plus service/flops.py's elementwise term, as the
    contract counts an AntMan cell. Used to size students by their reduction against the dense teacher."""
    return 2 * (ih_cost + hh_cost) + ELEMENTWISE_PER_UNIT * d


class AntManLSTM(nn.Module):
    """One LSTM layer whose products W_ih x and W_hh h are AntMan modules; gate order i, f, g, o, one bias b."""

    def __init__(self, e: int, d: int, ih_spec: dict, hh_spec: dict):
        super().__init__()
        self.e, self.d = e, d
        self.ih = make_module(ih_spec, 4 * d, e)
        self.hh = make_module(hh_spec, 4 * d, d)
        self.b = _uniform((4 * d,), d)

    def forward(self, x, lengths):
        """x (B, T, e), lengths (B,) -> the state after each sequence's last real token (B, d)."""
        B, T, _ = x.shape
        pre = self.ih(x) + self.b                                   # the input products of all steps at once
        valid = (torch.arange(T, device=x.device)[None, :] < lengths[:, None])[:, :, None]
        h = x.new_zeros(B, self.d)
        c = x.new_zeros(B, self.d)
        for t in range(T):
            h_new, c_new = lstm_cell(pre[:, t] + self.hh(h), c)
            m = valid[:, t]
            h = torch.where(m, h_new, h)                             # padding keeps the state
            c = torch.where(m, c_new, c)
        return h

    def compression(self) -> dict:
        return {"W_ih": self.ih.spec(), "W_hh": self.hh.spec()}

    def export(self, prefix: str) -> dict:
        return {**self.ih.export(prefix + "W_ih"), **self.hh.export(prefix + "W_hh"), prefix + "b": self.b}

    def read_cost(self) -> int:
        return read_flops(self.d, self.ih.cost(), self.hh.cost())


class AntManClassifier(nn.Module):
    """Frozen embedding -> AntManLSTM -> linear head; the forward signature of torch_models.LSTMClassifier."""

    def __init__(self, emb: torch.Tensor, d: int, n_labels: int, ih_spec: dict, hh_spec: dict,
                 dropout: float = 0.3, emb_dropout: float | None = None):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(emb, freeze=True, padding_idx=0)
        self.rnn = AntManLSTM(emb.shape[1], d, ih_spec, hh_spec)
        self.drop = nn.Dropout(dropout)
        self.emb_drop = nn.Dropout(dropout if emb_dropout is None else emb_dropout)
        self.head = nn.Linear(d, n_labels)

    def forward(self, ids, lengths, **_):
        h = self.rnn(self.emb_drop(self.embedding(ids)), lengths)
        return self.head(self.drop(h)), None

    def export_weights(self) -> dict:
        """The artifact's own tensors (the embedding comes from the base model)."""
        return {**self.rnn.export("rnn."), "head.W": self.head.weight, "head.b": self.head.bias}


class AntManSkimClassifier(SkimLSTMClassifier):
    """torch_models.SkimLSTMClassifier with the big cell's products as AntMan modules: the small cell, the
    decision layer, the Gumbel-softmax training and the threshold rule are the parent's (its reference loop;
    the fused fast path stacks dense matrices, so it is off)."""

    def __init__(self, emb: torch.Tensor, d: int, d_small: int, n_labels: int, ih_spec: dict, hh_spec: dict,
                 dropout: float = 0.3, emb_dropout: float | None = None):
        super().__init__(emb, d, d_small, n_labels, dropout, True, emb_dropout)
        del self.W_ih, self.W_hh, self.b
        self.big = AntManLSTM(emb.shape[1], d, ih_spec, hh_spec)
        self.fast_train = False

    def big_input(self, x):
        return self.big.ih(x) + self.big.b

    def big_recurrent(self, h):
        return self.big.hh(h)

    def forward_read(self, ids, lengths):
        """Every token read by the big cell (no decisions): the warm-up phase trains the big cell and head
        as a plain AntMan student before the small cell and decision layer join."""
        return self.head(self.drop(self.big(self.emb_drop(self.embedding(ids)), lengths))), None

    def export_weights(self) -> dict:
        return {**self.big.export("rnn."), "rnn.Ws_ih": self.Ws_ih, "rnn.Ws_hh": self.Ws_hh, "rnn.bs": self.bs,
                "rnn.Wd": self.Wd, "rnn.bd": self.bd, "head.W": self.head.weight, "head.b": self.head.bias}


def from_artifact(artifact) -> nn.Module:
    """The PyTorch model of a shipped antman-lstm / antman-skim-lstm artifact (its base's embedding merged
    in), in eval mode: the training-side oracle the served model is tested against."""
    m = artifact.manifest
    w = {k: torch.tensor(v) for k, v in artifact.weights.items()}
    ih, hh = m["compression"]["W_ih"], m["compression"]["W_hh"]
    d, n_labels = m["sizes"]["hidden"], len(m["labels"])
    if m["family"] == "antman-lstm":
        model = AntManClassifier(w["embedding"], d, n_labels, ih, hh)
    elif m["family"] == "antman-skim-lstm":
        model = AntManSkimClassifier(w["embedding"], d, m["sizes"]["small_hidden"], n_labels, ih, hh)
    else:
        raise ValueError(f"{m['name']}: family {m['family']!r} is not an AntMan cell")
    with torch.no_grad():
        for k, v in model.export_weights().items():
            if tuple(w[k].shape) != tuple(v.shape):
                raise ValueError(f"{m['name']}: {k} has shape {tuple(w[k].shape)}, the model {tuple(v.shape)}")
            v.copy_(w[k])
    return model.eval()
