"""Evaluate a served model on a real split and write its model card (card.json + card.md).

  python -m training.evaluate models/sst2-skim                # test split, thresholds 0.0..1.0
  python -m training.evaluate models/imdb-skim --limit 2000   # quicker, stated in the card

Runs the runtime engine (no PyTorch), one thread, the same code path the server uses. For each
threshold: accuracy, skim rate, FLOP reduction against the full LSTM, and measured per-token
latency (model time / tokens, median of interleaved timing rounds on the first --timing-texts texts),
plus the speed-up against the same model at threshold 1.0 (never skims) measured in the same run.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core, as the card states

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from service.artifacts import MANIFEST, load_artifact, refresh_checksums  # noqa: E402
from service.families import build_model  # noqa: E402

from . import data  # noqa: E402
from .runlog import command_line  # noqa: E402

PAPER = {  # Skim-RNN paper, Table 2 (d=100): LSTM acc, Skim-LSTM acc / skim %
    "sst2": {"lstm_acc": 86.4, "skim_acc": 86.4, "skim_rate": 58.2, "target_acc": 85.5, "target_skim": 50},
    "mr": {"lstm_acc": 82.5, "skim_acc": 82.5, "skim_rate": 58.5, "target_acc": 81.5, "target_skim": None},
    "imdb": {"lstm_acc": 91.1, "skim_acc": 91.2, "skim_rate": 83.9, "target_acc": 90.0, "target_skim": 75},
}
THRESHOLDS = [round(0.1 * i, 1) for i in range(11)]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sweep(model, encoded, labels, thresholds):
    """Accuracy, skim rate and FLOPs of every threshold on the whole split (exact, no timing)."""
    rows = []
    for thr in thresholds:
        correct = tokens = skimmed = 0
        flops = flops_full = 0
        for ids, y in tqdm(zip(encoded, labels), total=len(labels), desc=f"{model.name} t={thr}", mininterval=10):
            logits, out = model.forward(ids, thr)
            correct += int(np.argmax(logits) == y)
            lc = model.layer_cost(out)
            tokens += lc.tokens
            skimmed += lc.skimmed
            flops += lc.flops
            flops_full += lc.flops_full
        rows.append({"threshold": thr, "accuracy": correct / len(labels), "skim_rate": skimmed / tokens,
                     "flop_reduction": flops_full / flops, "tokens": tokens, "skimmed": skimmed})
    return rows


def time_thresholds(model, encoded, thresholds, rounds: int) -> dict[float, float]:
    """Median µs/token of each threshold over `rounds` passes on the same texts, thresholds interleaved
    within a round (and rotated between rounds) so that machine noise hits every threshold alike."""
    n_tokens = sum(len(ids) for ids in encoded)
    samples: dict[float, list[float]] = {thr: [] for thr in thresholds}
    for r in tqdm(range(rounds), desc=f"{model.name} timing", mininterval=10):
        order = thresholds[r % len(thresholds):] + thresholds[:r % len(thresholds)]
        for thr in order:
            t0 = time.perf_counter()
            for ids in encoded:
                model.forward(ids, thr)
            samples[thr].append(1e6 * (time.perf_counter() - t0) / n_tokens)
    return {thr: float(np.median(v)) for thr, v in samples.items()}


def write_card(folder: Path, card: dict) -> None:
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    m, ev = card["model"], card["evaluation"]
    lines = [f"# Model card: {m['name']}", "",
             f"- Task: {m['task']} ({card['dataset']}), family `{m['family']}`, sizes {m['sizes']}",
             f"- Trained with: `{m['training_command']}`",
             f"- Embeddings: {m['embeddings']}; selection: {m.get('selection') or 'single run'}",
             *([f"- Starting point: {card['provenance']}"] if card.get("provenance") else []),
             f"- Evaluated with: `{card['command']}`",
             f"- Split: {card['split']} ({ev['examples']} examples{', LIMITED' if card['limit'] else ''}); "
             f"kernel `{card['kernel']}`, one thread, {card['cpu']}", "",
             "| threshold | accuracy % | skim rate % | FLOP reduction | per-token µs | speed-up vs t=1.0 |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in ev["sweep"]:
        lines.append(f"| {r['threshold']:g} | {100 * r['accuracy']:.2f} | {100 * r['skim_rate']:.1f} | "
                     f"{r['flop_reduction']:.2f}x | {r['per_token_us']:.2f} | {r['speedup_vs_t1']:.2f}x |")
    d = ev["at_default"]
    lines += ["", f"At the default threshold {card['default_threshold']}: accuracy {100 * d['accuracy']:.2f}%, "
              f"skim rate {100 * d['skim_rate']:.1f}%, FLOP reduction {d['flop_reduction']:.2f}x."]
    if card.get("default_origin"):
        lines.append(card["default_origin"])
    lines.append("")
    if card.get("comparison"):
        lines += ["## Against the paper and the targets", "", card["comparison"], ""]
    if card.get("calibration"):
        lines += calibration_lines(card["calibration"])
    if card.get("server_sweep"):
        lines += server_sweep_lines(card["server_sweep"])
    lines += ["FLOPs follow service/flops.py (multiply-add = 2 FLOPs, elementwise 10/unit, decision layer on every "
              "token). Latency is wall time of the model part (embedding, recurrent layer, head) divided by tokens: "
              f"the median of {card['timing']['rounds']} rounds over the first {card['timing']['texts']} texts "
              f"({card['timing']['tokens']} tokens), every threshold timed in each round, interleaved; absolute "
              "times drift on shared machines, ratios within one run are the figure to read.", ""]
    (folder / "card.md").write_text("\n".join(lines))


def server_sweep_lines(sw: dict) -> list[str]:
    """The card's table through the running server, predictor beside its baselines (benchmarks/skip_sweep.py)."""
    lines = [f"## Through the running server: {sw['split']} split, against the baselines", "",
             f"`{sw['command']}` ({sw['date']}; benchmarks/results/skip_sweep.md). Base `{sw['base']}` unmodified; "
             "baselines are the base reading the kept tokens; FLOPs saved against the base on the whole texts "
             "(the predictor's cost counted on every token); model time per token of the whole text.", "",
             "| method | accuracy % | change (points) | tokens skipped % | FLOPs saved % | model µs / token |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    default = f"predictor-{sw['default_threshold']:g}" if sw.get("default_threshold") is not None else None
    for r in sw["rows"]:
        mark = " **(default)**" if r["key"] == default else ""
        lines.append(f"| {r['method']}{mark} | {100 * r['accuracy']:.2f} | {r['change_points']:+.2f} | "
                     f"{100 * r['skip_rate']:.1f} | {100 * r['flops_saved']:.1f} | {r['us_per_token_of_text']:.2f} |")
    lines += ["", sw["verdict"], ""]
    return lines


def calibration_lines(cal: dict) -> list[str]:
    """The card's calibrated curve (dev) and budget table (dev and test), from training.calibrate_curve."""
    lines = ["## Calibrated curve and FLOP budgets", "",
             f"Dev split ({cal['examples']} examples{', LIMITED' if cal.get('limit') else ''}), kernel "
             f"`{cal['kernel']}`: `{cal['command']}`. FLOP share = flops / flops_full of the whole request "
             "(head included); per-token time: one thread, median over rounds.", "",
             "| threshold | dev accuracy % | skim rate % | FLOP share | FLOP reduction | per-token µs |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in cal["curve"]:
        lines.append(f"| {r['threshold']:.1f} | {100 * r['accuracy']:.2f} | {100 * r['skim_rate']:.1f} | "
                     f"{r['flop_share']:.3f} | {r['flop_reduction']:.2f}x | {r['per_token_us']:.2f} |")
    lines += ["", f"`?budget=` caps every layer (service/engine/budget.py; the floor, every token skimmed, is a "
              f"FLOP share of {cal['floor_share']:.3f} of the recurrent layers). {cal['budget_rule_text']}. "
              "Beside it, on dev: the default threshold under the cap (reads the start, skims the rest) and the "
              "highest threshold whose uncapped FLOP share fits. Test: "
              f"{cal.get('test_examples')} examples.", "",
              "| budget | threshold | dev accuracy % | dev %, default + cap | dev %, curve fit | test accuracy % | "
              "test max FLOP share |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in cal["budgets"]:
        d, c = r["dev_default"], r["dev_curve"]
        lines.append(f"| {r['budget']:g} | {r['threshold']:g} | {100 * r['dev_accuracy']:.2f} | "
                     f"{100 * d['accuracy']:.2f} (t={d['threshold']:g}) | {100 * c['accuracy']:.2f} "
                     f"(t={c['threshold']:g}) | {100 * r['test_accuracy']:.2f} | {r['test_max_flop_share']:.3f} |")
    return lines + [""]


DEV_NOTES = {
    "imdb": "IMDb's dev split is a movie-disjoint block of train (training/data.py); before phase 4 it was a "
            "seeded random 10%, which shares movies with the rest of train and overstated test by about 3 points.",
}


DATASET_NAMES = {"imdb": "IMDb", "sst2": "SST-2", "mr": "MR"}


def provenance_text(manifest: dict) -> str:
    """Where the weights started, from the manifest's chain of base models (training.base), and what taught
    them when distilled (training.distill): a shipped model card must say when a model was not trained from
    scratch on its own split alone."""
    distill = distill_text(manifest.get("training", {}).get("distill"))
    return start_text(manifest) + (" " + distill if distill else "")


def distill_text(rec: dict | None) -> str:
    if not rec:
        return ""
    names = ", ".join(f"`{t['name']}`" for t in rec["teachers"])
    # teachers that are not servable LSTMs (training/minilm_teacher.py) are named for what they are
    families = sorted({t.get("family", "lstm") for t in rec["teachers"]} - {"lstm", "skim-lstm"})
    kind = (f" {', '.join(families)} (a pretrained Transformer encoder, {rec.get('teacher_source', 'see the manifest')}, "
            f"fine-tuned on this split's training sentences by training/minilm_teacher.py; a training-time tool "
            f"only, not part of this model)" if families else "")
    return (f"Distilled (train.py --distill, weight {rec['weight']:g}): besides its training split, each step also "
            f"fitted the mean probabilities of {len(rec['teachers'])} {DATASET_NAMES.get(rec['dataset'], rec['dataset'])} "
            f"teachers{kind} ({names}; ensemble dev accuracy {100 * rec['ensemble_dev_accuracy']:.2f}%) on a batch of "
            f"`{rec['texts']}` ({rec['sentences']:,} unlabelled sentences, training/transfer_set.py).")


def start_text(manifest: dict) -> str:
    t = manifest.get("training", {})
    base = t.get("base")
    if not base:
        init = (t.get("hyperparameters") or {}).get("init_from")
        if init:
            return f"Started from `{Path(init).name}` (the manifest has no record of that model)."
        return "Trained from scratch on this dataset's training split (GloVe-initialised word vectors)."

    def transfer(rec: dict) -> str:
        return (f"an {DATASET_NAMES.get(rec['dataset'], rec['dataset'])} sentiment LSTM (`{rec['name']}`) fine-tuned "
                "on this dataset's training split, its vocabulary extended with the split's words (transfer from "
                "another sentiment dataset; no dev or test text of this dataset was used)")

    def from_lstm(lstm: dict) -> str:
        inner = lstm.get("base")
        itself = f", itself {transfer(inner)}" if inner and inner["dataset"] != t.get("dataset") else ""
        return f"big cell, embedding and head started from the trained LSTM `{lstm['name']}`{itself}"

    if manifest["family"] != "lstm":
        if base.get("family") == "skim-lstm" and base.get("base"):  # a continued skim run (train.py --init-from)
            return (f"Continued from the Skim-LSTM run `{base['name']}` (all its weights; the Gumbel temperature "
                    f"schedule from its step {t.get('start_step', '?')}), whose {from_lstm(base['base'])}.")
        text = from_lstm(base)
        return text[0].upper() + text[1:] + "."
    if base["task"] == "language-model":
        return (f"Started from `{base['name']}`, an LSTM language model pretrained on this dataset's training text "
                "(training/pretrain_lm.py, Dai & Le 2015), then fine-tuned as a classifier.")
    if base["dataset"] != t.get("dataset"):
        return f"Started from {transfer(base)}."
    return f"Fine-tuned further from the trained LSTM `{base['name']}` of the same dataset."


def default_origin_text(manifest: dict, rows: list[dict]) -> str:
    """Where a skim model's served default threshold comes from (training/calibrate.py picks it on dev)."""
    sel = manifest.get("default_threshold_selection")
    if not sel:
        return ""
    t = manifest["default_threshold"]
    dev = next((r for r in sel["sweep"] if r["threshold"] == t), None)
    text = (f"The default was chosen on the dev split by `{sel['command']}`: {sel['rule']}"
            + (f" (dev: {100 * dev['accuracy']:.2f}% at {100 * dev['skim_rate']:.1f}% skim)." if dev else "."))
    argmax = next((r for r in rows if r["threshold"] == 0.5), None)
    if t != 0.5 and argmax:
        text += (f" At 0.5, the trained argmax, this split gives {100 * argmax['accuracy']:.2f}% at "
                 f"{100 * argmax['skim_rate']:.1f}% skim.")
    return text


def dev_gap_text(dataset: str, dev_accuracy: float | None, test_accuracy: float) -> str:
    """Selection used dev only; show how far test lands from it, so a reader can judge the selection."""
    if dev_accuracy is None:
        return ""
    gap = 100 * (dev_accuracy - test_accuracy)
    return (f" Dev accuracy (used for early stopping and selection) was {100 * dev_accuracy:.2f}%, "
            f"{gap:+.2f} points from this split. " + DEV_NOTES.get(dataset, "")).rstrip()


def comparison_text(dataset: str, family: str, d: dict, dev_accuracy: float | None = None,
                    dev_skim: float | None = None) -> str:
    p = PAPER.get(dataset)
    if not p or family == "skip-lstm":  # a frozen LSTM with a predictor: its bar is in the server section
        return ""
    acc = 100 * d["accuracy"]
    if family == "lstm":
        return (f"Paper LSTM (Table 2, GloVe 300d): {p['lstm_acc']}%. Here: {acc:.2f}% "
                f"({acc - p['lstm_acc']:+.2f} points), with GloVe 6B 50d inputs (the only vectors available offline)." + dev_gap_text(dataset, dev_accuracy, d["accuracy"]))
    sk = 100 * d["skim_rate"]
    miss = []
    if acc < p["target_acc"]:
        miss.append(f"accuracy target {p['target_acc']}% missed by {p['target_acc'] - acc:.2f} points")
    if p["target_skim"] and sk < p["target_skim"]:
        miss.append(f"skim target {p['target_skim']}% missed by {p['target_skim'] - sk:.1f} points")
    verdict = "; ".join(miss) if miss else "targets met"
    why = (" Why: 50-dimensional GloVe inputs instead of the paper's larger vectors and a short GPU budget (minutes "
           "per model, a few seeds)." if miss else "")
    if p["target_skim"] and sk < p["target_skim"] and dev_skim is not None:
        why += (f" The skim floor ({p['target_skim']}%) was applied on the dev split, where this model skims "
                f"{100 * dev_skim:.1f}% of tokens; on this split it skims fewer.")
    return (f"Paper Skim-LSTM (Table 2): {p['skim_acc']}% at {p['skim_rate']}% skim. Here: {acc:.2f}% at "
            f"{sk:.1f}% skim ({verdict}).{why} Hyperparameters and checkpoints were chosen on the dev split only, "
            "never on test." + dev_gap_text(dataset, dev_accuracy, d["accuracy"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--kernel", default="fast")
    p.add_argument("--timing-texts", type=int, default=500, help="texts timed per threshold (the first N)")
    p.add_argument("--timing-rounds", type=int, default=5, help="interleaved timing rounds; the median is reported")
    p.add_argument("--no-write", action="store_true", help="print only; do not write the card")
    args = p.parse_args(argv)
    folder = Path(args.model_dir)
    if json.loads((folder / MANIFEST).read_text()).get("task") == "qa":  # QA readers: through the server
        from . import evaluate_qa

        return evaluate_qa.main([str(folder), "--split", args.split, "--kernel", args.kernel]
                                + (["--data-dir", args.data_dir] if args.data_dir else [])
                                + (["--limit", str(args.limit)] if args.limit else [])
                                + (["--no-write"] if args.no_write else []))
    model = build_model(load_artifact(folder), kernel=args.kernel)
    man = model.manifest
    dataset = man["training"]["dataset"]
    examples = data.load(dataset, args.split, args.data_dir, args.limit)
    encoded = [model.to_ids(model.tokenize(ex.text)) for ex in examples]
    labels = [ex.label for ex in examples]
    skims = model.layer.skims
    default_thr = float(man.get("default_threshold", 0.5))
    thresholds = sorted(set(THRESHOLDS) | {default_thr}) if skims else [default_thr]  # the default is measured, not the nearest grid point
    model.forward(encoded[0], 0.5)  # warm-up
    rows = sweep(model, encoded, labels, thresholds)
    timing_set = encoded[:args.timing_texts]
    per_token = time_thresholds(model, timing_set, thresholds, args.timing_rounds)
    for r in rows:
        r["per_token_us"] = per_token[r["threshold"]]
    t1 = next(r for r in rows if r["threshold"] == 1.0) if skims else rows[0]
    for r in rows:
        r["speedup_vs_t1"] = t1["per_token_us"] / r["per_token_us"]
    default = float(man.get("default_threshold", 0.5))
    at_default = min(rows, key=lambda r: abs(r["threshold"] - default))
    card = {
        "model": {"name": man["name"], "version": man.get("version"), "task": man["task"], "family": man["family"],
                  "sizes": man["sizes"], "training_command": man["training"]["command"],
                  "embeddings": man["training"].get("embeddings"),
                  "selection": (man.get("selection") or {}).get("rule")},
        "dataset": dataset, "split": args.split, "limit": args.limit, "kernel": model.kernel_name,
        "cpu": cpu_name(), "threads": 1, "default_threshold": default,
        "timing": {"texts": len(timing_set), "tokens": int(sum(len(i) for i in timing_set)),
                   "rounds": args.timing_rounds, "statistic": "median over rounds, thresholds interleaved"},
        "command": command_line("training.evaluate", argv),
        "evaluation": {"examples": len(examples), "sweep": rows, "at_default": at_default},
        "provenance": provenance_text(man),
        "default_origin": default_origin_text(man, rows) if skims else "",
        "comparison": comparison_text(dataset, man["family"].replace("skim-lstm", "skim"), at_default,
                                      man["training"].get("dev_accuracy") if args.split == "test" else None,
                                      man["training"].get("dev_skim_rate") if args.split == "test" else None),
        "date": time.strftime("%Y-%m-%d"),
    }
    for r in rows:
        print(f"t={r['threshold']:.1f} acc={100 * r['accuracy']:.2f} skim={100 * r['skim_rate']:.1f}% "
              f"flop-r={r['flop_reduction']:.2f}x {r['per_token_us']:.2f}us/tok speedup={r['speedup_vs_t1']:.2f}x")
    if args.no_write:
        return card
    previous = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
    for key in ("calibration", "server_sweep"):  # training.calibrate_curve's and benchmarks/skip_sweep's sections
        if previous.get(key):
            card[key] = previous[key]
    write_card(folder, card)
    manifest = json.loads((folder / MANIFEST).read_text())
    for f in ("card.json", "card.md"):
        manifest["files"].setdefault(f, "")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    refresh_checksums(folder)
    print(f"wrote {folder}/card.md")
    return card


if __name__ == "__main__":
    main()
