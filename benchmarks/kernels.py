"""Kernel benchmark: the same weights in every runtime, median µs/token, in one run.

    python -m benchmarks.kernels [--quick] [--no-real] [--texts N]

Part 1, synthetic layers (random weights, e=100, d'=10): d in {100, 200, 400}, T in {20, 300}, forced skim
rate s in {0, 0.5, 0.9}, one thread and all threads (os.cpu_count()):
  - reference: the NumPy oracle (service/engine/reference.py's step, with forced decisions); one BLAS
    thread, few repeats (it is 10-30x slower);
  - fast: the compiled kernel's skim loop with forced decisions (fast.run_layer_forced), and its dense form
    (fast.run_dense: what the engine runs for plain LSTMs and for thresholds >= 1);
  - ort: ONNX Runtime's LSTM op on the dense big cell (one-node graph; a dense LSTM cannot skim);
  - torch: torch.nn.LSTM on the big cell, if torch is installed.
  The compiled kernel runs one request on one thread whatever the thread setting (the server parallelises
  across requests); ORT and torch get intra-op threads = 1 or all.
  Reported: median µs/token; ratio to ORT dense at the same (d, T, threads); the FLOP ratio of
  service/flops.py at s (full LSTM FLOPs / Skim-LSTM FLOPs) and the achieved fraction of it, i.e.
  (fast at s=0 / fast at s) / FLOP ratio, against two baselines: the same skim loop at s=0, and the
  dense form.
Part 2, the trained models on their test texts (training/data.py; ../shared/data): per-token latency of
  Classifier.forward (embedding, layer, head) vs threshold for sst2-skim and imdb-skim with the fast kernel,
  against ORT dense: the trained imdb-lstm / sst2-lstm (whole-model graph) and ORT's LSTM op on the same
  skim model's big cell (the dense form of the same weights), plus the fast kernel's dense form and the
  reference at the default threshold on a subset. One thread.
Timing: every cell of a group is timed in interleaved rounds (round-robin), so that the machine's drift
hits all of them alike; the ratios are what to read, absolute times drift on shared machines.
Writes benchmarks/results/kernels.json and kernels.md.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # the NumPy reference on one BLAS thread (set before numpy loads)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service import flops as F  # noqa: E402
from service.engine import fast, reference  # noqa: E402
from service.engine.layer import LayerOutput, LayerWeights  # noqa: E402
from service.cells.gated import lstm_step, sigmoid  # noqa: E402
from tests.random_model import random_layer_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
E, D_SMALL = 100, 10
DS = (100, 200, 400)
TS = (20, 300)
RATES = (0.0, 0.5, 0.9)
REAL = {"sst2-skim": ("sst2", "sst2-lstm"), "imdb-skim": ("imdb", "imdb-lstm")}
REAL_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# --- runtimes ---------------------------------------------------------------------------------------
def reference_forced(w: LayerWeights, x: np.ndarray, mask: np.ndarray) -> LayerOutput:
    """reference.run_layer with given decisions (the same per-token NumPy work, decision layer included)."""
    T, d, ds = x.shape[0], w.hidden_size, w.small_size
    h, c = np.zeros(d, np.float32), np.zeros(d, np.float32)
    hs, p = np.zeros((T, d), np.float32), np.zeros(T, np.float32)
    for t in range(T):
        z = w.Wd @ np.concatenate([x[t], h]) + w.bd
        p[t] = sigmoid(z[1] - z[0])
        if mask[t]:
            h_s, c_s = lstm_step(w.Ws_ih, w.Ws_hh, w.bs, x[t], h, c[:ds])
            h, c = np.concatenate([h_s, h[ds:]]), np.concatenate([c_s, c[ds:]])
        else:
            h, c = lstm_step(w.W_ih, w.W_hh, w.b, x[t], h, c)
        hs[t] = h
    return LayerOutput(hs, np.asarray(mask, bool), p)


def ort_lstm(w: LayerWeights, threads: int):
    """ONNX Runtime's LSTM op on the big cell alone: x [T, e] -> Y; None without onnxruntime/onnx."""
    try:
        import onnx
        from onnx import helper, numpy_helper

        from service.engine.onnx_backend import make_session
        from service.onnx_export.layers import onnx_gate_order
    except ImportError:
        return None
    d, e = w.hidden_size, w.input_size
    W = onnx_gate_order(np.asarray(w.W_ih, np.float32), d)[None]
    R = onnx_gate_order(np.asarray(w.W_hh, np.float32), d)[None]
    B = np.concatenate([onnx_gate_order(np.asarray(w.b, np.float32), d), np.zeros(4 * d, np.float32)])[None]
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=d)], "lstm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["T", 1, e])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["T", 1, 1, d])],
        [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = make_session(model.SerializeToString(), threads=threads)
    return lambda x: sess.run(None, {"x": x[:, None, :]})[0]


def torch_lstm(w: LayerWeights):
    try:
        import torch
    except ImportError:
        return None, None
    e, d = w.input_size, w.hidden_size
    lstm = torch.nn.LSTM(e, d)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.asarray(w.W_ih, np.float32)))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.asarray(w.W_hh, np.float32)))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.asarray(w.b, np.float32)))
        lstm.bias_hh_l0.zero_()
    lstm.eval()

    def run(x):
        with torch.inference_mode():
            return lstm(torch.from_numpy(x)[:, None, :])[0]

    return run, torch


