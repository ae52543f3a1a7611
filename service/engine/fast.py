"""Compiled Skim-LSTM kernel: kernel name "fast" (C extension service/engine/_skimkernel.c).

run_layer(w, x, threshold) has the contract of reference.run_layer (the oracle): same LayerOutput, the
same decisions (skim iff float32(p_skim) > float32(threshold)), hidden states within float32 rounding.

- Weights are packed once per LayerWeights into one float32 blob (panel layout, see the C source) and
  cached, keyed on the object's identity and dropped when the object is garbage-collected. `prepare(w)`
  packs and runs a tiny warm-up call: families call it when a model is loaded (Classifier.__init__),
  so nothing heavy happens on the first request. There is no JIT: the extension is compiled by
  `pip install -e .` (setup.py); importing this module without it raises ImportError, and
  backends.get_layer_kernel falls back to the reference with a logged reason.
- The cheaper form: a plain LSTM layer, or a skim layer whose threshold cannot be exceeded (float32
  threshold >= 1, or NaN: p_skim <= 1 is never greater), runs the dense form (input projection of all
  tokens as one GEMM, then W_hh h per step). Otherwise the per-token skim loop, which also chooses per
  read step between streaming the big input weights for that token and a GEMM over the next tokens'
  input projections when reads come in runs (see skim_loop in the C source).
- A skip layer (a skim layer with d' = 0, family skip-lstm) runs the same loop: a skipped step computes
  only the decision (its input part comes from one GEMM per block of tokens, plus two dot products with
  h_{t-1}) and carries h and c over; nothing of the big cell runs.
- The GIL is released while the C code runs (the API serves requests from a thread pool).
- run_layer_forced(w, x, skim) runs the skim loop with given decisions (benchmarks: forced skim rates).

Weights are treated as immutable once packed (LayerWeights is frozen; do not write into its arrays).
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from . import _skimkernel as _k  # ImportError when the extension was not built -> reference fallback
from .budget import LayerBudget
from .layer import LayerOutput, LayerWeights

NAME = "fast"
PANEL = 64
META_VERSION = 5  # 5: meta gained `skims` (a skim layer may have d' = 0: a skip layer)
N_PARTS = 7
# A read step precomputes the input projections of the next 6 tokens (form B, see skim_loop in the C
# source) when at least PRE_READS of the last 6 steps were reads; set from benchmarks/kernels.py runs.
PRE_READS = 3


def _r8(n: int) -> int:
    return (n + 7) // 8 * 8


def aligned_zeros(n: int, align: int = 64) -> np.ndarray:
    """n float32 zeros starting on an `align`-byte boundary. With every part at a multiple of 8 floats
    from it, each 32-byte load of the kernels is aligned: from numpy's 16-byte-aligned allocations half of
    them straddled two cache lines, and the layer ran up to 25% slower depending on where the heap put it."""
    buf = np.zeros(n + align // 4, np.float32)
    skip = (-buf.ctypes.data % align) // 4
    return buf[skip:skip + n]


def _panels(W: np.ndarray, rows: int | None = None) -> np.ndarray:
    """(R, K) -> rows padded with zeros to `rows` (default r8(R)), cut into panels of <= 64 rows, each
    stored column by column (K x width, contiguous): the layout of the C matvec."""
    W = np.asarray(W, np.float32)
    R, K = W.shape
    rows = _r8(R) if rows is None else rows
    Wp = np.zeros((rows, K), np.float32)
    Wp[:R] = W
    return np.concatenate([np.ascontiguousarray(Wp[p0:p0 + PANEL].T).ravel() for p0 in range(0, rows, PANEL)]
                          or [np.zeros(0, np.float32)])


def _padded(b: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros(rows, np.float32)
    out[:len(b)] = b
    return out


class Packed:
    """A layer's weights in the kernel's layout: one float32 blob and the int32 meta array (offsets)."""

    def __init__(self, w: LayerWeights):
        w.check()
        e, d, ds = w.input_size, w.hidden_size, w.small_size
        self.e, self.d, self.ds, self.skims = e, d, ds, w.skims
        RB = _r8(4 * d)
        parts = [
            _panels(w.W_ih),                                      # big_x
            _panels(w.W_hh),                                      # big_h
            _padded(w.b, RB),                                     # big_b
        ]
        if w.skims:  # d' = 0 (a skip layer): the small-cell parts are empty, the decision rows sit at RS = 0
            RS = _r8(4 * ds)
            sx = np.zeros((RS + 8, e), np.float32)      # input parts: small cell, then the decision at RS
            sx[:4 * ds] = w.Ws_ih
            sx[RS:RS + 2] = w.Wd[:, :e]
            sx_b = np.zeros(RS + 8, np.float32)
            sx_b[:4 * ds] = w.bs
            sx_b[RS:RS + 2] = w.bd
            parts += [_panels(sx), sx_b, _panels(w.Ws_hh, RS), np.ascontiguousarray(w.Wd[:, e:], np.float32).ravel()]
        offsets, pos = [], 0
        for a in parts:
            offsets.append(pos)
            pos += _r8(a.size)  # every part starts 32-byte aligned relative to the blob
        offsets += [-1] * (N_PARTS - len(offsets))
        self.blob = aligned_zeros(pos + 8)
        for off, a in zip(offsets, parts):
            self.blob[off:off + a.size] = a
        self.meta = np.array([META_VERSION, e, d, ds, int(w.skims), *offsets], np.int32)

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes


_cache: dict[int, tuple[weakref.ref, Packed]] = {}
_lock = threading.Lock()


def _forget(key: int) -> None:
    with _lock:
        _cache.pop(key, None)


def packed(w: LayerWeights, build=Packed):
    """The packed form of w, built once by `build` (keyed on the object; dropped when w is collected).
    fast_antman.py packs its layers through the same cache."""
    key = id(w)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is w:
        return entry[1]
    with _lock:
        entry = _cache.get(key)
        if entry is None or entry[0]() is not w:
            entry = (weakref.ref(w), build(w))
            _cache[key] = entry
            weakref.finalize(w, _forget, key)
    return entry[1]


def prepare(w: LayerWeights) -> None:
    """Pack w and run a two-token warm-up through each entry point (call at model load)."""
    P = packed(w)
    x = np.zeros((2, P.e), np.float32)
    run_layer(w, x, 1.0)
    if P.skims:
        run_layer(w, x, 0.5)


def _check_x(P: Packed, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != P.e:
        raise ValueError(f"x has shape {x.shape}, expected (T, {P.e})")
    return x


def no_skim_possible(threshold: float) -> bool:
    """True when float32(p_skim) > float32(threshold) cannot hold for any p_skim in [0, 1] (the C side's test)."""
    return not np.float32(threshold) < 1.0


def run_layer(w: LayerWeights, x: np.ndarray, threshold: float, budget: LayerBudget | None = None,
              last_only: bool = False) -> LayerOutput:
    """reference.run_layer's contract; the C side picks the dense form when no token can be skimmed.
    budget: the layer's FLOP cap (service/engine/budget.py), enforced in the C loop by the same rule.
    last_only: hs holds the last state only, shape (1, d) (T >= 1): what a classifier's head reads; a
    T x d buffer is fresh memory each request (about 50 page faults for a long review)."""
    P = packed(w)
    x = _check_x(P, x)
    T = x.shape[0]
    hs = np.empty((1 if last_only and T else T, P.d), np.float32)
    skim, p = np.empty(T, np.bool_), np.empty(T, np.float32)
    if T:
        cap = () if budget is None else (budget.allowance, budget.read, budget.skim)
        _k.run(P.blob, P.meta, x, T, threshold, b"", hs, skim, p, PRE_READS, *cap)
    return LayerOutput(hs, skim, p)


def run_dense(w: LayerWeights, x: np.ndarray) -> LayerOutput:
    """Every token read, in the dense form (p_skim computed for skim layers): run_layer at threshold 1."""
    return run_layer(w, x, 1.0)


def run_layer_forced(w: LayerWeights, x: np.ndarray, skim_mask: np.ndarray) -> LayerOutput:
    """The skim loop with given decisions (p_skim is still computed): for benchmarks at a chosen skim rate."""
    P = packed(w)
    if not P.skims:
        raise ValueError("forced decisions need a skim layer")
    x = _check_x(P, x)
    T = x.shape[0]
    mask = np.ascontiguousarray(skim_mask, dtype=np.uint8)
    if mask.shape != (T,):
        raise ValueError(f"skim mask has shape {mask.shape}, expected ({T},)")
    hs, skim, p = np.empty((T, P.d), np.float32), np.empty(T, np.bool_), np.empty(T, np.float32)
    if T:
        _k.run(P.blob, P.meta, x, T, 0.5, mask, hs, skim, p, PRE_READS)
    return LayerOutput(hs, skim, p)


def has_avx2() -> bool:
    return bool(_k.has_avx2())


run_layer.prepare = prepare  # the hook families call at load time (see Classifier.__init__)
