"""AntMan accuracy through the running server: students against their dense teacher, with the AntMan+skim model,
the narrow base LSTM and the same dataset's Skim-LSTMs, in one table (issue 18's accuracy targets).

    python -m benchmarks.antman_accuracy [--models-dir models] [--server URL] [--limit N]

The models are those benchmarks/antman.py tabulates (every AntMan model in --models-dir and, when they are
there, its teacher, its base and the Skim-LSTMs of its dataset). Each answers the whole test split of its
dataset (training/data.py; SKIMSERVE_DATA) through POST /classify of a server (started here on the
models dir, one pool thread, unless --server names a running one), batches of 32 texts, at the model's
default threshold. From the responses: accuracy, skim rate, FLOPs per token and flop_reduction
(sum flops_full / sum flops: against the dense teacher for AntMan models). Targets: a student at about 2x
within 1 point of its teacher, at about 10x within 2 points (by the name suffix -antman-2x / -antman-10x).
Writes benchmarks/results/antman_accuracy.json and .md (or --out).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from .antman import ROOT, RESULTS, antman_models, compression_text

BATCH = 32
TARGET_POINTS = {2: 1.0, 10: 2.0}   # nominal compression -> allowed accuracy drop against the teacher


def load_split(dataset: str, split: str, limit: int | None):
    """[(text, label index)] of a split (the test split unless told)."""
    from training import data

    return [(ex.text, ex.label) for ex in data.load(dataset, split, limit=limit)]


def evaluate(client, url: str, name: str, labels: list[str], examples) -> dict:
    correct = tokens = skimmed = flops = flops_full = 0
    for i in range(0, len(examples), BATCH):
        chunk = examples[i:i + BATCH]
        r = client.post(f"{url}/classify", params={"model": name}, json={"texts": [t for t, _ in chunk]})
        r.raise_for_status()
        for (_, y), res in zip(chunk, r.json()["results"]):
            correct += int(labels.index(res["label"]) == y)
            tokens += res["tokens"]
            skimmed += res["skimmed"]
            flops += res["flops"]
            flops_full += res["flops_full"]
    return {"examples": len(examples), "accuracy": correct / len(examples), "tokens": tokens,
            "skim_rate": skimmed / tokens if tokens else 0.0, "flops_per_token": flops / tokens if tokens else 0.0,
            "flop_reduction": flops_full / flops if flops else 1.0}


def nominal(name: str) -> int | None:
    m = re.search(r"-antman-(\d+)x$", name)
    return int(m.group(1)) if m else None


MEASURED = ("dataset", "model", "role", "cell", "compression", "teacher", "distillation", "examples", "accuracy",
            "tokens", "skim_rate", "flops_per_token", "flop_reduction")


def rows_for(client, url: str, models_dir: Path, split: str, limit: int | None,
             kept: dict[str, dict] | None = None) -> list[dict]:
    """kept: rows (by model name) carried over from an earlier run of the same split instead of measured."""
    rows, teachers, splits = [], {}, {}
    for folder, manifest, role in antman_models(models_dir):
        if kept and manifest["name"] in kept:
            row = {k: kept[manifest["name"]][k] for k in MEASURED}
            rows.append(row)
            if role == "teacher":
                teachers[row["model"]] = row
            continue
        dataset = (manifest.get("training") or {}).get("dataset")
        if not dataset:
            print(f"{manifest['name']}: no training.dataset in its manifest, skipped")
            continue
        if dataset not in splits:
            splits[dataset] = load_split(dataset, split, limit)
        row = {"dataset": dataset, "model": manifest["name"], "role": role,
               "cell": manifest.get("cell", manifest.get("family")), "compression": manifest.get("compression"),
               "teacher": manifest.get("teacher"), "distillation": manifest.get("distillation"),
               **evaluate(client, url, manifest["name"], manifest["labels"], splits[dataset])}
        rows.append(row)
        if role == "teacher":
            teachers[row["model"]] = row
        print(f"{row['model']:22s} {role:8s} acc {100 * row['accuracy']:.2f}%  skim {100 * row['skim_rate']:.1f}%  "
              f"flop_reduction {row['flop_reduction']:.2f}x")
    bases = {r["dataset"]: r for r in rows if r["role"] == "base"}
    teacher_of = {r["dataset"]: r for r in rows if r["role"] == "teacher"}
    for row in rows:
        # cost ratios from FLOPs per token (same tokens in every row of a dataset), so that every row compares
        # with both the dense teacher and the narrow d=100 base whatever its own flops_full counts
        for key, ref in (("vs_teacher", teacher_of.get(row["dataset"])), ("vs_base", bases.get(row["dataset"]))):
            if ref is not None and row["flops_per_token"]:
                row[f"flop_reduction_{key}"] = ref["flops_per_token"] / row["flops_per_token"]
        t = teachers.get(row["teacher"]) if row["role"] == "antman" else None
        if t is None:
            continue
        row["points_vs_teacher"] = 100 * (row["accuracy"] - t["accuracy"])
        k = nominal(row["model"])
        if k in TARGET_POINTS:
            row["target"] = f"within {TARGET_POINTS[k]:g} point(s) of {t['model']} at {k}x"
            row["met"] = row["points_vs_teacher"] >= -TARGET_POINTS[k]
    return rows


def to_markdown(result: dict) -> str:
    lines = ["# AntMan accuracy through the server", "",
             f"`{result['command']}`; split `{result['split']}`"
             + (f" (first {result['limit']} examples)" if result["limit"] else " (whole split)")
             + "; each model at its default threshold through `POST /classify`."
             + (f" Rows of {', '.join(result['carried_over']['models'])} carried over from `{result['carried_over']['from']}`"
                " (same split; those models unchanged)." if result.get("carried_over") else ""), ""]
    if not result["rows"]:
        return "\n".join(lines + [f"No AntMan model in `{result['models_dir']}`.", ""])
    lines += ["| dataset | model | role | compression | examples | accuracy % | vs teacher (points) | skim rate % "
              "| FLOPs/token | flop_reduction (server) | FLOP cut vs teacher | FLOP cut vs d=100 base | target |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        target = f"{r['target']}: {'met' if r['met'] else 'NOT met'}" if "target" in r else "-"
        vs = f"{r['points_vs_teacher']:+.2f}" if "points_vs_teacher" in r else "-"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['role']} | {compression_text(r['compression'])} "
                     f"| {r['examples']} | {100 * r['accuracy']:.2f} | {vs} | {100 * r['skim_rate']:.1f} "
                     f"| {r['flops_per_token']:,.0f} | {r['flop_reduction']:.2f}x | {_ratio(r, 'vs_teacher')} "
                     f"| {_ratio(r, 'vs_base')} | {target} |")
    lines += ["", "flop_reduction (server): sum of the responses' flops_full / sum of flops; flops_full is the dense "
              "teacher's cost for AntMan models (cells antman-*) and the model's own full LSTM otherwise. "
              "FLOP cut vs teacher / vs d=100 base: that model's FLOPs per token over this row's, on the same tokens "
              "(> 1: cheaper than it). Skimming models at their measured skim rate.", ""]
    return "\n".join(lines)


def _ratio(row: dict, key: str) -> str:
    v = row.get(f"flop_reduction_{key}")
    return "-" if v is None else f"{v:.2f}x"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--server", default=None, help="URL of a running server serving these models")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="first N examples of each split (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--update", nargs="+", default=None, metavar="MODEL",
                    help="measure only these models; the other rows come from the committed --out/antman_accuracy.json "
                         "(same split and limit; a retrained student without the half-hour rerun of every teacher)")
    args = ap.parse_args(argv)
    import httpx

    kept = None
    if args.update:
        old = json.loads((args.out / "antman_accuracy.json").read_text(encoding="utf-8"))
        if (old["split"], old["limit"]) != (args.split, args.limit):
            raise SystemExit(f"--update: the committed run is of split {old['split']} limit {old['limit']}")
        kept = {r["model"]: r for r in old["rows"] if r["model"] not in args.update}
        args.update_of = old["command"]
        prior = old.get("carried_over")
        if prior and set(kept) <= set(prior["models"]):   # those rows came from the run before that one
            args.update_of = prior["from"]

    t0 = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        if args.server:
            rows = rows_for(client, args.server.rstrip("/"), args.models_dir, args.split, args.limit, kept)
        else:
            sys.path.insert(0, str(ROOT / "loadtest"))
            from _server import running_server

            env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            with running_server(args.models_dir, env=env, timeout=180,
                                extra=["--pool-threads", "1", "--max-batch", str(BATCH)]) as url:
                rows = rows_for(client, url, args.models_dir, args.split, args.limit, kept)
    from .antman import _shown

    result = {"command": " ".join(["python -m benchmarks.antman_accuracy",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "models_dir": _shown(args.models_dir), "split": args.split, "limit": args.limit,
              "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    if kept:
        result["carried_over"] = {"from": args.update_of, "models": sorted(kept)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "antman_accuracy.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "antman_accuracy.md").write_text(to_markdown(result), encoding="utf-8")
    print(f"wrote {args.out / 'antman_accuracy.json'} and antman_accuracy.md in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