# --- timing -----------------------------------------------------------------------------------------
def interleaved(fns: dict, budget_s: float, max_reps: dict | None = None, min_reps: int = 3) -> dict:
    """name -> median seconds per call, the calls interleaved round-robin until budget_s has passed."""
    max_reps = max_reps or {}
    for f in fns.values():
        f()  # warm-up
    samples = {k: [] for k in fns}
    t_end = time.perf_counter() + budget_s
    while True:
        active = [k for k in fns if len(samples[k]) < max_reps.get(k, 10 ** 9)]
        if not active:
            break
        for k in active:
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - t0)
        if time.perf_counter() > t_end and all(len(samples[k]) >= min(min_reps, max_reps.get(k, min_reps)) for k in fns):
            break
    return {k: (statistics.median(v), len(v)) for k, v in samples.items()}


def forced_mask(rng, T: int, s: float) -> np.ndarray:
    mask = np.zeros(T, bool)
    mask[rng.permutation(T)[:int(round(s * T))]] = True
    return mask


def flop_ratio(e: int, d: int, ds: int, T: int, skimmed: int) -> float:
    c = F.layer_cost(e, d, ds, T, skimmed, True)
    return c.flops_full / c.flops


# --- part 1 -----------------------------------------------------------------------------------------
def synthetic(budget: float, ref_reps: int) -> list[dict]:
    rows = []
    threads_all = os.cpu_count() or 1
    for d in DS:
        rng = np.random.default_rng(d)
        w = LayerWeights.from_dict(random_layer_weights(rng, E, d, D_SMALL), "rnn.")
        fast.prepare(w)
        for T in TS:
            x = rng.standard_normal((T, E)).astype(np.float32)
            masks = {s: forced_mask(rng, T, s) for s in RATES}
            for threads in sorted({1, threads_all}):
                fns, max_reps = {}, {}
                for s, m in masks.items():
                    fns[("fast", s)] = lambda m=m: fast.run_layer_forced(w, x, m)
                fns[("fast-dense", 0.0)] = lambda: fast.run_dense(w, x)
                if threads == 1:
                    for s, m in masks.items():
                        fns[("reference", s)] = lambda m=m: reference_forced(w, x, m)
                        max_reps[("reference", s)] = ref_reps
                ort = ort_lstm(w, threads)
                if ort is not None:
                    fns[("ort", 0.0)] = lambda: ort(x)
                trun, torch = torch_lstm(w)
                if trun is not None:
                    torch.set_num_threads(threads)
                    fns[("torch", 0.0)] = lambda: trun(x)
                res = interleaved(fns, budget, max_reps)
                base = res.get(("ort", 0.0), (float("nan"), 0))[0]
                loop0 = res[("fast", 0.0)][0]
                dense = res[("fast-dense", 0.0)][0]
                for (backend, s), (sec, reps) in res.items():
                    skimmed = int(masks[s].sum())
                    row = {"d": d, "T": T, "threads": threads, "backend": backend, "skim_rate": s,
                           "us_per_token": 1e6 * sec / T, "reps": reps, "ratio_to_ort": sec / base,
                           "flop_ratio": flop_ratio(E, d, D_SMALL, T, skimmed) if backend in ("fast", "reference") else 1.0}
                    if backend == "fast":
                        row["speedup_vs_loop0"] = loop0 / sec
                        row["speedup_vs_dense"] = dense / sec
                        row["achieved_vs_loop0"] = row["speedup_vs_loop0"] / row["flop_ratio"]
                        row["achieved_vs_dense"] = row["speedup_vs_dense"] / row["flop_ratio"]
                    rows.append(row)
                fmt = "  ".join(f"{b}{'' if b in ('ort', 'torch', 'fast-dense') else f'@{s:g}'}={1e6 * v[0] / T:.2f}"
                                for (b, s), v in res.items())
                print(f"d={d:3d} T={T:3d} threads={threads}: {fmt}", flush=True)
    return rows


