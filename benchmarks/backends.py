"""Backend benchmark: median µs/token of each backend for each classifier family, one thread.

    python -m benchmarks.backends [--quick] [--write-defaults]

Backends: reference (NumPy), fast (compiled C kernel, if built), onnx (ONNX Runtime: dense via the
LSTM op, skim via Loop/If). Families: lstm and skim-lstm, at T = 20 and 300 tokens and thresholds
0.5 and 1.0, timing Classifier.forward (the model part of a request: embedding, layer, head).
Models: the trained sst2-lstm / sst2-skim artifacts when models/ has them (so the skim rate at 0.5 is
a real one), else random artifacts of the same sizes (e=50, d=100, d'=10).
Writes benchmarks/results/backends.json and backends.md. The default backend of a family is the one
with the lowest mean of its per-cell medians; --write-defaults records it in service/engine/defaults.json
(which build_model(kernel="auto") reads; tests/test_onnx_backend.py checks that the two agree).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SKIMSERVE_ONNX_THREADS"):
    os.environ[_v] = "1"  # one thread everywhere, before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service.artifacts import load_artifact  # noqa: E402
from service.engine.backends import DEFAULTS_FILE, get_layer_kernel  # noqa: E402
from service.families.classifier import Classifier  # noqa: E402
from tests.random_model import make_random_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FAMILIES = {"lstm": "sst2-lstm", "skim-lstm": "sst2-skim"}
LENGTHS = (20, 300)
THRESHOLDS = (0.5, 1.0)


def available_backends() -> list[str]:
    names = ["reference"]
    for k in ("fast", "onnx"):
        if get_layer_kernel(k)[0] == k:
            names.append(k)
    return names


def artifacts(tmp: Path) -> dict[str, Path]:
    out = {}
    for fam, name in FAMILIES.items():
        real = ROOT / "models" / name
        if (real / "manifest.json").is_file():
            out[fam] = real
        else:
            out[fam] = tmp / name
            make_random_classifier(out[fam], e=50, d=100, d_small=10 if fam == "skim-lstm" else 0, seed=7, name=name)
    return out


def median_us_per_token(model: Classifier, ids: np.ndarray, thr: float, budget_s: float, min_reps: int) -> tuple[float, int]:
    model.forward(ids, thr)  # warm-up
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        model.forward(ids, thr)
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return 1e6 * statistics.median(times) / len(ids), len(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing budget per cell")
    ap.add_argument("--write-defaults", action="store_true", help="record the fastest backend per family")
    args = ap.parse_args(argv)
    budget, min_reps = (0.15, 3) if args.quick else (0.6, 5)
    backends = available_backends()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam, folder in artifacts(Path(tmp)).items():
            art = load_artifact(folder)
            rng = np.random.default_rng(0)
            ids_by_len = {T: rng.integers(2, len(art.vocab), T).astype(np.int64) for T in LENGTHS}
            for backend in backends:
                model = Classifier(art, backend)
                assert model.kernel_name == backend
                for T in LENGTHS:
                    for thr in THRESHOLDS:
                        us, reps = median_us_per_token(model, ids_by_len[T], thr, budget, min_reps)
                        skimmed = int(model.forward(ids_by_len[T], thr)[1].skimmed)
                        rows.append({"family": fam, "model": art.name, "backend": backend, "tokens": T,
                                     "threshold": thr, "skimmed": skimmed, "us_per_token": round(us, 3),
                                     "reps": reps})
                        print(f"{fam:10s} {backend:10s} T={T:4d} thr={thr:.1f} skimmed={skimmed:4d} {us:9.2f} µs/token")
    fastest = {}
    for fam in FAMILIES:
        means = {b: statistics.mean(r["us_per_token"] for r in rows if r["family"] == fam and r["backend"] == b)
                 for b in backends}
        fastest[fam] = min(means, key=means.get)
    sizes = {fam: load_artifact(p).manifest["sizes"] for fam, p in artifacts(Path(tempfile.mkdtemp())).items()}
    result = {"rows": rows, "fastest": fastest, "backends": backends, "threads": 1,
              "rule": "lowest mean over (tokens, threshold) cells of the median µs/token of Classifier.forward",
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "sizes": sizes}
    try:
        import onnxruntime

        result["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "backends.md").write_text(to_markdown(result), encoding="utf-8")
    print(f"fastest per family: {fastest}; wrote {RESULTS / 'backends.json'} and backends.md")
    if args.write_defaults:
        DEFAULTS_FILE.write_text(json.dumps({
            "kernel_by_family": fastest,
            "source": "benchmarks/results/backends.json (python -m benchmarks.backends --write-defaults)",
            "rule": result["rule"]}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {DEFAULTS_FILE}")
    return 0


def to_markdown(result: dict) -> str:
    backends = result["backends"]
    lines = ["# Backend benchmark (median µs/token of Classifier.forward, one thread)", "",
             f"Machine: {result['machine']}. Sizes: {result['sizes']}.", "",
             "| family | model | tokens | threshold | skimmed | " + " | ".join(backends) + " |",
             "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in backends) + " |"]
    cells = {}
    for r in result["rows"]:
        cells.setdefault((r["family"], r["model"], r["tokens"], r["threshold"]), {})[r["backend"]] = r
    for (fam, model, T, thr), by in cells.items():
        skimmed = by[backends[0]]["skimmed"]
        lines.append(f"| {fam} | {model} | {T} | {thr} | {skimmed} | "
                     + " | ".join(f"{by[b]['us_per_token']:.2f}" if b in by else "-" for b in backends) + " |")
    lines += ["", f"Default backend per family ({result['rule']}): "
              + ", ".join(f"**{f}: {b}**" for f, b in result["fastest"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
