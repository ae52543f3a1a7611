"""AntMan benchmark (Wang et al. 2019, Table 5's shape): compressed LSTM layers against the dense LSTM, in one run.

    python -m benchmarks.antman [--quick] [--sizes 100 400 800 1200 1600] [--models-dir models] [--texts N]

Part 1, synthetic layers (random weights): batch 1, T=100 tokens, input = hidden = d in --sizes, one thread;
both products (W_ih, W_hh) compressed alike: LGP-Shuffle g=2 and g=10, LowRank-LGP (g=2, r=2) and
(g=10, r=2), and the dense LSTM of the same sizes. Runtimes:
  - fast: the compiled kernel (service/engine/_antmankernel.c for the AntMan layers, _skimkernel.c's dense
    form for the dense LSTM), when built;
  - reference: the NumPy oracle (service/cells/antman_modules.py in the gated loop; one BLAS thread, few
    repeats);
  - ort: ONNX Runtime's LSTM op on the dense LSTM (a compressed LSTM has no ORT op).
  Reported: median µs/token; theoretical speed-up = dense read FLOPs / AntMan read FLOPs (service/flops.py,
  elementwise term included; products only beside it); measured speed-up of the AntMan layer in the fast
  kernel over the dense LSTM in the fast kernel and over ORT's LSTM op, and reference over reference.
Part 2, the AntMan models in --models-dir (cells antman-lstm / antman-skim-lstm) and their dense teachers
  (manifest `teacher`), on the test split's first --texts texts when the data is there (training/data.py,
  SKIMSERVE_DATA), else random token ids (said so in the table): compression, FLOPs against the teacher
  (flop_reduction at the default threshold, from service/flops.py), test accuracy / skim rate from the
  model card (card.json, training/evaluate.py) when the model ships one, and median µs/token of
  Classifier.forward with the reference and the fast kernel, interleaved.
Timing: the cells of a group are timed in interleaved rounds (benchmarks/kernels.py's `interleaved`), so the
machine's drift hits them alike; read the ratios, absolute times drift on shared machines.
Writes benchmarks/results/antman.json and antman.md (or --out).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core, as Table 5 (set before numpy loads)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service import flops as F  # noqa: E402
from service.cells import get_cell  # noqa: E402
from service.cells.antman_modules import expected_shapes, random_tensors  # noqa: E402
from service.cells.gated import run_reference  # noqa: E402
from service.engine.backends import get_backend  # noqa: E402
from service.engine.layer import LayerWeights  # noqa: E402

from .kernels import interleaved, machine, ort_lstm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (100, 400, 800, 1200, 1600)
T = 100
CONFIGS = {  # Table 5's rows; the same module for both products
    "LGP-Shuffle g=2": {"module": "lgp-shuffle", "groups": 2},
    "LGP-Shuffle g=10": {"module": "lgp-shuffle", "groups": 10},
    "LowRank-LGP g=2 r=2": {"module": "lowrank-lgp", "groups_in": 2, "groups_out": 2, "rank": 2},
    "LowRank-LGP g=10 r=2": {"module": "lowrank-lgp", "groups_in": 10, "groups_out": 10, "rank": 2},
}
ANTMAN_CELLS = ("antman-lstm", "antman-skim-lstm")


def fast_kernel(cell: str):
    """The compiled kernel's run_layer for `cell`, or None when it is not built / does not run the cell."""
    backend = get_backend("fast", cell)
    return backend.run_layer if backend.name == "fast" else None


def antman_layer(d: int, spec: dict, rng: np.random.Generator):
    """A random 'antman-lstm' layer, input = hidden = d, both products compressed by `spec`."""
    w = {}
    for product in ("W_ih", "W_hh"):
        w.update(random_tensors(spec, 4 * d, d, rng, "rnn." + product))
    w["rnn.b"] = (rng.standard_normal(4 * d) * 0.1).astype(np.float32)
    return get_cell("antman-lstm").weights(w, "rnn.")


def dense_layer(d: int, rng: np.random.Generator) -> LayerWeights:
    r = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
    return LayerWeights(r(4 * d, d), r(4 * d, d), (rng.standard_normal(4 * d) * 0.1).astype(np.float32))


