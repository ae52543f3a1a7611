"""Summarise the committed model cards as markdown tables, classifiers and QA readers (the README quotes
the output).

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
        default = "-" if card["model"]["family"] == "lstm" else card["default_threshold"]  # an LSTM never skims
        rows.append(f"| {card['model']['name']} | {default} | {100 * d['accuracy']:.2f} | {100 * d['skim_rate']:.1f} | "
                    f"{d['flop_reduction']:.2f}x | {d['per_token_us']:.2f} | {d['speedup_vs_t1']:.2f}x | "
                    f"{100 * dev_accuracy(man['training']):.2f} | {card['evaluation']['examples']}"
                    f"{' (limited)' if card['limit'] else ''} |")
    return "\n".join(rows)


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
        rows.append(f"| {card['model']['name']} | {default} | {d['f1']:.2f} | {d['em']:.2f} | {100 * d['skim_rate']:.1f} | "
                    f"{100 * per['l0.fw']:.1f} / {100 * per['l0.bw']:.1f} | {100 * per['l1.fw']:.1f} / {100 * per['l1.bw']:.1f} | "
                    f"{d['flop_reduction']:.2f}x | {man['training']['dev_f1']:.2f} | {card['evaluation']['examples']} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", default="models")
    models_dir = Path(p.parse_args(argv).models_dir)
    print(table(models_dir))
    print()
    print(qa_table(models_dir))


if __name__ == "__main__":
    main()
