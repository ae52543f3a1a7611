"""Summarise the committed model cards as markdown tables: classifiers, the AntMan students (teacher,
compression, loss coefficients) and QA readers (the README quotes the output).

  python -m training.cards_table [--models-dir models]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(models_dir: Path) -> str:
    rows = ["| model | default threshold | test accuracy % | skim rate % | FLOP reduction | per-token µs (1 core) | "
            "speed-up vs t=1.0 | dev accuracy % | examples |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for card_path in classifier_cards(models_dir):
        card = json.loads(card_path.read_text())
        d = card["evaluation"]["at_default"]
        man = json.loads((card_path.parent / "manifest.json").read_text())
        default = "-" if card["model"]["family"] in NEVER_SKIMS else card["default_threshold"]
        rows.append(f"| {card['model']['name']} | {default} | {100 * d['accuracy']:.2f} | {100 * d['skim_rate']:.1f} | "
                    f"{d['flop_reduction']:.2f}x | {_num(d.get('per_token_us'))} | {_num(d.get('speedup_vs_t1'), 'x')} | "
                    f"{100 * dev_accuracy(man['training']):.2f} | {card['evaluation']['examples']}"
                    f"{' (limited)' if card['limit'] else ''} |")
    return "\n".join(rows)


NEVER_SKIMS = ("lstm", "antman-lstm")   # families whose threshold changes nothing


def _num(v, unit: str = "") -> str:
    """A timing figure, or '-' where the card has none (AntMan cards carry accuracy and FLOPs only: their
    speed is benchmarks/results/antman.md's)."""
    return "-" if v is None else f"{v:.2f}{unit}"


def antman_table(models_dir: Path) -> str:
    """The AntMan cards: what each student was distilled from, how it is compressed and with which loss
    coefficients, beside its test accuracy against the teacher."""
    rows = ["| model | teacher | compression (W_ih; W_hh) | C_target / C_mse / C_kl | test accuracy % | "
            "vs teacher (points) | skim rate % | FLOP reduction vs teacher |",
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for card_path in classifier_cards(models_dir):
        card = json.loads(card_path.read_text())
        m, d = card["model"], card["evaluation"]["at_default"]
        if not (m["family"].startswith("antman") or card.get("teacher") == m["name"]):
            continue
        dist = m.get("distillation")
        coef = "-" if not dist else f"{dist['C_target']:g} / {dist['C_mse']:g} / {dist['C_kl']:g}"
        vs = "-" if d.get("points_vs_teacher") is None else f"{d['points_vs_teacher']:+.2f}"
        rows.append(f"| {m['name']} | {m.get('teacher') or '- (the teacher)'} | {compression(m.get('compression'))} | "
                    f"{coef} | {100 * d['accuracy']:.2f} | {vs} | {100 * d['skim_rate']:.1f} | "
                    f"{d['flop_reduction']:.2f}x |")
    return "\n".join(rows)


def compression(c: dict | None) -> str:
    if not c:
        return "dense"

    def one(s):
        args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "module")
        return s["module"] + (f" ({args})" if args else "")
    return f"{one(c['W_ih'])}; {one(c['W_hh'])}"


def dev_accuracy(training: dict) -> float:
    """Dev accuracy at the default threshold (skip predictors record it under at_default)."""
    return training["dev_accuracy"] if "dev_accuracy" in training else training["at_default"]["accuracy"]


def cards(models_dir: Path, task: str) -> list[Path]:
    return [p for p in sorted(models_dir.glob("*/card.json")) if json.loads(p.read_text())["model"].get("task") == task]


def classifier_cards(models_dir: Path) -> list[Path]:
    return cards(models_dir, "classify")


def qa_table(models_dir: Path) -> str:
    rows = ["| model | default threshold | test F1 | test EM | skim rate % (layer-steps) | layer 1 fw / bw skim % | "
            "layer 2 fw / bw skim % | FLOP reduction | dev F1 | questions |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for card_path in cards(models_dir, "qa"):
        card = json.loads(card_path.read_text())
        d = card["evaluation"]["at_default"]
        man = json.loads((card_path.parent / "manifest.json").read_text())
        per = d["skim_rate_per_layer"]
        default = "-" if card["model"]["cell"] == "lstm" else card["default_threshold"]
        dev_f1 = man["training"]["dev_f1"]
        chosen = man.get("default_threshold_selection")
        if chosen:   # the default was re-chosen on dev (training/calibrate_qa.py): its dev F1 at that threshold
            dev_f1 = next(r["f1"] for r in chosen["sweep"] if r["threshold"] == man["default_threshold"])
        rows.append(f"| {card['model']['name']} | {default} | {d['f1']:.2f} | {d['em']:.2f} | {100 * d['skim_rate']:.1f} | "
                    f"{100 * per['l0.fw']:.1f} / {100 * per['l0.bw']:.1f} | {100 * per['l1.fw']:.1f} / {100 * per['l1.bw']:.1f} | "
                    f"{d['flop_reduction']:.2f}x | {dev_f1:.2f} | {card['evaluation']['examples']} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", default="models")
    models_dir = Path(p.parse_args(argv).models_dir)
    print(table(models_dir))
    print()
    print(antman_table(models_dir))
    print()
    print(qa_table(models_dir))


if __name__ == "__main__":
    main()