# --- part 1 -----------------------------------------------------------------------------------------
def synthetic(sizes, budget: float, ref_reps: int) -> list[dict]:
    rows = []
    fast_am, fast_dense = fast_kernel("antman-lstm"), fast_kernel("lstm")
    for d in sizes:
        rng = np.random.default_rng(d)
        x = rng.standard_normal((T, d)).astype(np.float32)
        dense = dense_layer(d, rng)
        layers = {name: antman_layer(d, spec, rng) for name, spec in CONFIGS.items()}
        fns, max_reps = {}, {}
        fns[("dense", "reference")] = lambda: run_reference(dense, x, 1.0)
        max_reps[("dense", "reference")] = ref_reps
        if fast_dense:
            fns[("dense", "fast")] = lambda: fast_dense(dense, x, 1.0)
        ort = ort_lstm(dense, 1)
        if ort is not None:
            fns[("dense", "ort")] = lambda: ort(x)
        for name, w in layers.items():
            fns[(name, "reference")] = lambda w=w: run_reference(w, x, 1.0)
            max_reps[(name, "reference")] = ref_reps
            if fast_am:
                fns[(name, "fast")] = lambda w=w: fast_am(w, x, 1.0)
        res = interleaved(fns, budget, max_reps)
        us = {k: 1e6 * sec / T for k, (sec, _) in res.items()}
        dense_read = F.read_flops(d, d)
        for name in ["dense", *layers]:
            row = {"d": d, "T": T, "config": name, "spec": CONFIGS.get(name, {"module": "dense"})}
            if name == "dense":
                macs = 2 * F.dense_macs(4 * d, d)
                read = dense_read
            else:
                macs = sum(layers[name].read_macs)
                read = F.antman_read_flops(d, *layers[name].read_macs)
            row.update({"macs_per_token": macs, "read_flops": read,
                        "theoretical_speedup": dense_read / read,
                        "theoretical_speedup_products": 2 * F.dense_macs(4 * d, d) / macs})
            for kernel in ("reference", "fast", "ort"):
                if (name, kernel) in us:
                    row[f"{kernel}_us_per_token"] = us[(name, kernel)]
                    row[f"{kernel}_reps"] = res[(name, kernel)][1]
            if name != "dense":
                if "fast_us_per_token" in row and ("dense", "fast") in us:
                    row["speedup_vs_fast_dense"] = us[("dense", "fast")] / row["fast_us_per_token"]
                if "fast_us_per_token" in row and ("dense", "ort") in us:
                    row["speedup_vs_ort_dense"] = us[("dense", "ort")] / row["fast_us_per_token"]
                row["reference_speedup_vs_reference_dense"] = us[("dense", "reference")] / row["reference_us_per_token"]
            rows.append(row)
            print(f"d={d:5d} {name:22s} theory {row['theoretical_speedup']:5.2f}x  "
                  + "  ".join(f"{k} {row[k + '_us_per_token']:8.2f}" for k in ("reference", "fast", "ort")
                              if k + "_us_per_token" in row) + " µs/token"
                  + (f"  measured {row['speedup_vs_fast_dense']:.2f}x" if "speedup_vs_fast_dense" in row else ""))
    return rows


# --- part 2 -----------------------------------------------------------------------------------------
def _cell(manifest: dict) -> str:
    return manifest.get("cell", manifest.get("family", ""))


def _dataset(manifest: dict) -> str | None:
    return (manifest.get("training") or {}).get("dataset")


def antman_models(models_dir: Path) -> list[tuple[Path, dict, str]]:
    """(folder, manifest, role) of the AntMan models in models_dir, dataset by dataset, and beside them what
    they compare with when it is there: the dense teacher, the narrow base model and the Skim-LSTMs of the
    same dataset (roles "antman", "teacher", "base", "skim")."""
    found = {}
    for folder in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        try:
            found[folder] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    by_name = {m.get("name"): (f, m) for f, m in found.items()}
    students = [(f, m) for f, m in found.items() if _cell(m) in ANTMAN_CELLS]
    out, seen = [], set()

    def add(entry, role):
        if entry and entry[0] not in seen:
            seen.add(entry[0])
            out.append((*entry, role))

    for ds in sorted({_dataset(m) or "" for _, m in students}):
        group = [(f, m) for f, m in students if (_dataset(m) or "") == ds]
        for entry in group:
            add(entry, "antman")
        for _, m in group:
            add(by_name.get(m.get("teacher")), "teacher")
            add(by_name.get((m.get("base") or {}).get("name")), "base")
        if ds:
            for f, m in found.items():
                if _cell(m) == "skim-lstm" and _dataset(m) == ds and m.get("task") == "classify":
                    add((f, m), "skim")
    return out


