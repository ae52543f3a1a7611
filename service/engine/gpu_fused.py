"""One fused GPU kernel per batch of Skim-LSTM sequences (Triton): the whole token loop in one launch.

Each program (one CUDA block) runs one sequence of a packed batch: h and c stay in registers for the whole
sequence, the recurrent weights are read from L2 at every step, and the skim decision is taken on the
device, so nothing goes back to the host until the sequence is done. Per step it computes the decision
(p_skim = sigmoid(z_skim - z_read) from the precomputed x-part plus Wd_h h), BOTH cells (the big LSTM
on all d units and the small one on the first d'), and keeps the one the decision picks
(skim iff float32(p_skim) > float32(threshold), layer.decide's rule). Computing both costs the GPU little
at batch 1 (it is latency-bound, not FLOP-bound) but it is real work: see docs/gpu.md on FLOPs and energy.

Inputs (float32, contiguous, on one CUDA device):
  proj    (N, 4d + 4d' + 2)  x W_in^T + b_in for all N packed tokens (gpu_skim.project)
  W_rec   (4d + 4d' + 2, d)  [W_hh; Ws_hh; Wd_h]
  thr     (B,)               each sequence's own threshold
  start, length (B,) int32   where each sequence sits in the packed token axis
Output: out (N, d + 2): h_t, then p_skim, then the skim flag (1.0 / 0.0), one row per token, so the
host reads one buffer back per batch.

Triton is optional (the 'gpu' extra's torch wheels ship it on Linux); without it gpu_skim falls back to
the CUDA-graph loop. TRITON_INTERPRET=1 runs this kernel on CPU tensors (tests/test_gpu_backend.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

NUM_WARPS = 16  # the fastest of 4, 8, 16 and 32 on an H200 at d=100 (benchmarks/results/gpu_skim.md)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # 2 sigmoid(2x) - 1, written so that large |x| saturates to +-1 without inf - inf
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0


@triton.jit
def _matvec(w_ptr, row0, rows, cols, mask, hb, D: tl.constexpr):
    w = tl.load(w_ptr + (row0 + rows)[:, None] * D + cols[None, :], mask=mask, other=0.0)
    return tl.sum(w * hb, axis=1)


@triton.jit
def skim_lstm_kernel(proj_ptr, w_ptr, thr_ptr, start_ptr, len_ptr, out_ptr,
                     D: tl.constexpr, DS: tl.constexpr, BD: tl.constexpr, BS: tl.constexpr):
    P: tl.constexpr = 4 * D + 4 * DS + 2
    b = tl.program_id(0)
    start = tl.load(start_ptr + b)
    T = tl.load(len_ptr + b)
    thr = tl.load(thr_ptr + b)
    rows = tl.arange(0, BD)
    cols = tl.arange(0, BD)
    rs = tl.arange(0, BS)  # the small cell's rows: a BS x BD tile, not a masked BD x BD one
    rm = rows < D
    sm = rows < DS
    rsm = rs < DS
    big_mask = rm[:, None] & (cols[None, :] < D)
    small_mask = rsm[:, None] & (cols[None, :] < D)
    onehot = rows[:, None] == rs[None, :]  # (BD, BS): moves vectors between the d and the d' index spaces
    h = tl.zeros([BD], dtype=tl.float32)
    c = tl.zeros([BD], dtype=tl.float32)
    t = 0
    while t < T:  # a while loop: the interpreter cannot range() over a loaded length
        row = proj_ptr + (start + t) * P
        hb = h[None, :]
        # decision from h_{t-1}
        z_read = tl.load(row + 4 * D + 4 * DS) + tl.sum(
            tl.load(w_ptr + (4 * D + 4 * DS) * D + cols, mask=cols < D, other=0.0) * h, axis=0)
        z_skim = tl.load(row + 4 * D + 4 * DS + 1) + tl.sum(
            tl.load(w_ptr + (4 * D + 4 * DS + 1) * D + cols, mask=cols < D, other=0.0) * h, axis=0)
        p = _sigmoid(z_skim - z_read)
        skim = p > thr
        # big cell on all d units
        gi = tl.load(row + rows, mask=rm, other=0.0) + _matvec(w_ptr, 0, rows, cols, big_mask, hb, D)
        gf = tl.load(row + D + rows, mask=rm, other=0.0) + _matvec(w_ptr, D, rows, cols, big_mask, hb, D)
        gg = tl.load(row + 2 * D + rows, mask=rm, other=0.0) + _matvec(w_ptr, 2 * D, rows, cols, big_mask, hb, D)
        go = tl.load(row + 3 * D + rows, mask=rm, other=0.0) + _matvec(w_ptr, 3 * D, rows, cols, big_mask, hb, D)
        c_big = _sigmoid(gf) * c + _sigmoid(gi) * _tanh(gg)
        h_big = _sigmoid(go) * _tanh(c_big)
        # small cell on the first d' units (it reads the whole h_{t-1})
        s0 = 4 * D
        si = tl.load(row + s0 + rs, mask=rsm, other=0.0) + _matvec(w_ptr, s0, rs, cols, small_mask, hb, D)
        sf = tl.load(row + s0 + DS + rs, mask=rsm, other=0.0) + _matvec(w_ptr, s0 + DS, rs, cols, small_mask, hb, D)
        sg = tl.load(row + s0 + 2 * DS + rs, mask=rsm, other=0.0) + _matvec(w_ptr, s0 + 2 * DS, rs, cols,
                                                                             small_mask, hb, D)
        so = tl.load(row + s0 + 3 * DS + rs, mask=rsm, other=0.0) + _matvec(w_ptr, s0 + 3 * DS, rs, cols,
                                                                             small_mask, hb, D)
        c_prev_small = tl.sum(tl.where(onehot, c[:, None], 0.0), axis=0)  # c[:d'] as a BS vector
        c_small = _sigmoid(sf) * c_prev_small + _sigmoid(si) * _tanh(sg)
        h_small = _sigmoid(so) * _tanh(c_small)
        h_small_d = tl.sum(tl.where(onehot, h_small[None, :], 0.0), axis=1)  # back to the d index space
        c_small_d = tl.sum(tl.where(onehot, c_small[None, :], 0.0), axis=1)
        # keep what the decision picked: skimmed tokens change only the first d' units
        h = tl.where(skim, tl.where(sm, h_small_d, h), h_big)
        c = tl.where(skim, tl.where(sm, c_small_d, c), c_big)
        h = tl.where(rm, h, 0.0)
        c = tl.where(rm, c, 0.0)
        orow = out_ptr + (start + t) * (D + 2)
        tl.store(orow + rows, h, mask=rm)
        tl.store(orow + D, p)
        tl.store(orow + D + 1, tl.where(skim, 1.0, 0.0))
        t += 1


def launch(proj, W_rec, thr, start, length, out, d: int, ds: int, num_warps: int | None = None) -> None:
    """Enqueue the kernel for len(start) sequences (asynchronous, on the current stream)."""
    bd = max(16, triton.next_power_of_2(d))
    bs = max(16, triton.next_power_of_2(ds))
    skim_lstm_kernel[(start.shape[0],)](proj, W_rec, thr, start, length, out, D=d, DS=ds, BD=bd, BS=bs,
                                        num_warps=num_warps or NUM_WARPS)