# --- part 2 -----------------------------------------------------------------------------------------
def real_models(n_texts: int, budget: float) -> list[dict]:
    from service.artifacts import load_artifact
    from service.families.classifier import Classifier
    from training import data

    rows = []
    for name, (dataset, dense_name) in REAL.items():
        folder, dense_folder = ROOT / "models" / name, ROOT / "models" / dense_name
        if not (folder / "manifest.json").is_file():
            print(f"{name}: not in models/, skipped")
            continue
        try:
            examples = data.load(dataset, "test")
        except FileNotFoundError as exc:
            print(f"{name}: no test data ({exc}), skipped")
            continue
        step = max(1, len(examples) // n_texts)  # spread over the split (IMDb's test file is sorted by label)
        texts = [ex.text for ex in examples[::step][:n_texts]]
        art = load_artifact(folder)
        model = Classifier(art, "fast")
        ids = [model.to_ids(model.tokenize(t)) for t in texts]
        ids = [i for i in ids if len(i)]
        tokens = sum(map(len, ids))
        ort_big = ort_lstm(model.layer, 1)

        def over_texts(fn):
            return lambda: [fn(i) for i in ids]

        thresholds = sorted(set(REAL_THRESHOLDS) | {model.default_threshold})  # 1.0: the dense form
        fns = {("fast", thr): over_texts(lambda i, thr=thr: model.forward(i, thr)) for thr in thresholds}
        if ort_big is not None:
            fns[("ort-lstm-op (same big cell)", 1.0)] = over_texts(
                lambda i: model.head_W @ ort_big(model.embed(i))[-1, 0, 0] + model.head_b)
        dense_version = None
        if (dense_folder / "manifest.json").is_file():
            try:
                dense_art = load_artifact(dense_folder)
                dense_version = dense_art.manifest.get("version")
                onnx_dense = Classifier(dense_art, "onnx")
                if onnx_dense.kernel_name == "onnx":
                    dense_ids = [onnx_dense.to_ids(onnx_dense.tokenize(t)) for t in texts]
                    dense_ids = [i for i in dense_ids if len(i)]
                    assert sum(map(len, dense_ids)) == tokens  # same tokenizer, same texts
                    fns[(f"ort {dense_name} (whole model)", 1.0)] = lambda: [onnx_dense.forward(i, 0.5) for i in dense_ids]
            except ImportError:
                pass
        res = interleaved(fns, budget, min_reps=3)
        # the reference: default threshold, a few texts, once or twice (it is slow)
        ref = Classifier(art, "reference")
        sub = ids[: max(3, len(ids) // 10)]
        sub_tokens = sum(map(len, sub))
        ref_res = interleaved({"ref": lambda: [ref.forward(i, model.default_threshold) for i in sub],
                               "fast": lambda: [model.forward(i, model.default_threshold) for i in sub]},
                              0.0, {"ref": 2, "fast": 5})
        outs = {thr: [model.forward(i, thr)[1] for i in ids] for thr in thresholds}
        dense_keys = [k for k in res if k[0].startswith("ort")]
        for (backend, thr), (sec, reps) in res.items():
            row = {"model": name, "version": art.manifest.get("version"), "sizes": art.manifest.get("sizes"),
                   "dataset": dataset, "texts": len(ids), "tokens": tokens, "backend": backend,
                   "threshold": thr, "us_per_token": 1e6 * sec / tokens, "reps": reps}
            if backend.startswith("ort ") and dense_version:
                row["dense_model_version"] = dense_version
            if backend == "fast":
                skimmed = sum(o.skimmed for o in outs[thr])
                w = model.layer
                row.update({"skim_rate": skimmed / tokens,
                            "flop_reduction": sum(F.layer_cost(w.input_size, w.hidden_size, w.small_size,
                                                               len(o.skim), o.skimmed, True).flops_full
                                                  for o in outs[thr]) /
                            sum(F.layer_cost(w.input_size, w.hidden_size, w.small_size, len(o.skim), o.skimmed,
                                             True).flops for o in outs[thr]),
                            "default": thr == model.default_threshold})
                for k in dense_keys:
                    row[f"speedup_vs[{k[0]}]"] = res[k][0] / sec
            rows.append(row)
        rows.append({"model": name, "dataset": dataset, "texts": len(sub), "tokens": sub_tokens,
                     "backend": "reference", "threshold": model.default_threshold,
                     "us_per_token": 1e6 * ref_res["ref"][0] / sub_tokens, "reps": ref_res["ref"][1],
                     "fast_us_per_token_same_texts": 1e6 * ref_res["fast"][0] / sub_tokens})
        for r in rows:
            if r["model"] == name:
                extra = f" skim={r['skim_rate']:.2f}" if "skim_rate" in r else ""
                print(f"{name:10s} {r['backend']:34s} thr={r['threshold']:.1f} {r['us_per_token']:7.3f} µs/token{extra}")
    return rows


# --- report -----------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "fast_avx2": fast.has_avx2(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    for mod in ("onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:
        info["load_average"] = os.getloadavg()[0]
    except OSError:
        pass
    info["caches"] = caches()
    return info


def caches() -> str:
    """cpu0's caches as the kernel reports them ("L1d 48K, L1i 64K, L2 2048K, L3 491520K shared by 0-1"):
    what decides whether a layer's weights stay near the core."""
    out = []
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size, shared = ((idx / f).read_text().strip() for f in ("level", "type", "size",
                                                                                   "shared_cpu_list"))
        except OSError:
            continue
        tag = {"Data": "d", "Instruction": "i"}.get(kind, "")
        out.append(f"L{level}{tag} {size}" + (f" shared by {shared}" if shared not in ("0", "") else ""))
    return ", ".join(out) or "unknown"


def targets(syn: list[dict], real: list[dict]) -> list[dict]:
    out = []
    one = [r for r in syn if r["threads"] == 1]

    def cell(backend, d, T, s=0.0):
        return next(r for r in one if r["backend"] == backend and r["d"] == d and r["T"] == T and r["skim_rate"] == s)

    for d in (100, 200):
        for T in TS:
            dense, loop0 = cell("fast-dense", d, T), cell("fast", d, T)
            out.append({"target": f"fast at 0% skim <= 1.1x ORT dense (d={d}, T={T}, 1 thread)",
                        "measured": f"dense form {dense['ratio_to_ort']:.2f}x, skim loop at s=0 {loop0['ratio_to_ort']:.2f}x",
                        "met": dense["ratio_to_ort"] <= 1.1})
    for d in DS:
        for s in (0.5, 0.9):
            r = cell("fast", d, 300, s)
            out.append({"target": f"speed-up at s={s} >= 80% of FLOP ratio (d={d}, T=300, 1 thread)",
                        "measured": f"FLOP ratio {r['flop_ratio']:.2f}; vs loop at s=0: {r['speedup_vs_loop0']:.2f}x "
                                    f"({100 * r['achieved_vs_loop0']:.0f}%); vs dense form: "
                                    f"{r['speedup_vs_dense']:.2f}x ({100 * r['achieved_vs_dense']:.0f}%)",
                        "met": r["achieved_vs_loop0"] >= 0.8,
                        "met_vs_dense_form": r["achieved_vs_dense"] >= 0.8})
    imdb = [r for r in real if r["model"] == "imdb-skim" and r["backend"] == "fast" and r.get("default")]
    if imdb:
        r = imdb[0]
        sp = {k[len("speedup_vs["):-1]: v for k, v in r.items() if k.startswith("speedup_vs[")}
        out.append({"target": "imdb-skim at its default threshold <= 1.5 µs/token (one core)",
                    "measured": f"{r['us_per_token']:.3f} µs/token (skim rate {r['skim_rate']:.2f})",
                    "met": r["us_per_token"] <= 1.5})
        for k, v in sp.items():
            out.append({"target": f"imdb-skim >= 3x faster than {k} on the same texts",
                        "measured": f"{v:.2f}x", "met": v >= 3.0})
    return out


def to_markdown(result: dict) -> str:
    m = result["machine"]
    L = ["# Kernel benchmark (median µs/token; ratios measured in one run)", "",
         f"Run {m['date']} on {m['cpu']} ({m['cores']} cores, load average {m.get('load_average', '?')} at the end), "
         f"Python {m['python']}, NumPy {m['numpy']}, onnxruntime {m.get('onnxruntime', '-')}, "
         f"torch {m.get('torch', '-')}, fast kernel AVX2 path: {m['fast_avx2']}.",
         f"Command: `{result['command']}`. Synthetic layers: e={E}, d'={D_SMALL}, random weights, forced skim "
         "rates; 'fast' = the compiled skim loop, 'fast-dense' = its dense form (all reads), 'ort' = ONNX "
         "Runtime's LSTM op on the big cell, 'torch' = torch.nn.LSTM. The compiled kernel is single-threaded "
         "per request in both thread settings; the reference is timed on one thread only.", ""]
    L += ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for t in result["targets"]:
        met = "yes" if t["met"] else "**no**"
        if "met_vs_dense_form" in t:
            met += " (vs dense form: " + ("yes" if t["met_vs_dense_form"] else "no") + ")"
        L.append(f"| {t['target']} | {t['measured']} | {met} |")
    syn = result["synthetic"]
    for threads in sorted({r["threads"] for r in syn}):
        L += ["", f"## Synthetic layers, {threads} thread{'s' if threads > 1 else ''} (µs/token, ratio to ORT dense)", "",
              "| d | T | ORT LSTM op | torch nn.LSTM | fast dense form | fast s=0 | fast s=0.5 | fast s=0.9 | reference s=0 | reference s=0.9 |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for d in DS:
            for T in TS:
                cells = {(r["backend"], r["skim_rate"]): r for r in syn if r["d"] == d and r["T"] == T and r["threads"] == threads}

                def f(k):
                    r = cells.get(k)
                    return "-" if r is None else f"{r['us_per_token']:.2f} ({r['ratio_to_ort']:.2f}x)"

                L.append(f"| {d} | {T} | {f(('ort', 0.0))} | {f(('torch', 0.0))} | {f(('fast-dense', 0.0))} | "
                         f"{f(('fast', 0.0))} | {f(('fast', 0.5))} | {f(('fast', 0.9))} | {f(('reference', 0.0))} | "
                         f"{f(('reference', 0.9))} |")
    L += ["", "## Skim speed-up vs the FLOP ratio (fast kernel, 1 thread)", "",
          "Speed-up = time at s=0 / time at s; achieved = speed-up / FLOP ratio (service/flops.py: full LSTM "
          "FLOPs / Skim-LSTM FLOPs at s). Two baselines: the same skim loop at s=0 (the same code path with "
          "every token read), and the dense form (input projection of all tokens as one GEMM).", "",
          "| d | T | s | FLOP ratio | speed-up vs loop s=0 | achieved | speed-up vs dense form | achieved |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in syn:
        if r["backend"] == "fast" and r["threads"] == 1 and r["skim_rate"] > 0:
            L.append(f"| {r['d']} | {r['T']} | {r['skim_rate']} | {r['flop_ratio']:.2f} | {r['speedup_vs_loop0']:.2f} | "
                     f"{100 * r['achieved_vs_loop0']:.0f}% | {r['speedup_vs_dense']:.2f} | {100 * r['achieved_vs_dense']:.0f}% |")
    real = result["real"]
    for name in dict.fromkeys(r["model"] for r in real):
        rows = [r for r in real if r["model"] == name]
        first = rows[0]
        dense_v = next((r["dense_model_version"] for r in rows if "dense_model_version" in r), None)
        L += ["", f"## {name}: Classifier.forward on {first['texts']} test texts of {first['dataset']} "
                  f"({first['tokens']} tokens, {first['tokens'] / first['texts']:.0f} per text), one thread", "",
              f"Model version {first.get('version')}, sizes {first.get('sizes')}"
              + (f"; the dense whole-model baseline's version {dense_v}." if dense_v else "."), "",
              "| backend | threshold | µs/token | skim rate | FLOP reduction | speed-ups vs ORT dense |",
              "| --- | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            if r["backend"] == "reference":
                continue
            sp = ", ".join(f"{k[len('speedup_vs['):-1]}: {v:.2f}x" for k, v in r.items() if k.startswith("speedup_vs["))
            thr = f"**{r['threshold']}** (default)" if r.get("default") else f"{r['threshold']}"
            L.append(f"| {r['backend']} | {thr} | {r['us_per_token']:.3f} | "
                     f"{r['skim_rate']:.2f} | {r['flop_reduction']:.2f} | {sp} |" if "skim_rate" in r else
                     f"| {r['backend']} | {thr} | {r['us_per_token']:.3f} | - | 1.00 | |")
        for r in rows:
            if r["backend"] == "reference":
                L.append(f"\nNumPy reference at the default threshold on {r['texts']} of these texts: "
                         f"{r['us_per_token']:.2f} µs/token (fast kernel on the same texts: "
                         f"{r['fast_us_per_token_same_texts']:.3f}).")
    L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing budgets (a smoke run)")
    ap.add_argument("--no-real", action="store_true", help="skip the trained models")
    ap.add_argument("--texts", type=int, default=200, help="test texts per trained model (default 200)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write kernels.json/kernels.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    budget, ref_reps, real_budget = (0.3, 1, 1.0) if args.quick else (2.0, 3, 20.0)
    syn = synthetic(budget, ref_reps)
    real = [] if args.no_real else real_models(args.texts, real_budget)
    result = {"command": " ".join(["python -m benchmarks.kernels", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine(), "seconds": round(time.perf_counter() - t0, 1),
              "synthetic": syn, "real": real}
    result["targets"] = targets(syn, real)
    for t in result["targets"]:
        print(f"[{'met' if t['met'] else 'NOT MET'}] {t['target']}: {t['measured']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "kernels.md").write_text(to_markdown(result), encoding="utf-8")
    print(f"wrote {args.out / 'kernels.json'} and kernels.md in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
