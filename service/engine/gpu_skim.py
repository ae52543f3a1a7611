"""Skim-LSTM layers on a torch device with no host round-trip inside the sequence, for a batch of texts.

The skim decision is taken and applied on the device: every step computes the decision, BOTH cells (the
big LSTM and the small one on the first d' units) and selects the result per sequence with torch.where
(skim iff float32(p_skim) > float32(threshold): layer.decide's rule, each sequence with its own threshold).
Nothing is read back until the batch is done; then one (N, d + 2) buffer comes back: h_t, p_skim, skim flag.

Four ways to run the same step, one per `mode`:
  cuda   CUDA + NVRTC: one launch of a hand-written kernel for the whole batch, one block per sequence, each
         thread holding one row of the recurrent weights in registers (gpu_cuda.py). The default on CUDA
         where the layer fits (d up to about 100: gpu_cuda.fits); otherwise it runs as `fused`.
  fused  CUDA + Triton: one kernel launch for the whole batch, sequences packed end to end, each block
         running its own sequence for its own length (gpu_fused.py).
  graph  CUDA without Triton: the batched torch.where loop captured as a CUDA graph per (batch, length)
         bucket (powers of two; sequences padded to the bucket; longer texts run as chunks of MAX_BUCKET
         steps carrying h and c), replayed per call.
  loop   the same torch.where loop run eagerly: the CPU path (and the tests' oracle-checked logic).
Computing both cells is the price of branch-free control flow; `flops` still counts the model as defined
(docs/gpu.md says what that means for energy).
"""
from __future__ import annotations

import threading

import numpy as np

from . import gpu_cuda

MODES = ("cuda", "fused", "graph", "loop")
MIN_BUCKET, MAX_BUCKET = 16, 1024
_fused = None  # the gpu_fused module once imported; False when Triton is missing


def fused_module():
    global _fused
    if _fused is None:
        try:
            from . import gpu_fused  # noqa: PLC0415  (Triton is optional)

            _fused = gpu_fused
        except ImportError:
            _fused = False
    return _fused or None


def default_mode(device) -> str:
    if device.type != "cuda":
        return "loop"
    return "cuda"  # falls back to fused / graph per layer where the kernel cannot be built (run_batch)


def _bucket(n: int, low: int) -> int:
    return max(low, 1 << max(0, n - 1).bit_length())


def _cell(torch, gates, c, n):
    i = torch.sigmoid(gates[:, :n])
    f = torch.sigmoid(gates[:, n:2 * n])
    g = torch.tanh(gates[:, 2 * n:3 * n])
    o = torch.sigmoid(gates[:, 3 * n:])
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def where_loop(torch, p, proj, thr, h, c, out):
    """Batched decision + both cells + select, proj (T, B, P) -> out (T, B, d + 2); h, c (B, d) updated in
    place (so a captured graph leaves the state where the next chunk reads it). No host sync."""
    d, ds = p.d, p.ds
    for t in range(proj.shape[0]):
        r = torch.addmm(proj[t], h, p.W_rec.t())           # x-part (precomputed) + h_{t-1}-part
        z = r[:, 4 * d + 4 * ds:]
        pk = torch.sigmoid(z[:, 1] - z[:, 0])
        s = (pk > thr).unsqueeze(1)
        h_big, c_big = _cell(torch, r[:, :4 * d], c, d)
        h_sm, c_sm = _cell(torch, r[:, 4 * d:4 * d + 4 * ds], c[:, :ds], ds)
        h_new = torch.where(s, torch.cat([h_sm, h[:, ds:]], 1), h_big)
        c_new = torch.where(s, torch.cat([c_sm, c[:, ds:]], 1), c_big)
        h.copy_(h_new)
        c.copy_(c_new)
        out[t, :, :d] = h_new
        out[t, :, d] = pk
        out[t, :, d + 1] = s[:, 0].to(out.dtype)
    return out


class _Graph:
    """One captured where_loop chunk for a (batch, length) bucket, with its static buffers."""

    def __init__(self, torch, p, B: int, T: int):
        dev = p.W_rec.device
        self.proj = torch.zeros((T, B, p.P), dtype=torch.float32, device=dev)
        self.thr = torch.zeros(B, dtype=torch.float32, device=dev)
        self.h = torch.zeros((B, p.d), dtype=torch.float32, device=dev)
        self.c = torch.zeros((B, p.d), dtype=torch.float32, device=dev)
        self.out = torch.zeros((T, B, p.d + 2), dtype=torch.float32, device=dev)
        stream = torch.cuda.Stream(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):  # warm-up outside the graph, as capture requires
            where_loop(torch, p, self.proj[:1], self.thr, self.h.clone(), self.c.clone(), self.out[:1].clone())
        torch.cuda.current_stream(dev).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            where_loop(torch, p, self.proj, self.thr, self.h, self.c, self.out)
        self.lock = threading.Lock()


def _graph(torch, p, B: int, T: int) -> _Graph:
    key = (B, T)
    g = p.graphs.get(key)
    if g is None:
        with p.graph_lock:
            g = p.graphs.get(key)
            if g is None:
                g = p.graphs[key] = _Graph(torch, p, B, T)
    return g


