"""AntMan compression modules (Wang et al., 2019, sections 3.1-3.5): structured replacements for one
matrix-vector product y = A x, A of size m x n. The NumPy form here is the oracle of the compiled kernel.

Modules and their tensors (for a product stored under key K, e.g. "rnn.W_ih"), cost = Table 1 in
multiply-adds:
  dense        K                (m, n)                                   m*n
  lgp-shuffle  K.blocks         (g, m/g, n/g)   y = S D_g x              m*n/g
  lgp-dense    K.blocks, K.mix  mix (n, n) before D_g when n <= m,       m*n/g + min(m, n)^2
                                mix (m, m) after D_g when m < n
  lowrank-lgp  K.in_blocks (gi, k/gi, n/gi), K.mix (k, k), K.out_blocks (go, m/go, k/go), k = n/r
               y = D_go M D_gi x                                          m*k/go + n*k/gi + k^2
D_g: output rows [j*rows:(j+1)*rows] = blocks[j] @ x[j*cols:(j+1)*cols], computed as ONE batched product over
the (g, rows, cols) array. The shuffle S is a transpose of the (g, m/g) group outputs, y[j*g + k] = v_k[j]
(index arithmetic, never a permutation matrix).

Every module is frozen, built and shape-checked from its tensors (ValueError naming the tensor), and
supports `apply(x)` for x of shape (n,) or (T, n), `A @ x` (the same, so the gated LSTM loop of
service/cells/gated.py runs a module where it runs a matrix), `factors()` and `dense()` (the explicit
matrices and their m x n product: tests only) and `macs` (Table 1: the nonzeros of the factors). `expected_shapes(spec, m, n)` gives the tensors a spec needs (and refuses
groups or ranks that do not divide), for artifact checks and random test models.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import flops as F

MODULES = ("dense", "lgp-shuffle", "lgp-dense", "lowrank-lgp")


def _as_groups(x: np.ndarray, g: int) -> tuple[np.ndarray, bool]:
    """x (n,) or (T, n) -> (g, n/g, T) columns for a batched matmul, and whether x was a vector."""
    vec = x.ndim == 1
    X = x[None] if vec else x
    T, n = X.shape
    return X.reshape(T, g, n // g).transpose(1, 2, 0), vec


def blockdiag_apply(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """D_g x: blocks (g, rows, cols), x (g*cols,) or (T, g*cols) -> (g*rows,) or (T, g*rows)."""
    g, rows, _ = blocks.shape
    X, vec = _as_groups(x, g)
    Y = np.matmul(blocks, X)                      # (g, rows, T): one product per group, batched
    Y = Y.transpose(2, 0, 1).reshape(-1, g * rows)
    return Y[0] if vec else Y


def shuffled_blockdiag_apply(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """S D_g x: the group outputs V (g, m/g) read out transposed, y[j*g + k] = V[k, j]."""
    g, rows, _ = blocks.shape
    X, vec = _as_groups(x, g)
    V = np.matmul(blocks, X)                      # (g, rows, T)
    Y = V.transpose(2, 1, 0).reshape(-1, g * rows)   # (T, rows, g): element (j, k) lands at j*g + k
    return Y[0] if vec else Y


def blockdiag_dense(blocks: np.ndarray) -> np.ndarray:
    g, rows, cols = blocks.shape
    A = np.zeros((g * rows, g * cols), blocks.dtype)
    for k in range(g):
        A[k * rows:(k + 1) * rows, k * cols:(k + 1) * cols] = blocks[k]
    return A


def _check_blocks(name: str, a: np.ndarray) -> np.ndarray:
    if a is None:
        raise ValueError(f"missing tensor {name}")
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected (groups, rows, cols) with every size >= 1")
    return a


def _check_square(name: str, a: np.ndarray, k: int) -> np.ndarray:
    if a is None:
        raise ValueError(f"missing tensor {name}")
    if tuple(a.shape) != (k, k):
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected ({k}, {k})")
    return a


class Module:
    """One compressed product y = A x (A: m x n). Subclasses are frozen dataclasses."""
    kind = ""
    m: int
    n: int
    ndim = 2

    @property
    def shape(self) -> tuple[int, int]:
        return (self.m, self.n)

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        return self.apply(x)

    def factors(self) -> list[np.ndarray]:
        """The explicit matrices whose product (left to right) is A; their nonzeros are the Table 1 cost."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        """The explicit m x n matrix (for tests: O(m*n) memory)."""
        out = self.factors()
        A = out[-1]
        for F in reversed(out[:-1]):
            A = F @ A
        return A

    @property
    def macs(self) -> int:
        """Multiply-adds of one apply to a vector (Table 1)."""
        raise NotImplementedError

    def spec(self) -> dict:
        """The manifest form ({"module": ..., groups / rank ...})."""
        raise NotImplementedError

    def tensors(self) -> dict[str, np.ndarray]:
        """Suffix ("" for dense, ".blocks", ...) -> array, as stored under the product's key."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Dense(Module):
    W: np.ndarray
    kind = "dense"

    def __post_init__(self):
        if self.W.ndim != 2:
            raise ValueError(f"dense matrix has shape {tuple(self.W.shape)}, expected (m, n)")

    m = property(lambda self: self.W.shape[0])
    n = property(lambda self: self.W.shape[1])

    def apply(self, x):
        return x @ self.W.T if x.ndim == 2 else self.W @ x

    def factors(self):
        return [self.W]

    @property
    def macs(self):
        return F.dense_macs(self.m, self.n)

    def spec(self):
        return {"module": "dense"}

    def tensors(self):
        return {"": self.W}


