"""Per-request FLOP budgets through a live server: the cap on every response, accuracy and latency by budget.

  python -m benchmarks.budget [--model imdb-skim] [--texts 500] [--budgets 0.1,0.2,0.3,0.5]
      -> benchmarks/results/budget.{json,md}

A `skimserve serve` subprocess (one worker, one model thread, the shipped models, loopback, one keep-alive
connection) answers `POST /classify?model=M&budget=b` for a seeded sample of the model's test split
(IMDb: long reviews), and the same texts without a budget (the default threshold) as the reference row.
Configurations are interleaved per text (rotated), so machine noise hits each alike.

What it checks on every response, and states: flops / flops_full <= max(budget, floor) + head share, where
the floor is what skimming every token costs (the decision layer runs on every token: the cap includes it,
so a budget below the floor skims everything and costs exactly the floor), and the head share is the
classifier head's FLOPs over flops_full (the head runs once per text, outside the cap). A response above
the bound is counted as a violation (there should be none) and makes the script exit 1.
Accuracy on the sample is printed beside the card's (dev, and test on the whole split,
training.calibrate_curve). Latency: client wall time per request and the server's model time
(`latency_ms`), medians and p90.
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from loadtest._server import running_server
from service.flops import head_flops

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def sample_texts(dataset: str, n: int, data_dir: str | None, seed: int) -> list:
    from training import data

    examples = data.load(dataset, "test", data_dir)
    return random.Random(seed).sample(examples, min(n, len(examples)))


def run(url: str, model: str, examples: list, budgets: list[float], labels: list[str]) -> dict[str, list[dict]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    configs = [None, *budgets]
    out: dict[str, list[dict]] = {label(b): [] for b in configs}
    for i, ex in enumerate(examples):
        body = json.dumps({"text": ex.text}).encode()
        order = configs[i % len(configs):] + configs[:i % len(configs)]
        for b in order:
            path = f"/classify?model={model}" + (f"&budget={b}" if b is not None else "")
            t0 = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            wall = time.perf_counter() - t0
            if r.status != 200:
                raise RuntimeError(f"{path}: HTTP {r.status} {data[:300]!r}")
            d = json.loads(data)
            out[label(b)].append({"correct": d["label"] == labels[ex.label], "label": d["label"],
                                  "flops": d["flops"], "flops_full": d["flops_full"], "tokens": d["tokens"],
                                  "skimmed": d["skimmed"], "wall_ms": 1000 * wall, "model_ms": d["latency_ms"],
                                  "threshold": d["threshold"], "source": d["threshold_source"]})
    conn.close()
    return out


def label(b) -> str:
    return "none" if b is None else f"{b:g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="imdb-skim")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--texts", type=int, default=500)
    p.add_argument("--budgets", default="0.1,0.2,0.3,0.5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(RESULTS / "budget"), help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    folder = Path(args.models_dir) / args.model
    manifest = json.loads((folder / "manifest.json").read_text())
    card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
    cal = card.get("calibration") or manifest.get("calibration") or {}
    floor = float(cal.get("floor_share", 0.0))
    labels = manifest["labels"]
    head = head_flops(manifest["sizes"]["hidden"], len(labels))
    examples = sample_texts(manifest["training"]["dataset"], args.texts, args.data_dir, args.seed)
    with running_server(args.models_dir, extra=["--workers", "1", "--pool-threads", "1", "--log-level", "warning"],
                        timeout=120) as url:
        # warm-up: a few requests of each configuration, not recorded
        run(url, args.model, examples[:5], budgets, labels)
        raw = run(url, args.model, examples, budgets, labels)
    by_budget = {r["budget"]: r for r in cal.get("budgets", [])}
    rows = []
    violations = 0
    for key, items in raw.items():
        b = None if key == "none" else float(key)
        shares = [it["flops"] / it["flops_full"] for it in items]
        bounds = [max(b, floor) + head / it["flops_full"] if b is not None else float("inf") for it in items]
        bad = sum(s > bound + 1e-12 for s, bound in zip(shares, bounds))
        violations += bad
        card_row = by_budget.get(b, {}) if b is not None else {}
        rows.append({
            "budget": b, "n": len(items), "accuracy": sum(it["correct"] for it in items) / len(items),
            "thresholds": sorted({str(it["threshold"]) for it in items}),
            "sources": sorted({it["source"] for it in items}),
            "max_flop_share": max(shares), "mean_flop_share": statistics.fmean(shares),
            "max_head_share": max(head / it["flops_full"] for it in items), "violations": bad,
            "skim_rate": sum(it["skimmed"] for it in items) / max(1, sum(it["tokens"] for it in items)),
            "wall_ms_median": statistics.median(it["wall_ms"] for it in items),
            "wall_ms_p90": quantile([it["wall_ms"] for it in items], 0.9),
            "model_ms_median": statistics.median(it["model_ms"] for it in items),
            "model_ms_p90": quantile([it["model_ms"] for it in items], 0.9),
            "card_dev_accuracy": card_row.get("dev_accuracy"), "card_test_accuracy": card_row.get("test_accuracy"),
        })
    tokens = [it["tokens"] for it in raw["none"]]
    record = {"command": "python -m benchmarks.budget " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
              "model": args.model, "texts": len(examples), "split": "test", "seed": args.seed,
              "tokens_median": statistics.median(tokens), "tokens_max": max(tokens), "floor_share": floor,
              "head_flops": head, "server": "one worker, one model thread, loopback, one keep-alive connection",
              "rows": rows, "violations": violations}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(record, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(record))
    print(markdown(record))
    return 1 if violations else 0


def markdown(rec: dict) -> str:
    lines = [f"# FLOP budgets through the server: {rec['model']}", "",
             f"`{rec['command']}` ({rec['date']}, {rec['server']}). {rec['texts']} test texts (seeded sample, "
             f"seed {rec['seed']}; median {rec['tokens_median']:.0f} tokens, longest {rec['tokens_max']}); every "
             "configuration on every text, interleaved.", "",
             f"Bound checked on every response: flops / flops_full <= max(budget, floor) + head share. Floor "
             f"{rec['floor_share']:.3f}: every token skimmed, the decision layer paid on every token (it is inside "
             f"the cap, so a budget under the floor costs the floor). Head: {rec['head_flops']} FLOPs once per "
             "text, outside the cap (its share is at most the `max head share` column). "
             f"**Violations: {rec['violations']}.**", "",
             "| budget | threshold (source) | accuracy % (sample) | card dev % | card test % | max FLOP share | "
             "mean FLOP share | max head share | skim rate % | violations | wall ms median | wall ms p90 | "
             "model ms median | model ms p90 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rec["rows"]:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        lines.append(
            f"| {'none' if r['budget'] is None else r['budget']} | {', '.join(r['thresholds'])} "
            f"({', '.join(r['sources'])}) | {100 * r['accuracy']:.2f} | {pct(r['card_dev_accuracy'])} | "
            f"{pct(r['card_test_accuracy'])} | {r['max_flop_share']:.4f} | {r['mean_flop_share']:.4f} | "
            f"{r['max_head_share']:.5f} | {100 * r['skim_rate']:.1f} | {r['violations']} | {r['wall_ms_median']:.2f} | "
            f"{r['wall_ms_p90']:.2f} | {r['model_ms_median']:.3f} | {r['model_ms_p90']:.3f} |")
    lines += ["", "Card columns: `models/<model>/card.md` (training.calibrate_curve: dev split; test = the whole "
              "test split, not this sample)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
