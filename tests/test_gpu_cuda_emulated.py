"""The CUDA kernel's own source (service/engine/gpu_cuda.py) run on the CPU, so CI checks its logic too.

The kernel text is compiled unchanged as C++ with a small shim: each CUDA thread is an OS thread,
`__syncthreads` a std::barrier over the block's threads, `__shared__` arrays are statics (one block runs at
a time), `threadIdx` is thread-local. Its outputs are checked against the NumPy reference on the same
weights and inputs: identical skim decisions (and budgets), h and p_skim within 1e-4. The compiled kernel
itself runs in tests/test_gpu_backend.py on a GPU machine. Skipped without a C++20 compiler.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from random_model import random_layer_weights
from service.cells import get_cell
from service.cells.gated import run_reference
from service.engine import gpu_cuda
from service.engine.budget import layer_budget

CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler")

SHIM = r"""
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
struct float4 { float x, y, z, w; };
struct Index { int x; };
static thread_local Index threadIdx;
static Index blockIdx;
static std::barrier<>* block_barrier;
#define __global__
#define __launch_bounds__(a, b)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
"""

DRIVER = r"""
extern "C" void run_emulated(const float* proj, const float* w, const long long* meta, int B, float* out,
                             int threads) {
    std::barrier<> bar(threads);
    block_barrier = &bar;
    for (int b = 0; b < B; ++b) {  // one block at a time: the __shared__ statics are the block's
        blockIdx.x = b;
        std::vector<std::thread> pool;
        for (int j = 0; j < threads; ++j)
            pool.emplace_back([=] { threadIdx.x = j; skim_lstm_regs(proj, w, meta, B, out); });
        for (auto& t : pool) t.join();
    }
}
"""

_built: dict[tuple[int, int], ctypes.CDLL] = {}


def emulated(tmp_path_factory, d: int, ds: int) -> ctypes.CDLL:
    if (d, ds) not in _built:
        folder = tmp_path_factory.mktemp(f"cuda-emulated-{d}-{ds}")
        src, lib = folder / "kernel.cpp", folder / "kernel.so"
        src.write_text(SHIM + gpu_cuda.source(d, ds) + DRIVER)
        res = subprocess.run([CXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas",
                              str(src), "-o", str(lib)], capture_output=True, text=True)
        if res.returncode != 0 and "barrier" in res.stderr:
            pytest.skip("the compiler has no C++20 <barrier>")
        assert res.returncode == 0, res.stderr[-3000:]
        so = ctypes.CDLL(str(lib))
        so.run_emulated.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        _built[(d, ds)] = so
    return _built[(d, ds)]


def run_kernel(so, w, xs, thresholds, budgets):
    """What gpu_skim.run_batch hands the kernel, built with NumPy: packed projections, W_rec, meta rows."""
    e = w.input_size
    W_in = np.concatenate([w.W_ih, w.Ws_ih, w.Wd[:, :e]]).astype(np.float32)
    b_in = np.concatenate([w.b, w.bs, w.bd]).astype(np.float32)
    W_rec = np.ascontiguousarray(np.concatenate([w.W_hh, w.Ws_hh, w.Wd[:, e:]]), np.float32)
    lengths = [len(x) for x in xs]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    proj = np.ascontiguousarray(np.concatenate(xs) @ W_in.T + b_in, np.float32)
    meta = np.ascontiguousarray(gpu_cuda.meta_rows(starts, lengths, thresholds, budgets))
    d = w.hidden_size
    out = np.zeros((max(1, sum(lengths)), d + 2), np.float32)
    so.run_emulated(proj.ctypes.data, W_rec.ctypes.data, meta.ctypes.data, len(xs), out.ctypes.data,
                    gpu_cuda.threads_for(d, w.small_size))
    return [out[s:s + n] for s, n in zip(starts, lengths)]


@pytest.mark.parametrize("dims", [(16, 24, 4), (8, 20, 19), (12, 30, 3), (50, 100, 10)])
def test_kernel_source_matches_the_reference(tmp_path_factory, dims):
    e, d, ds = dims
    cell = get_cell("skim-lstm")
    w = cell.weights(random_layer_weights(np.random.default_rng(sum(dims)), e, d, ds), "rnn.")
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((n, e)).astype(np.float32) for n in (40, 0, 23, 1)]
    thresholds = [0.5, 0.3, 0.7, 0.0]
    budgets = [None, None, layer_budget(cell, w, 23, 0.3), None]
    outs = run_kernel(emulated(tmp_path_factory, d, ds), w, xs, thresholds, budgets)
    for x, thr, lb, o in zip(xs, thresholds, budgets, outs):
        ref = run_reference(w, x, thr, lb)
        np.testing.assert_array_equal(o[:, d + 1] > 0.5, ref.skim)
        np.testing.assert_allclose(o[:, d], ref.p_skim, atol=1e-4)
        np.testing.assert_allclose(o[:, :d], ref.hs, atol=1e-4)
    assert 0 < sum(int((o[:, d + 1] > 0.5).sum()) for o in outs) < sum(map(len, xs))


def test_budgets_cap_like_the_reference(tmp_path_factory):
    """The budget rule inside the kernel: reads until the allowance is spent, then skims, per text."""
    cell = get_cell("skim-lstm")
    w = cell.weights(random_layer_weights(np.random.default_rng(21), 12, 20, 3, skim_bias=-1.0), "rnn.")
    rng = np.random.default_rng(22)
    xs = [rng.standard_normal((n, 12)).astype(np.float32) for n in (60, 95, 7, 230)]
    for b in (0.1, 0.2, 0.5, 0.9):
        budgets = [layer_budget(cell, w, len(x), b) for x in xs]
        outs = run_kernel(emulated(tmp_path_factory, 20, 3), w, xs, [0.4, 0.9, 1.0, 0.0], budgets)
        for x, thr, lb, o in zip(xs, [0.4, 0.9, 1.0, 0.0], budgets, outs):
            ref = run_reference(w, x, thr, lb)
            np.testing.assert_array_equal(o[:, 21] > 0.5, ref.skim, err_msg=f"budget {b}")
            np.testing.assert_allclose(o[:, :20], ref.hs, atol=1e-4)
