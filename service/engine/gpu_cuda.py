"""One CUDA kernel per batch of Skim-LSTM sequences, with the recurrent weights held in registers.

Why a hand-written kernel beside the Triton one (gpu_fused.py): at batch 1 a step is a chain of small
dependent operations, so what counts is latency, not FLOPs. The Triton kernel reads the recurrent weights
from L2 at every step and reduces 128-wide tiles across warps; here each thread owns one row of
[W_hh; Ws_hh; Wd_h] (4d + 4d' + 2 rows, d columns) in registers for the whole sequence, reads h_{t-1} from
shared memory (a broadcast), and a step is one dot product per thread, one barrier, the decision (every
thread reads the same two logits, so the branch is uniform), the gate arithmetic on d threads, and a
second barrier. Nothing else touches memory except the token's precomputed input projection (prefetched
one step ahead) and the output row.

Inputs: proj (N, P) = x W_in^T + b_in for all packed tokens, W_rec (P, d), meta (6, B) int64 = starts,
lengths, each sequence's threshold as float32 bits, and its FLOP budget as budget.LayerBudget's allowance,
read and skim step costs (NO_CAP where it has none): `meta_rows` builds it. Output: out
(N, d + 2) = h_t, p_skim, skim flag (1.0/0.0). The decision rule is layer.decide's: skim iff
float32(p_skim) > float32(threshold), with p_skim = sigmoid(z_skim - z_read) in float32 (expf/tanhf, no
fast math), capped by budget.apply's rule (read only while spent + read + (T - t - 1) * skim <=
allowance), so a budget needs no host round-trip either.

Compiled at first use per (d, d') with NVRTC through torch.cuda._compile_kernel (PyTorch >= 2.8; no nvcc,
no build step at install). `available(d, ds)` says whether a layer fits: one block of at most 1024
threads (4d + 4d' + 2 rows) and d floats of weights per thread in registers (`fits`); other layers
and machines without NVRTC use the Triton kernel.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

MAX_THREADS = 1024   # one block per sequence
REGISTERS = 65536    # 32-bit registers per SM (every CUDA GPU since compute capability 5.0)
REGS_SPARE = 24      # registers a thread needs besides its weight row (indices, accumulators, c, ...)

SOURCE = r"""
#define D {d}
#define DS {ds}
#define D4 {d4}
#define R (4 * D + 4 * DS + 2)
#define THREADS {threads}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
skim_lstm_regs(const float* __restrict__ proj, const float* __restrict__ w_rec,
               const long long* __restrict__ meta, int B, float* __restrict__ out)
{{
    __shared__ __align__(16) float sh_h[2][D4];
    __shared__ float sh_g[R];
    const int b = blockIdx.x;
    const int j = threadIdx.x;
    const int start = (int)meta[b];
    const int T = (int)meta[B + b];
    const float thr = __int_as_float((int)meta[2 * B + b]);
    const long long allowance = meta[3 * B + b], read_cost = meta[4 * B + b], skim_cost = meta[5 * B + b];
    long long spent = 0;            // the FLOP budget's integer rule (budget.py), the same on every thread

    float w[D4];                    // this thread's row of W_rec, zero-padded to D4
    #pragma unroll
    for (int k = 0; k < D4; ++k)
        w[k] = (j < R && k < D) ? w_rec[j * D + k] : 0.0f;
    float c = 0.0f;                 // thread j < D owns c[j]
    if (j < D4) {{ sh_h[0][j] = 0.0f; sh_h[1][j] = 0.0f; }}
    float pre_next = (j < R && T > 0) ? proj[(long long)start * R + j] : 0.0f;
    __syncthreads();

    int cur = 0;
    for (int t = 0; t < T; ++t) {{
        const float pre = pre_next;
        if (j < R && t + 1 < T)     // the next token's projection, while this step computes
            pre_next = proj[(long long)(start + t + 1) * R + j];
        if (j < R) {{
            const float4* h4 = reinterpret_cast<const float4*>(sh_h[cur]);
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            #pragma unroll
            for (int k = 0; k < D4 / 4; ++k) {{
                const float4 hv = h4[k];
                a0 = fmaf(w[4 * k], hv.x, a0);
                a1 = fmaf(w[4 * k + 1], hv.y, a1);
                a2 = fmaf(w[4 * k + 2], hv.z, a2);
                a3 = fmaf(w[4 * k + 3], hv.w, a3);
            }}
            sh_g[j] = pre + ((a0 + a1) + (a2 + a3));
        }}
        __syncthreads();
        const float zr = sh_g[4 * D + 4 * DS];
        const float zs = sh_g[4 * D + 4 * DS + 1];
        const float p = 1.0f / (1.0f + expf(-(zs - zr)));
        const bool skim = p > thr
            || spent + read_cost + (long long)(T - t - 1) * skim_cost > allowance;
        spent += skim ? skim_cost : read_cost;
        float* orow = out + (long long)(start + t) * (D + 2);
        if (j < D) {{
            float hn = sh_h[cur][j], cn = c;
            if (!skim) {{
                const float gi = 1.0f / (1.0f + expf(-sh_g[j]));
                const float gf = 1.0f / (1.0f + expf(-sh_g[D + j]));
                const float gg = tanhf(sh_g[2 * D + j]);
                const float go = 1.0f / (1.0f + expf(-sh_g[3 * D + j]));
                cn = gf * c + gi * gg;
                hn = go * tanhf(cn);
            }} else if (j < DS) {{
                const int s0 = 4 * D;
                const float gi = 1.0f / (1.0f + expf(-sh_g[s0 + j]));
                const float gf = 1.0f / (1.0f + expf(-sh_g[s0 + DS + j]));
                const float gg = tanhf(sh_g[s0 + 2 * DS + j]);
                const float go = 1.0f / (1.0f + expf(-sh_g[s0 + 3 * DS + j]));
                cn = gf * c + gi * gg;
                hn = go * tanhf(cn);
            }}
            c = cn;
            sh_h[cur ^ 1][j] = hn;
            orow[j] = hn;
        }} else if (j == D) {{
            orow[D] = p;
            orow[D + 1] = skim ? 1.0f : 0.0f;
        }}
        __syncthreads();
        cur ^= 1;
    }}
}}
"""

_kernels: dict[tuple[int, int], object] = {}
_lock = threading.Lock()
_unavailable: str | None = None  # why NVRTC compilation is not possible here, once found out


def threads_for(d: int, ds: int) -> int:
    """One thread per row of W_rec (and one past h for the decision's outputs), whole warps."""
    n = max(4 * d + 4 * ds + 2, d + 1)
    return (n + 31) // 32 * 32


def fits(d: int, ds: int) -> bool:
    """The layer fits one block with its weights in registers: the SM's 64K registers shared by the block's
    threads, each holding its row (d rounded up to 4) plus about REGS_SPARE for everything else."""
    d4 = (d + 3) // 4 * 4
    threads = threads_for(d, ds)
    return 0 < d and 0 <= ds <= d and threads <= MAX_THREADS and threads * (d4 + REGS_SPARE) <= REGISTERS


def source(d: int, ds: int) -> str:
    return SOURCE.format(d=d, ds=ds, d4=(d + 3) // 4 * 4, threads=threads_for(d, ds))


def kernel(torch, d: int, ds: int):
    """The compiled kernel for (d, ds), or None where it cannot be built (the caller uses Triton)."""
    global _unavailable
    key = (d, ds)
    k = _kernels.get(key)
    if k is not None or _unavailable is not None or not fits(d, ds):
        return k
    with _lock:
        k = _kernels.get(key)
        if k is None and _unavailable is None:
            try:
                k = _kernels[key] = torch.cuda._compile_kernel(source(d, ds), "skim_lstm_regs")
            except (AttributeError, RuntimeError, OSError) as exc:  # no NVRTC, old torch, or no libnvrtc
                _unavailable = f"{type(exc).__name__}: {exc}"
    return k


NO_CAP = (1 << 62, 0, 0)  # allowance, read, skim: the budget test never fails


def meta_rows(starts, lengths, thresholds, budgets) -> np.ndarray:
    """(6, B) int64: starts, lengths, threshold bits (float32 as int32), allowance, read and skim costs from
    budget.LayerBudget objects (None = no budget)."""
    caps = np.asarray([NO_CAP if b is None else (int(b.allowance), int(b.read), int(b.skim)) for b in budgets],
                      np.int64).reshape(-1, 3).T
    bits = np.asarray(thresholds, np.float32).view(np.int32).astype(np.int64)
    return np.concatenate([np.stack([np.asarray(starts, np.int64), np.asarray(lengths, np.int64), bits]), caps])


_libcuda = None


def _launcher():
    """cuLaunchKernel from the driver, looked up once: torch's kernel wrapper opens libcuda and looks the
    symbol up again on every call, which costs more than the kernel on short texts."""
    global _libcuda
    if _libcuda is None:
        lib = ctypes.CDLL("libcuda.so.1")
        fn = lib.cuLaunchKernel
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 6 + [ctypes.c_uint, ctypes.c_void_p,
                                                                  ctypes.c_void_p, ctypes.c_void_p]
        _libcuda = fn
    return _libcuda


def launch(torch, proj, W_rec, meta, out, d: int, ds: int) -> bool:
    """Enqueue the kernel for meta.shape[1] sequences on the current stream; False (nothing enqueued) where
    it is unavailable."""
    k = kernel(torch, d, ds)
    if k is None:
        return False
    B = int(meta.shape[1])
    values = [ctypes.c_void_p(proj.data_ptr()), ctypes.c_void_p(W_rec.data_ptr()), ctypes.c_void_p(meta.data_ptr()),
              ctypes.c_int(B), ctypes.c_void_p(out.data_ptr())]
    args = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values])
    stream = torch.cuda.current_stream(proj.device).cuda_stream
    rc = _launcher()(k.func, B, 1, 1, threads_for(d, ds), 1, 1, 0, stream, args, None)
    if rc != 0:
        raise RuntimeError(f"cuLaunchKernel failed with CUDA error {rc}")
    return True
