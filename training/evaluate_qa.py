"""Evaluate QA readers on a SQuAD split through the running server, and write their model cards.

  python -m training.evaluate_qa models/squad-lstm-att models/squad-skim-lstm-att    # test split
  python -m training.evaluate models/squad-skim-lstm-att                             # the same, one model

Starts `python -m service serve` on the models' folder (one model thread, one BLAS thread) unless --server
names a running one, sends every question to POST /qa (batches of `items`) at each threshold, and scores
the answers with the official SQuAD v1.1 metric (training/squad_metric.py). For each threshold: F1, EM,
skim rate overall and per layer/direction, FLOP reduction, and the model time per layer-step and per
context token as the server reports it (median over questions). It also checks that every answer is
exactly context[start:end] of the context as sent.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from service.artifacts import MANIFEST, read_manifest, refresh_checksums

from . import squad
from .runlog import command_line
from .squad_metric import exact_match_score, f1_score, metric_max_over_ground_truths

SKIM_THRESHOLDS = [round(0.1 * i, 1) for i in range(11)]
BATCH = 32
PAPER = {"f1": 75.5, "em": 67.0, "note": "LSTM+Att on the full SQuAD train set (87,599 questions), paper Table 4"}


def ask(client, url: str, model: str, threshold: float, examples) -> list[dict]:
    out = []
    for k in range(0, len(examples), BATCH):
        chunk = examples[k:k + BATCH]
        r = client.post(f"{url}/qa", params={"model": model, "threshold": threshold},
                        json={"items": [{"context": ex.context, "question": ex.question} for ex in chunk]})
        if r.status_code != 200:
            raise SystemExit(f"POST /qa answered {r.status_code}: {r.text[:300]}")
        out += r.json()["results"]
    return out


def score(examples, answers, threshold: float) -> dict:
    f1 = em = 0.0
    mismatched = 0
    layers: dict[str, list[int]] = {}
    flops = full = steps = skimmed = 0
    for ex, a in zip(examples, answers):
        truths = ex.answer_texts
        f1 += metric_max_over_ground_truths(f1_score, a["answer"], truths)
        em += metric_max_over_ground_truths(exact_match_score, a["answer"], truths)
        mismatched += ex.context[a["start"]:a["end"]] != a["answer"]
        flops, full = flops + a["flops"], full + a["flops_full"]
        steps, skimmed = steps + a["tokens"], skimmed + a["skimmed"]
        for layer in a["per_layer"]:
            acc = layers.setdefault(layer["layer"], [0, 0])
            acc[0] += layer["skimmed"]
            acc[1] += layer["tokens"]
    n = len(examples)
    return {"threshold": threshold, "f1": 100.0 * f1 / n, "em": 100.0 * em / n, "skim_rate": skimmed / steps,
            "skim_rate_per_layer": {k: s / t for k, (s, t) in layers.items()},
            "flop_reduction": full / flops, "answers_not_substring": mismatched,
            "per_token_us": statistics.median(a["per_token_us"] for a in answers),
            "per_context_token_us": statistics.median(1000.0 * a["latency_ms"] / a["context_tokens"] for a in answers)}


def card_markdown(card: dict) -> str:
    m, ev = card["model"], card["evaluation"]
    layers = list(ev["sweep"][0]["skim_rate_per_layer"])
    lines = [f"# {m['name']} (version {m['version']})", "",
             f"Extractive QA reader (LSTM+Att, Skim-RNN paper appendix A.1), cell `{m['cell']}`, "
             f"d={m['sizes'].get('hidden')}" + (f", d'={m['sizes']['small_hidden']}" if m['sizes'].get('small_hidden') else "")
             + f", two bidirectional layers, GloVe 50d. Trained on our SQuAD train split (8,179 questions, "
             "about 9% of SQuAD's training set), selected on dev; so F1/EM are far below the paper's "
             f"{PAPER['f1']} F1 ({PAPER['note']}) and comparable only with the other model trained here.", "",
             f"Evaluated on `{card['split']}` ({ev['examples']} questions) through the running server "
             f"(`POST /qa`, kernel `{card['kernel']}`, one model thread, {card['cpu']}); default threshold "
             f"{card['default_threshold']}. Skim rates count layer-steps (context tokens x 4 layer-directions). "
             "Per-step time: the model time the server reports, per layer-step, median over questions.", "",
             "| threshold | F1 | EM | skim % | " + " | ".join(f"{k} skim %" for k in layers)
             + " | FLOP reduction | µs / layer-step | µs / context token |",
             "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in layers) + " | ---: | ---: | ---: |"]
    for r in ev["sweep"]:
        lines.append(f"| {r['threshold']:g} | {r['f1']:.2f} | {r['em']:.2f} | {100 * r['skim_rate']:.1f} | "
                     + " | ".join(f"{100 * r['skim_rate_per_layer'][k]:.1f}" for k in layers)
                     + f" | {r['flop_reduction']:.2f}x | {r['per_token_us']:.2f} | {r['per_context_token_us']:.2f} |")
    lines += ["", f"Every answer is exactly `context[start:end]` of the context as sent: "
              f"{sum(r['answers_not_substring'] for r in ev['sweep'])} mismatches over the sweep.", "",
              f"Training: `{m['training_command']}`", ""]
    base = m.get("started_from")
    if base:
        lines += [f"Started from `{base['name']}` ({base['family']}, dev F1 {base['dev_f1']:.2f}), trained with "
                  f"`{base['command']}`" + (f"; distilled from `{base['teacher']}` (weights sha256 "
                  f"{base['teacher_weights_sha256'][:12]}...)" if base.get("teacher") else "") + ".", ""]
    if m.get("default_threshold_rule"):
        lines += [f"Default threshold: {m['default_threshold_rule']} (`default_threshold_selection` in the manifest).", ""]
    lines += [f"Reproduce: `{card['command']}`", ""]
    return "\n".join(lines)


def write_card(folder: Path, card: dict) -> None:
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / "card.md").write_text(card_markdown(card), encoding="utf-8")
    manifest = json.loads((folder / MANIFEST).read_text())
    for f in ("card.json", "card.md"):
        manifest["files"].setdefault(f, "")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    refresh_checksums(folder)


def evaluate(client, url: str, folder: Path, examples, args) -> dict:
    man = read_manifest(folder)
    skims = man["family"] != "lstm"
    default = float(man.get("default_threshold", 0.5))
    thresholds = sorted(set(SKIM_THRESHOLDS + [default])) if skims else [default]
    rows = []
    for thr in thresholds:
        t0 = time.perf_counter()
        rows.append(score(examples, ask(client, url, man["name"], thr, examples), thr))
        r = rows[-1]
        print(f"{man['name']} t={thr:.2f} F1={r['f1']:.2f} EM={r['em']:.2f} skim={100 * r['skim_rate']:.1f}% "
              + " ".join(f"{k}={100 * v:.0f}%" for k, v in r["skim_rate_per_layer"].items())
              + f" flop-r={r['flop_reduction']:.2f}x {r['per_token_us']:.2f}us/step ({time.perf_counter() - t0:.0f}s)",
              file=sys.stderr)
    return {
        "model": {"name": man["name"], "version": man.get("version"), "task": man["task"], "cell": man["family"],
                  "sizes": man["sizes"], "training_command": man["training"]["command"],
                  "started_from": man["training"].get("base"),
                  "default_threshold_rule": (man.get("default_threshold_selection") or {}).get("rule")},
        "dataset": "squad", "split": args.split, "limit": args.limit, "kernel": args.kernel,
        "cpu": cpu_name(), "threads": 1, "default_threshold": default,
        "command": command_line("training.evaluate_qa", [str(folder), "--split", args.split]),
        "evaluation": {"examples": len(examples), "sweep": rows,
                       "at_default": min(rows, key=lambda r: abs(r["threshold"] - default))},
        "paper": PAPER, "date": time.strftime("%Y-%m-%d"),
    }


def cpu_name() -> str:
    from .evaluate import cpu_name as name

    return name()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--kernel", default="fast")
    p.add_argument("--server", default=None, help="URL of a running server serving these models")
    p.add_argument("--no-write", action="store_true", help="print only; do not write the cards")
    args = p.parse_args(argv)
    import httpx

    folders = [Path(d) for d in args.model_dirs]
    examples = squad.load_squad(args.split, args.data_dir, tokenize_all=False)[:args.limit or None]
    cards = []
    with httpx.Client(timeout=120) as client:
        if args.server:
            cards = [evaluate(client, args.server.rstrip("/"), f, examples, args) for f in folders]
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "loadtest"))
            from _server import running_server

            env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            models_dir = folders[0].parent
            with running_server(models_dir, env=env, timeout=180,
                                extra=["--pool-threads", "1", "--kernel", args.kernel,
                                       "--max-batch", str(BATCH), "--max-queue", "4"]) as url:
                cards = [evaluate(client, url, f, examples, args) for f in folders]
    for folder, card in zip(folders, cards):
        if not args.no_write:
            write_card(folder, card)
            print(f"wrote {folder}/card.md", file=sys.stderr)
    return cards


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
