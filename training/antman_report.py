"""The AntMan family of one dataset side by side: accuracy of each student against its dense teacher, at its
FLOP reduction, next to today's narrow d=100 models. Writes benchmarks/results/antman-<ds>.{json,md} and,
with --cards, each AntMan model's card (its teacher, compression, loss coefficients and these figures).

  python -m training.antman_report --dataset sst2 --cards
  python -m training.antman_report --dataset imdb --cards --threads 2

Accuracy: the torch models rebuilt from the shipped artifacts (training/antman.py from_artifact; the served
engine computes the same within 1e-4, tests/test_antman_training.py), on the full texts of the split at the
default threshold. FLOPs per token follow service/flops.py and the contract: an AntMan read step costs
2 * (Table-1 multiply-adds of W_ih + W_hh) + the elementwise term; a skimming model's per-token cost uses its
measured skim rate; flop_reduction is against the dense teacher's read step.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from service.artifacts import MANIFEST, load_artifact, refresh_checksums
from service.flops import decision_flops, read_flops, skim_flops

from . import data
from .antman import make_module
from .antman import read_flops as antman_read_flops
from .evaluate import cpu_name
from .runlog import command_line
from .torch_models import from_artifact
from .train import encode, evaluate

STUDENTS = ("antman-2x", "antman-5x", "antman-10x", "antman-skim")
NARROW = ("lstm", "skim")          # today's d=100 models of the same dataset, for the equal-cost comparison


def per_token_flops(m: dict, skim_rate: float) -> tuple[int, float]:
    """(read-step FLOPs, mean per-token FLOPs at this skim rate) of a classifier's manifest."""
    e, d, ds = m["sizes"]["embed"], m["sizes"]["hidden"], m["sizes"].get("small_hidden", 0)
    if m["family"].startswith("antman"):
        c = m["compression"]
        read = antman_read_flops(d, make_module(c["W_ih"], 4 * d, e).cost(), make_module(c["W_hh"], 4 * d, d).cost())
    else:
        read = read_flops(e, d)
    if m["family"] in ("skim-lstm", "antman-skim-lstm"):
        return read, (1 - skim_rate) * read + skim_rate * skim_flops(e, d, ds) + decision_flops(e, d)
    return read, float(read)


def row(folder: Path, encoded_cache: dict, split: str, data_dir, limit) -> dict:
    art = load_artifact(folder)
    m = art.manifest
    key = (m["base"]["name"] if m.get("base") else m["name"])  # one vocabulary per base model
    if key not in encoded_cache:
        index = {w: i for i, w in enumerate(art.vocab)}
        encoded_cache[key] = encode(data.load(m["training"]["dataset"], split, data_dir, limit), index, 0)
    enc = encoded_cache[key]
    t0 = time.time()
    acc, skim = evaluate(from_artifact(art), enc, torch.device("cpu"), batch_size=256,
                         threshold=float(m.get("default_threshold", 0.5)))
    read, per_token = per_token_flops(m, skim)
    return {"name": m["name"], "family": m["family"], "hidden": m["sizes"]["hidden"],
            "compression": m.get("compression"), "teacher": m.get("teacher"),
            "distillation": {k: m["distillation"][k] for k in ("C_target", "C_mse", "C_kl")}
            if m.get("distillation") else None,
            "accuracy": acc, "skim_rate": skim, "examples": len(enc), "read_flops": read,
            "per_token_flops": round(per_token, 1), "dev_accuracy": m["training"].get("dev_accuracy"),
            "training_data": m["training"].get("data"), "seconds": round(time.time() - t0, 1)}


def describe(c: dict | None) -> str:
    if not c:
        return "dense"
    def one(s):
        args = ",".join(str(s[k]) for k in ("groups", "groups_in", "groups_out", "rank") if k in s)
        return s["module"] + (f"({args})" if args else "")
    return f"W_ih {one(c['W_ih'])}, W_hh {one(c['W_hh'])}"