def texts_for(model, dataset: str | None, n: int, rng) -> tuple[list[np.ndarray], str]:
    if dataset:
        try:
            from training import data

            examples = data.load(dataset, "test")
            step = max(1, len(examples) // n)  # spread over the split (some test files are sorted by label)
            ids = [model.to_ids(model.tokenize(ex.text)) for ex in examples[::step][:n]]
            return [i for i in ids if len(i)], f"{dataset} test, {n} texts spread over the split"
        except (ImportError, FileNotFoundError, KeyError, ValueError) as exc:
            print(f"{model.name}: no {dataset} test data ({exc}); random token ids")
    vocab = len(model.artifact.vocab)
    return [rng.integers(2, vocab, T) for _ in range(n)], f"random token ids, {n} x {T}"


def card_figures(folder: Path) -> dict:
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        at = card["evaluation"]["at_default"]
    except (OSError, ValueError, KeyError):
        return {}
    return {"card_accuracy": at.get("accuracy"), "card_skim_rate": at.get("skim_rate"),
            "card_flop_reduction": at.get("flop_reduction"), "card_split": card.get("split"),
            "card_limit": card.get("limit")}


def real_models(models_dir: Path, n_texts: int, budget: float, ref_reps: int) -> list[dict]:
    from service.artifacts import load_artifact
    from service.families import build_model

    rows = []
    rng = np.random.default_rng(0)
    for folder, manifest, role in antman_models(models_dir):
        art = load_artifact(folder)
        cell = art.spec.cell
        ref = build_model(art, "reference")
        fast = build_model(art, "fast")
        dataset = (manifest.get("training") or {}).get("dataset")
        ids, source = texts_for(ref, dataset, n_texts, rng)
        tokens = int(sum(map(len, ids)))
        thr = ref.default_threshold
        fns = {"reference": lambda: [ref.forward(i, thr) for i in ids]}
        if fast.stack.layers[0].backend.name == "fast":
            fns["fast"] = lambda: [fast.forward(i, thr) for i in ids]
        res = interleaved(fns, budget, {"reference": ref_reps})
        outs = [ref.forward(i, thr)[1] for i in ids]
        costs = [ref.layer_cost(o) for o in outs]
        row = {"model": art.name, "role": role, "cell": cell, "version": art.manifest.get("version"),
               "sizes": {k: art.spec.sizes.get(k) for k in ("embed", "hidden", "small_hidden")},
               "compression": {k: v.as_dict() for k, v in (art.spec.compression or {}).items()} or None,
               "teacher": manifest.get("teacher"), "distillation": manifest.get("distillation"),
               "texts": source, "tokens": tokens, "threshold": thr,
               "skim_rate": sum(o.skimmed for o in outs) / tokens,
               "flop_reduction": sum(c.flops_full for c in costs) / sum(c.flops for c in costs),
               "flops_per_token": sum(c.flops for c in costs) / tokens,
               **card_figures(folder)}
        for k, (sec, reps) in res.items():
            row[f"{k}_us_per_token"] = 1e6 * sec / tokens
            row[f"{k}_reps"] = reps
        if "fast" in res:
            row["fast_speedup_vs_reference"] = res["reference"][0] / res["fast"][0]
        rows.append(row)
        print(f"{art.name:22s} {role:8s} {cell:17s} flop_reduction {row['flop_reduction']:5.2f}  "
              + "  ".join(f"{k} {row[k + '_us_per_token']:.2f}" for k in res) + " µs/token")
    return rows


# --- report -----------------------------------------------------------------------------------------
def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def compression_text(comp: dict | None) -> str:
    if not comp:
        return "dense"

    def one(s):
        extra = ", ".join(f"{k}={v}" for k, v in s.items() if k != "module")
        return s["module"] + (f" ({extra})" if extra else "")

    return "; ".join(f"{p}: {one(s)}" for p, s in comp.items())


def targets(syn: list[dict]) -> list[dict]:
    """Issue 18's speed target: LGP-Shuffle g=10 at d >= 800, measured (fast vs fast dense) >= theoretical."""
    out = []
    for r in syn:
        if r["config"] == "LGP-Shuffle g=10" and r["d"] >= 800 and "speedup_vs_fast_dense" in r:
            out.append({"target": f"LGP-Shuffle g=10 at d={r['d']}: measured speed-up >= theoretical",
                        "measured": round(r["speedup_vs_fast_dense"], 2),
                        "theoretical": round(r["theoretical_speedup"], 2),
                        "met": r["speedup_vs_fast_dense"] >= r["theoretical_speedup"]})
    return out


def to_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# AntMan benchmark", "",
             f"`{result['command']}` on {m['cpu']} ({m['cores']} cores, one thread used), {m['date']}; "
             f"load average {m.get('load_average', float('nan')):.1f} at the end; fast kernel AVX2: {m.get('fast_avx2')}; "
             f"AntMan fast kernel built: {result['antman_fast_kernel']}; caches: {m.get('caches', 'not recorded')}.",
             "Medians of interleaved rounds; read the ratios (absolute times drift on a shared machine).", "",
             f"## Table 5's shape: batch 1, T={T}, input = hidden = d, one thread", "",
             "| d | layer | theoretical speed-up (products only) | reference µs/token | fast µs/token | ORT LSTM µs/token "
             "| measured speed-up vs fast dense | vs ORT dense | reference vs reference dense |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["synthetic"]:
        lines.append(
            f"| {r['d']} | {r['config']} | {r['theoretical_speedup']:.2f}x ({r['theoretical_speedup_products']:.2f}x) "
            f"| {_f(r.get('reference_us_per_token'), '.1f')} | {_f(r.get('fast_us_per_token'), '.2f')} "
            f"| {_f(r.get('ort_us_per_token'), '.2f')} | {_f(r.get('speedup_vs_fast_dense'), '.2f')} "
            f"| {_f(r.get('speedup_vs_ort_dense'), '.2f')} | {_f(r.get('reference_speedup_vs_reference_dense'), '.2f')} |")
    if result.get("targets"):
        lines += ["", "Target (issue 18): " + "; ".join(
            f"{t['target'].split(':')[0]}: {t['measured']:.2f}x vs {t['theoretical']:.2f}x "
            f"({'met' if t['met'] else 'NOT met'})" for t in result["targets"]) + "."]
    lines += ["", "## Models", ""]
    if not result["models"]:
        lines.append(f"No AntMan model in `{result['models_dir']}`.")
    else:
        lines += ["Each model at its default threshold on the same texts. `flop_reduction` is against each model's "
                  "own full LSTM (for AntMan models: the dense teacher); FLOPs/token (layer and head) compares "
                  "across rows.", "",
                  "| model | role | cell | compression | teacher | FLOPs/token | flop_reduction | skim rate "
                  "| test accuracy (card) | reference µs/token | fast µs/token | texts |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in result["models"]:
            acc = r.get("card_accuracy")
            lines.append(
                f"| {r['model']} | {r['role']} | {r['cell']} | {compression_text(r['compression'])} "
                f"| {r['teacher'] or '-'} | {r['flops_per_token']:,.0f} | {r['flop_reduction']:.2f}x "
                f"| {r['skim_rate']:.1%} | {'-' if acc is None else f'{100 * acc:.2f}%'} "
                f"| {_f(r.get('reference_us_per_token'), '.2f')} | {_f(r.get('fast_us_per_token'), '.2f')} "
                f"| {r['texts']} |")
    lines.append("")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as the reader can reproduce it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timing budgets (a smoke run)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="input = hidden sizes d")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--texts", type=int, default=100, help="test texts per model (default 100)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write antman.json / antman.md")
    args = ap.parse_args(argv)
    for d in args.sizes:
        for spec in CONFIGS.values():
            expected_shapes(spec, 4 * d, d)  # refuse sizes the groups / rank do not divide, before timing
    t0 = time.perf_counter()
    budget, ref_reps = (0.2, 1) if args.quick else (15.0, 3)
    syn = synthetic(args.sizes, budget, ref_reps)
    models = real_models(args.models_dir, args.texts, budget, ref_reps)
    result = {"command": " ".join(["python -m benchmarks.antman", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine(), "antman_fast_kernel": fast_kernel("antman-lstm") is not None,
              "models_dir": _shown(args.models_dir), "seconds": round(time.perf_counter() - t0, 1),
              "synthetic": syn, "targets": targets(syn), "models": models}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "antman.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "antman.md").write_text(to_markdown(result), encoding="utf-8")
    print(f"wrote {args.out / 'antman.json'} and antman.md in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