@dataclass(frozen=True, eq=False)
class LGPShuffle(Module):
    blocks: np.ndarray   # (g, m/g, n/g)
    kind = "lgp-shuffle"

    g = property(lambda self: self.blocks.shape[0])
    m = property(lambda self: self.blocks.shape[0] * self.blocks.shape[1])
    n = property(lambda self: self.blocks.shape[0] * self.blocks.shape[2])

    def apply(self, x):
        return shuffled_blockdiag_apply(self.blocks, x)

    def factors(self):
        D = blockdiag_dense(self.blocks)
        g, rows = self.g, self.blocks.shape[1]
        # row r of D (group k = r // rows, j = r % rows) becomes row j*g + k
        order = np.arange(self.m).reshape(g, rows).T.ravel()   # y[i] = (D x)[order[i]]
        return [D[order]]

    @property
    def macs(self):
        return F.lgp_shuffle_macs(self.m, self.n, self.g)

    def spec(self):
        return {"module": self.kind, "groups": self.g}

    def tensors(self):
        return {".blocks": self.blocks}


@dataclass(frozen=True, eq=False)
class LGPDense(Module):
    blocks: np.ndarray   # (g, m/g, n/g)
    mix: np.ndarray      # (n, n) applied before when n <= m, else (m, m) after
    kind = "lgp-dense"

    g = property(lambda self: self.blocks.shape[0])
    m = property(lambda self: self.blocks.shape[0] * self.blocks.shape[1])
    n = property(lambda self: self.blocks.shape[0] * self.blocks.shape[2])

    @property
    def mix_before(self) -> bool:
        return self.n <= self.m

    def apply(self, x):
        if self.mix_before:
            return blockdiag_apply(self.blocks, Dense(self.mix).apply(x))
        return Dense(self.mix).apply(blockdiag_apply(self.blocks, x))

    def factors(self):
        D = blockdiag_dense(self.blocks)
        return [D, self.mix] if self.mix_before else [self.mix, D]

    @property
    def macs(self):
        return F.lgp_dense_macs(self.m, self.n, self.g)

    def spec(self):
        return {"module": self.kind, "groups": self.g}

    def tensors(self):
        return {".blocks": self.blocks, ".mix": self.mix}


@dataclass(frozen=True, eq=False)
class LowRankLGP(Module):
    in_blocks: np.ndarray    # (gi, k/gi, n/gi)
    mix: np.ndarray          # (k, k)
    out_blocks: np.ndarray   # (go, m/go, k/go)
    kind = "lowrank-lgp"

    gi = property(lambda self: self.in_blocks.shape[0])
    go = property(lambda self: self.out_blocks.shape[0])
    k = property(lambda self: self.mix.shape[0])
    m = property(lambda self: self.out_blocks.shape[0] * self.out_blocks.shape[1])
    n = property(lambda self: self.in_blocks.shape[0] * self.in_blocks.shape[2])

    @property
    def rank(self) -> int:
        return self.n // self.k

    def apply(self, x):
        return blockdiag_apply(self.out_blocks, Dense(self.mix).apply(blockdiag_apply(self.in_blocks, x)))

    def factors(self):
        return [blockdiag_dense(self.out_blocks), self.mix, blockdiag_dense(self.in_blocks)]

    @property
    def macs(self):
        return F.lowrank_lgp_macs(self.m, self.n, self.gi, self.go, self.rank)

    def spec(self):
        return {"module": self.kind, "groups_in": self.gi, "groups_out": self.go, "rank": self.rank}

    def tensors(self):
        return {".in_blocks": self.in_blocks, ".mix": self.mix, ".out_blocks": self.out_blocks}