def table(rows: list[dict]) -> list[str]:
    out = ["| model | d | compression | test acc % | vs teacher (points) | skim rate % | FLOPs/token | "
           "FLOP reduction vs teacher |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        delta = "" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"
        out.append(f"| {r['name']} | {r['hidden']} | {describe(r['compression'])} | {100 * r['accuracy']:.2f} | "
                   f"{delta} | {100 * r['skim_rate']:.1f} | {r['per_token_flops']:,.0f} | "
                   f"{r['flop_reduction']:.2f}x |")
    return out


def card(r: dict, teacher: dict, report: dict, folder: Path) -> None:
    man = json.loads((folder / MANIFEST).read_text())
    t = man["training"]
    lines = [f"# Model card: {r['name']}", "",
             f"- Task: classify ({report['dataset']}), family `{r['family']}`, hidden size {r['hidden']}, "
             f"embedding and vocabulary of `{man['base']['name']}` (manifest `base`, frozen)",
             f"- Compression: {describe(r['compression'])}" if r["compression"] else "- Compression: none (the "
             "dense teacher of the AntMan students)",
             f"- Teacher: `{r['teacher']}` ({100 * teacher['accuracy']:.2f}% on this split)" if r["teacher"] else
             "- Teacher: none (trained on the labels alone)",
             *([f"- Distillation (eq. 1): C_target = {r['distillation']['C_target']}, C_mse = "
                f"{r['distillation']['C_mse']}, C_kl = {r['distillation']['C_kl']}; rule: "
                f"{man['distillation'].get('rule', '')}"] if r["distillation"] else []),
             f"- Trained with: `{t['command']}` (recipe: scripts/train_antman.sh; data: {t['data']})",
             f"- Evaluated with: `{report['command']}` (torch on {report['cpu']}, full texts, threshold "
             f"{man.get('default_threshold', 0.5)})", "",
             f"Test accuracy {100 * r['accuracy']:.2f}% on {r['examples']} examples "
             + (f"({r['delta_points']:+.2f} points against the teacher), " if r["delta_points"] is not None else "")
             + f"skim rate {100 * r['skim_rate']:.1f}%, {r['per_token_flops']:,.0f} recurrent FLOPs per token: "
             f"{r['flop_reduction']:.2f}x fewer than the dense teacher (service/flops.py conventions, Table 1 of "
             f"the AntMan paper for the compressed products). Dev accuracy (selection): "
             f"{100 * (r['dev_accuracy'] or 0):.2f}%.", "",
             "The family, side by side (benchmarks/results/"
             f"antman-{report['dataset']}.md):", "", *table(report["rows"]), ""]
    (folder / "card.md").write_text("\n".join(lines))
    (folder / "card.json").write_text(json.dumps(card_json(r, teacher, report, man), indent=2) + "\n")
    for f in ("card.json", "card.md"):
        man["files"].setdefault(f, "")
    (folder / MANIFEST).write_text(json.dumps(man, indent=2) + "\n")
    refresh_checksums(folder)


def card_json(r: dict, teacher: dict, report: dict, man: dict) -> dict:
    """The card in the classifier cards' layout (training/evaluate.py: model.task/sizes, evaluation.at_default,
    what training.cards_table reads), plus what an AntMan card must name: teacher, compression per product and
    the distillation coefficients with the converged values they came from."""
    dist = man.get("distillation")
    at_default = {"threshold": float(man.get("default_threshold", 0.5)), "accuracy": r["accuracy"],
                  "skim_rate": r["skim_rate"], "flop_reduction": r["flop_reduction"],
                  "per_token_flops": r["per_token_flops"], "points_vs_teacher": r["delta_points"]}
    return {
        "model": {"name": r["name"], "version": man.get("version"), "task": man["task"], "family": r["family"],
                  "sizes": man["sizes"], "training_command": man["training"]["command"],
                  "embeddings": man["training"].get("embeddings"),
                  "selection": "highest dev accuracy (EMA weights) over the run"
                  + (f", among checkpoints with dev skim rate >= {man['training']['hyperparameters']['min_skim']}"
                     if r["family"] == "antman-skim-lstm" else ""),
                  "compression": r["compression"], "teacher": r["teacher"],
                  "distillation": ({k: dist[k] for k in ("C_target", "C_mse", "C_kl", "rule", "converged") if k in dist}
                                   if dist else None),
                  "read_flops": r["read_flops"], "training_data": r["training_data"]},
        "dataset": report["dataset"], "split": report["split"], "limit": report["limit"],
        "kernel": "torch (training/torch_models.py from_artifact; the served engine matches it within 1e-4)",
        "cpu": report["cpu"], "threads": 1, "default_threshold": float(man.get("default_threshold", 0.5)),
        "command": report["command"],
        "evaluation": {"examples": r["examples"], "at_default": at_default},
        "teacher": teacher["name"], "teacher_accuracy": teacher["accuracy"],
        "dev_accuracy": r["dev_accuracy"], "date": report["date"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--models-dir", default="models")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cards", action="store_true", help="write each AntMan model's card.md / card.json")
    p.add_argument("--out", default="benchmarks/results", help="folder of antman-<ds>.json / .md")
    p.add_argument("--update", nargs="+", default=None, metavar="NAME",
                   help="evaluate only these models; the other rows come from the committed --out/antman-<ds>.json "
                        "(a retrained student without the half-hour rerun of the whole IMDb family)")
    p.add_argument("--cards-from-results", action="store_true",
                   help="write the cards from the committed --out/antman-<ds>.json (no evaluation)")
    args = p.parse_args(argv)
    if args.cards_from_results:
        report = json.loads((Path(args.out) / f"antman-{args.dataset}.json").read_text())
        teacher = next(r for r in report["rows"] if r["name"] == report["teacher"])
        for r in report["rows"]:
            if r["family"].startswith("antman") or r["name"] == teacher["name"]:
                card(r, teacher, report, Path(args.models_dir) / r["name"])
        return
    torch.set_num_threads(args.threads)
    ds, root = args.dataset, Path(args.models_dir)
    names = [f"{ds}-lstm-d400", *(f"{ds}-{s}" for s in STUDENTS), *(f"{ds}-{s}" for s in NARROW)]
    cache: dict = {}
    rows = []
    kept = {}
    if args.update:
        old = json.loads((Path(args.out) / f"antman-{ds}.json").read_text())
        if (old["split"], old["limit"]) != (args.split, args.limit):
            raise SystemExit(f"--update: the committed report is of split {old['split']} limit {old['limit']}")
        kept = {r["name"]: r for r in old["rows"] if r["name"] not in args.update}
    for n in names:
        if n in kept:
            rows.append(kept[n])
        elif (root / n / MANIFEST).exists():
            rows.append(row(root / n, cache, args.split, args.data_dir, args.limit))
            print(f"{n}: {100 * rows[-1]['accuracy']:.2f}% skim {100 * rows[-1]['skim_rate']:.1f}% "
                  f"({rows[-1]['seconds']} s)")
    teacher = next(r for r in rows if r["name"] == f"{ds}-lstm-d400")
    for r in rows:
        r["flop_reduction"] = round(teacher["read_flops"] / r["per_token_flops"], 3)
        r["delta_points"] = round(100 * (r["accuracy"] - teacher["accuracy"]), 2) if r["teacher"] else None
    report = {"dataset": ds, "split": args.split, "limit": args.limit, "command": command_line(
        "training.antman_report", argv), "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"),
        "teacher": teacher["name"], "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"antman-{ds}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# AntMan students of {ds} against their dense teacher", "",
          f"`{report['command']}` ({args.split} split, {teacher['examples']} examples"
          f"{', LIMITED' if args.limit else ''}; torch on {report['cpu']}; {report['date']}).", "",
          *table(rows), "",
          "vs teacher: test accuracy minus the teacher's, in points (students only). FLOPs/token: recurrent "
          "FLOPs per token (service/flops.py; skimming models at their measured skim rate). The narrow d=100 "
          "models (`-lstm`, `-skim`) are today's shipped models, trained differently (their own recipes), "
          "listed for the equal-cost comparison.", ""]
    (out / f"antman-{ds}.md").write_text("\n".join(md))
    print(f"wrote {out}/antman-{ds}.md")
    if args.cards:
        for r in rows:
            if r["family"].startswith("antman") or r["name"] == teacher["name"]:
                card(r, teacher, report, root / r["name"])


if __name__ == "__main__":
    main()
