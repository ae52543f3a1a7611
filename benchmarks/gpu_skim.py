"""Per-token model time of a Skim-LSTM layer on a torch device, side by side in one run: the no-sync paths of
gpu_skim.py (the register-resident CUDA kernel of gpu_cuda.py, the fused Triton kernel with 4/8/16/32 warps,
CUDA graph, eager loop), the first version (per-token
host sync, mode "sync") and cuDNN's dense nn.LSTM of the same size (the reference point of issue 23).
The compiled CPU kernel (service/engine/fast.py, one thread) on the same layer where it is built. Batch 1 at
several lengths, then batches of 8 and 64 texts (fused vs cuDNN). Each figure is the median of
`--reps` timed calls after warm-up, host arrays in and out (the served path's work). Every skim mode's
decisions are checked against the NumPy reference in the same run (a mismatch is recorded and fails).

  python -m benchmarks.gpu_skim --device cuda --out benchmarks/results/gpu_skim.json
writes the JSON and a .md table beside it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _time(fn, reps: int, warm: int = 3) -> float:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--lengths", default="20,100,300")
    ap.add_argument("--batches", default="8,64")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--e", type=int, default=50)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--ds", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_skim.json")
    args = ap.parse_args(argv)

    import torch

    from random_model import random_layer_weights
    from service.engine import gpu, gpu_cuda, gpu_skim, reference
    from service.engine.layer import LayerWeights

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    rng = np.random.default_rng(0)
    w = LayerWeights.from_dict(random_layer_weights(rng, args.e, args.d, args.ds), "rnn.")
    dense = LayerWeights.from_dict(random_layer_weights(rng, args.e, args.d, 0), "rnn.")
    rows, mismatches = [], []
    DEFAULT_WARPS = gpu_skim.fused_module().NUM_WARPS if gpu_skim.fused_module() else None
    modes = ["loop", "sync"]
    cuda_kernel = None
    if cuda:
        modes = ["graph", "sync"] + (["fused"] if gpu_skim.fused_module() else [])
        if gpu_cuda.kernel(torch, args.d, args.ds) is not None:
            modes.append("cuda")
        else:  # recorded and failed: "cuda" would silently run as "fused"
            cuda_kernel = gpu_cuda._unavailable or f"d={args.d}, d'={args.ds} does not fit (gpu_cuda.fits)"
            mismatches.append({"mode": "cuda", "unavailable": cuda_kernel})
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def run(mode, xs, thr, warps=None):
        if warps is not None:
            gpu_skim.fused_module().NUM_WARPS = warps
        outs = gpu.run_layers_on(w, xs, thr, dev, mode)
        sync()
        return outs

    for T in [int(v) for v in args.lengths.split(",")]:
        x = rng.standard_normal((T, args.e)).astype(np.float32)
        ref = reference.run_layer(w, x, args.threshold)
        row = {"batch": 1, "tokens": T, "skim_rate": ref.skimmed / T, "us_per_token": {}}
        row["us_per_token"]["cudnn-dense" if cuda else "torch-dense"] = 1e6 * _time(
            lambda: gpu.run_layers_on(dense, [x], [1.0], dev), args.reps) / T
        try:  # the CPU's best on the same layer (the compiled C kernel, one thread), for CPU vs GPU
            from service.engine import fast

            fast.prepare(w)
            row["us_per_token"]["cpu-fast-kernel"] = 1e6 * _time(lambda: fast.run_layer(w, x, args.threshold),
                                                                 args.reps) / T
            if not np.array_equal(fast.run_layer(w, x, args.threshold).skim, ref.skim):
                mismatches.append({"mode": "cpu-fast-kernel", "tokens": T})
        except ImportError:
            pass
        variants = [(m, None) for m in modes if m != "fused"]
        if "fused" in modes:
            variants += [("fused", wp) for wp in (4, 8, 16, 32)]
        for mode, wp in variants:
            label = mode if wp is None else f"fused-w{wp}"
            out = run(mode, [x], [args.threshold], wp)[0]
            if not np.array_equal(out.skim, ref.skim) or np.abs(out.hs - ref.hs).max() > 1e-4:
                mismatches.append({"mode": label, "tokens": T})
            reps = max(5, args.reps // 5) if mode == "sync" else args.reps
            row["us_per_token"][label] = 1e6 * _time(lambda: run(mode, [x], [args.threshold], wp), reps) / T
        if "fused" in modes:
            gpu_skim.fused_module().NUM_WARPS = DEFAULT_WARPS
        if "cuda" in modes:  # the kernel alone on device buffers (CUDA events): what the host path adds
            row["cuda_kernel_only_us_per_token"] = 1e3 * _kernel_ms(torch, gpu, gpu_cuda, w, x, args.threshold,
                                                                    dev, args.reps) / T
        base = row["us_per_token"]["cudnn-dense" if cuda else "torch-dense"]
        row["ratio_to_dense"] = {k: v / base for k, v in row["us_per_token"].items()}
        rows.append(row)
        print(json.dumps(row), flush=True)

    batch_rows = []
    best = "cuda" if "cuda" in modes else "fused" if "fused" in modes else modes[0]
    for B in [int(v) for v in args.batches.split(",") if v]:
        lengths = rng.integers(20, 300, B)
        xs = [rng.standard_normal((int(n), args.e)).astype(np.float32) for n in lengths]
        thr = list(rng.choice([0.1, 0.3, 0.5, 0.7, 1.0], B))
        outs = run(best, xs, thr)
        ok = all(np.array_equal(o.skim, reference.run_layer(w, x, t).skim) for o, x, t in zip(outs, xs, thr))
        if not ok:
            mismatches.append({"mode": best, "batch": B})
        N = int(lengths.sum())
        t_skim = _time(lambda: run(best, xs, thr), args.reps)
        t_dense = _time(lambda: gpu.run_layers_on(dense, xs, [1.0] * B, dev), args.reps)
        t_one = _time(lambda: [run(best, [x], [t]) for x, t in zip(xs, thr)], max(3, args.reps // 10))
        r = {"batch": B, "tokens": N, "max_tokens": int(lengths.max()), "mode": best,
             "batch_ms": 1e3 * t_skim, "dense_batch_ms": 1e3 * t_dense, "one_by_one_ms": 1e3 * t_one,
             "texts_per_s": B / t_skim, "dense_texts_per_s": B / t_dense, "decisions_identical": ok}
        batch_rows.append(r)
        print(json.dumps(r), flush=True)

    meta = {"device": str(dev), "torch": torch.__version__, "sizes": {"e": args.e, "d": args.d, "d_small": args.ds},
            "threshold": args.threshold, "reps": args.reps, "median": True,
            "gpu": torch.cuda.get_device_name(dev) if cuda else None, "cuda_kernel_unavailable": cuda_kernel}
    result = {"meta": meta, "batch1": rows, "batched": batch_rows, "decision_mismatches": mismatches}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(result))
    return 1 if mismatches else 0


def _kernel_ms(torch, gpu, gpu_cuda, w, x, threshold, dev, reps: int) -> float:
    """Median ms of gpu_cuda.launch alone for one sequence, inputs already on the device."""
    p = gpu._prepared(w, dev)
    with torch.inference_mode():
        proj = torch.addmm(p.b_in, torch.as_tensor(x).to(dev), p.W_in.t())
        meta = torch.as_tensor(gpu_cuda.meta_rows([0], [x.shape[0]], [threshold], [None])).to(dev)
        out = torch.empty((x.shape[0], p.d + 2), dtype=torch.float32, device=dev)
        times = []
        for i in range(reps + 3):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            gpu_cuda.launch(torch, proj, p.W_rec, meta, out, p.d, p.ds)
            b.record()
            b.synchronize()
            if i >= 3:
                times.append(a.elapsed_time(b))
    return statistics.median(times)


def to_markdown(r: dict) -> str:
    m = r["meta"]
    lines = [f"# Skim-LSTM layer on {m['gpu'] or m['device']} (torch {m['torch']}), e={m['sizes']['e']} "
             f"d={m['sizes']['d']} d'={m['sizes']['d_small']}, threshold {m['threshold']}, median of {m['reps']}",
             "", "Batch 1, µs per token (ratio to the dense cuDNN LSTM of the same size):", ""]
    keys = list(r["batch1"][0]["us_per_token"]) if r["batch1"] else []
    lines += ["| tokens | skim rate | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 2)]
    for row in r["batch1"]:
        cells = [f"{row['us_per_token'][k]:.2f} ({row['ratio_to_dense'][k]:.2f}x)" for k in keys]
        lines.append(f"| {row['tokens']} | {row['skim_rate']:.2f} | " + " | ".join(cells) + " |")
    if any("cuda_kernel_only_us_per_token" in row for row in r["batch1"]):
        lines += ["", "The `cuda` kernel alone (device buffers in, CUDA events; the rest of its column is the host path: "
                  "copies, the input projection, the launch, the read-back): "
                  + ", ".join(f"{row['tokens']} tokens {row['cuda_kernel_only_us_per_token']:.2f} µs/token"
                              for row in r["batch1"] if "cuda_kernel_only_us_per_token" in row) + "."]
    if r["batched"]:
        lines += ["", "Batches of texts of 20-299 tokens, thresholds mixed (one launch per batch):", "",
                  f"Skim batches run on `{r['batched'][0]['mode']}`.", "",
                  "| texts | tokens | skim batch ms | one by one ms | dense batch ms | skim texts/s | dense texts/s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for b in r["batched"]:
            lines.append(f"| {b['batch']} | {b['tokens']} | {b['batch_ms']:.2f} | {b['one_by_one_ms']:.2f} | "
                         f"{b['dense_batch_ms']:.2f} | {b['texts_per_s']:.0f} | {b['dense_texts_per_s']:.0f} |")
    lines += ["", f"Decision mismatches against the NumPy reference: {len(r['decision_mismatches'])}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