def from_weights(weights: dict[str, np.ndarray], key: str) -> Module:
    """The module stored under `key` (e.g. "rnn.W_ih"), its kind read from which tensors exist; internally
    shape-checked (ValueError naming the tensor). The caller checks (m, n) against the layer."""
    get = weights.get
    if get(key) is not None:
        if any(get(key + s) is not None for s in (".blocks", ".in_blocks", ".mix")):
            raise ValueError(f"{key} is stored both dense and compressed")
        if get(key).ndim != 2:
            raise ValueError(f"{key} has shape {tuple(get(key).shape)}, expected (m, n)")
        return Dense(get(key))
    if get(key + ".in_blocks") is not None or get(key + ".out_blocks") is not None:
        ib = _check_blocks(key + ".in_blocks", get(key + ".in_blocks"))
        ob = _check_blocks(key + ".out_blocks", get(key + ".out_blocks"))
        k = ib.shape[0] * ib.shape[1]
        if ob.shape[0] * ob.shape[2] != k:
            raise ValueError(f"{key}.out_blocks has shape {tuple(ob.shape)}: its groups x cols must be the rank "
                             f"dimension {k} of {key}.in_blocks {tuple(ib.shape)}")
        mix = _check_square(key + ".mix", get(key + ".mix"), k)
        n = ib.shape[0] * ib.shape[2]
        if n % k:
            raise ValueError(f"{key}.mix is {k} x {k}: the rank dimension must divide the input size {n}")
        return LowRankLGP(ib, mix, ob)
    if get(key + ".blocks") is not None:
        blocks = _check_blocks(key + ".blocks", get(key + ".blocks"))
        if get(key + ".mix") is None:
            return LGPShuffle(blocks)
        m, n = blocks.shape[0] * blocks.shape[1], blocks.shape[0] * blocks.shape[2]
        return LGPDense(blocks, _check_square(key + ".mix", get(key + ".mix"), min(m, n)))
    raise ValueError(f"missing tensor {key} (dense) or {key}.blocks / {key}.in_blocks (compressed)")


def _divides(what: str, g: int, size: int, of: str) -> None:
    if g < 1 or size % g:
        raise ValueError(f"{what}={g} does not divide {of}={size}")


def expected_shapes(spec: dict, m: int, n: int) -> dict[str, tuple[int, ...]]:
    """Suffix -> shape of the tensors that `spec` (manifest form) needs for an m x n product; ValueError when
    a group count or rank does not divide the sizes it splits."""
    kind = spec.get("module")
    if kind == "dense":
        return {"": (m, n)}
    if kind in ("lgp-shuffle", "lgp-dense"):
        g = spec.get("groups")
        _divides("groups", g, m, "m")
        _divides("groups", g, n, "n")
        out = {".blocks": (g, m // g, n // g)}
        if kind == "lgp-dense":
            out[".mix"] = (min(m, n), min(m, n))
        return out
    if kind == "lowrank-lgp":
        gi, go, r = spec.get("groups_in"), spec.get("groups_out"), spec.get("rank")
        _divides("rank", r, n, "n")
        k = n // r
        _divides("groups_in", gi, n, "n")
        _divides("groups_in", gi, k, "n/rank")
        _divides("groups_out", go, m, "m")
        _divides("groups_out", go, k, "n/rank")
        return {".in_blocks": (gi, k // gi, n // gi), ".mix": (k, k), ".out_blocks": (go, m // go, k // go)}
    raise ValueError(f"unknown module '{kind}' (known: {', '.join(MODULES)})")


def random_tensors(spec: dict, m: int, n: int, rng: np.random.Generator, key: str,
                   scale: float = 1.0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random tensors for `spec` under `key`, scaled so that y = A x keeps about x's magnitude times `scale`
    (for tests and benchmarks; training initialises its own)."""
    out = {}
    for suffix, shape in expected_shapes(spec, m, n).items():
        fan_in = shape[-1]
        out[key + suffix] = (rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(dtype)
    return out