def _run_graph(torch, p, proj_tb, thr, T: int):
    """proj_tb (T, B, P) -> (T, B, d + 2) through captured chunks."""
    B = proj_tb.shape[1]
    Bb, Tb = _bucket(B, 1), min(_bucket(T, MIN_BUCKET), MAX_BUCKET)
    g = _graph(torch, p, Bb, Tb)
    out = torch.empty((T, B, p.d + 2), dtype=torch.float32, device=proj_tb.device)
    with g.lock:
        g.h.zero_()
        g.c.zero_()
        g.thr[:B].copy_(thr)
        for t0 in range(0, T, Tb):
            n = min(Tb, T - t0)
            g.proj[:n, :B].copy_(proj_tb[t0:t0 + n])
            g.graph.replay()
            out[t0:t0 + n].copy_(g.out[:n, :B])
    return out


def run_batch(torch, p, xs: list[np.ndarray], thresholds: list[float], mode: str | None = None, budgets=None):
    """Skim layer p (gpu._Prepared) over texts xs (each (T_i, e)) -> host (T_i, d + 2) arrays, one per text.
    One host->device copy of the packed tokens, one input projection, one read-back. budgets: one
    budget.LayerBudget or None per text; only the `cuda` kernel applies them, so with any budget set and no
    `cuda` kernel for this layer the result is None (the caller runs the per-token host loop instead)."""
    dev = p.W_rec.device
    mode = mode or default_mode(dev)
    if mode not in MODES:
        raise ValueError(f"unknown skim mode '{mode}' (known: {', '.join(MODES)})")
    if mode == "cuda" and dev.type != "cuda":
        raise ValueError("skim mode 'cuda' needs a CUDA device")
    lengths = [int(x.shape[0]) for x in xs]
    N, B, d = sum(lengths), len(xs), p.d
    on_cuda_kernel = mode == "cuda" and gpu_cuda.kernel(torch, d, p.ds) is not None
    if budgets is not None and any(b is not None for b in budgets) and not on_cuda_kernel:
        return None
    if N == 0:
        return [np.zeros((0, d + 2), np.float32) for _ in xs]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    thr_host = np.asarray(thresholds, np.float32)
    if on_cuda_kernel:
        # the tokens and the (6, B) int64 meta rows in one host->device copy: each copy costs ~10 µs or more
        meta = gpu_cuda.meta_rows(starts, lengths, thresholds, budgets or [None] * B)
        nx = N * xs[0].shape[1]
        off = nx + (nx & 1)  # the int64 rows start 8-byte aligned
        host_in = np.zeros(off + 2 * meta.size, np.float32)
        np.concatenate(xs, out=host_in[:nx].reshape(N, -1))
        host_in[off:].view(np.int64)[:] = meta.ravel()
        dev_in = torch.as_tensor(host_in).to(dev)
        X, meta_d = dev_in[:nx].view(N, -1), dev_in[off:].view(torch.int64).view(6, B)
        proj = torch.addmm(p.b_in, X, p.W_in.t())                # (N, P)
        out = torch.empty((N, d + 2), dtype=torch.float32, device=dev)
        gpu_cuda.launch(torch, proj, p.W_rec, meta_d, out, d, p.ds)
        host = out.cpu().numpy()
        return [host[s:s + n] for s, n in zip(starts, lengths)]
    if mode == "cuda":  # too wide for registers, or no NVRTC here
        mode = "fused" if fused_module() is not None else "graph"
    packed = np.ascontiguousarray(np.concatenate(xs), np.float32)
    X = torch.as_tensor(packed).to(dev, non_blocking=False)
    proj = torch.addmm(p.b_in, X, p.W_in.t())                    # (N, P)
    if mode == "fused":  # starts, lengths and the thresholds' bits in one copy: each copy costs ~10 µs
        meta = torch.as_tensor(np.stack([starts, np.asarray(lengths, np.int32), thr_host.view(np.int32)])).to(dev)
        out = torch.empty((N, d + 2), dtype=torch.float32, device=dev)
        fused_module().launch(proj, p.W_rec, meta[2].view(torch.float32), meta[0], meta[1], out, d, p.ds)
        host = out.cpu().numpy()
        return [host[s:s + n] for s, n in zip(starts, lengths)]
    # graph / loop: pad to the longest text (time-major), run, unpack
    thr = torch.as_tensor(thr_host).to(dev)
    T = max(lengths)
    proj_tb = torch.zeros((T, B, p.P), dtype=torch.float32, device=dev)
    for b, (s, n) in enumerate(zip(starts, lengths)):
        proj_tb[:n, b] = proj[s:s + n]
    if mode == "graph":
        out = _run_graph(torch, p, proj_tb, thr, T)
    else:
        h = torch.zeros((B, d), dtype=torch.float32, device=dev)
        c = torch.zeros((B, d), dtype=torch.float32, device=dev)
        out = where_loop(torch, p, proj_tb, thr, h, c, torch.empty((T, B, d + 2), dtype=torch.float32,
                                                                   device=dev))
    host = out.cpu().numpy()
    return [np.ascontiguousarray(host[:n, b]) for b, n in enumerate(lengths)]
