"""Summarise the committed model cards as one markdown table (the README quotes its output).

  python -m training.cards_table [--models-dir models]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(models_dir: Path) -> str:
    rows = ["| model | default threshold | test accuracy % | skim rate % | FLOP reduction | per-token µs (1 core) | "
            "speed-up vs t=1.0 | dev accuracy % | examples |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for card_path in sorted(models_dir.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        d = card["evaluation"]["at_default"]
        man = json.loads((card_path.parent / "manifest.json").read_text())
        default = "-" if card["model"]["family"] == "lstm" else card["default_threshold"]  # an LSTM never skims
        rows.append(f"| {card['model']['name']} | {default} | {100 * d['accuracy']:.2f} | {100 * d['skim_rate']:.1f} | "
                    f"{d['flop_reduction']:.2f}x | {d['per_token_us']:.2f} | {d['speedup_vs_t1']:.2f}x | "
                    f"{100 * man['training']['dev_accuracy']:.2f} | {card['evaluation']['examples']}"
                    f"{' (limited)' if card['limit'] else ''} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", default="models")
    print(table(Path(p.parse_args(argv).models_dir)))


if __name__ == "__main__":
    main()
