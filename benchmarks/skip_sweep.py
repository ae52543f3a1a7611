"""The skip predictor against its baselines, through the running server (issue 19's figures):

  python -m benchmarks.skip_sweep [--datasets sst2 imdb] [--splits test] [--limit N]
      -> benchmarks/results/skip_sweep.{json,md}

A `skimserve serve` subprocess (the shipped models dir, one worker, one model thread, loopback, one keep-alive
connection) answers every figure, `POST /classify?model=M&threshold=t` in the batch form `{"texts": [...]}`:
- the unmodified dense LSTM (`sst2-lstm`, `imdb-lstm`) on the whole texts: the reference row;
- the skip predictor (`*-lstm-skip`) swept over thresholds;
- the note's naive baselines, the unmodified LSTM on reduced texts: stop-word removal (the list in
  training/skip_baselines.py) and Concat(n) (the first n and last n tokens);
- random skipping at the predictor's own skip rate (seeded, per token): is the predictor choosing *which*
  tokens to skip better than chance?  Skipping a step (h and c carried over) is the same as removing the token,
  so every baseline is the base model reading the kept tokens;
- the retrained Skim-LSTM of the same dataset (`*-skim`), for reference: a different model, trained with
  skimming, not a frozen one.
Reduced texts are the server tokenizer's tokens joined by spaces (the tokenizer gives back the same tokens:
checked for every text, mismatches counted in the JSON). A text left empty by a filter is not sent (the
server answers 422 to empty text): the LSTM reads nothing, so its answer is the head's bias (read from the
base's weights.npz), counted as `empty` and charged the head's FLOPs.
FLOPs saved are against the base's FLOPs on the whole texts (the responses' `flops`, service/flops.py: the
predictor's cost counted on every token). Configurations are interleaved per batch of texts (rotated),
so machine noise hits each alike; per-token time is the server's model time (`latency_ms`, no HTTP, no
tokenization) summed over the batches over the tokens sent.
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from loadtest._server import running_server
from service.flops import head_flops
from service.tokenizer import tokenize

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
THRESHOLDS = (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 1.0)
CONCAT_N = {"sst2": (2, 3, 5, 10), "imdb": (25, 50, 100, 200)}
RANDOM_AT = (0.3, 0.4, 0.5, 0.7)  # random skipping at the predictor's measured skip rate at these thresholds
SKIM_THRESHOLDS = (0.3, 0.5, 0.7)
BATCH = 64


def stop_words() -> frozenset:
    from training.skip_baselines import STOP_WORDS
    return STOP_WORDS


class Client:
    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(host, self.port, timeout=300)

    def classify(self, model: str, texts: list[str], threshold: float | None) -> list[dict]:
        path = f"/classify?model={model}" + (f"&threshold={threshold}" if threshold is not None else "")
        body = json.dumps({"texts": texts}).encode()
        try:
            self.conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):  # the server closed an idle keep-alive connection
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            self.conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status} {body[:300]!r}")
        return json.loads(body)["results"]


def configs_for(ds: str, models: dict, skip_rates: dict | None, seed: int) -> list[dict]:
    """One dict per row: key, description, model, threshold, transform (tokens -> kept tokens, or None)."""
    sw = stop_words()
    out = [{"key": "full", "what": "unmodified LSTM", "model": models["base"], "threshold": None, "keep": None}]
    out += [{"key": f"predictor-{t:g}", "what": f"skip predictor, t={t:g}", "model": models["skip"], "threshold": t,
             "keep": None} for t in THRESHOLDS]
    out.append({"key": "stop-words", "what": "stop-word removal", "model": models["base"], "threshold": None,
                "keep": lambda toks, i: [w for w in toks if w not in sw]})
    for n in CONCAT_N[ds]:
        out.append({"key": f"concat-{n}", "what": f"Concat({n}): first {n} + last {n}", "model": models["base"],
                    "threshold": None, "keep": lambda toks, i, n=n: toks if len(toks) <= 2 * n else toks[:n] + toks[-n:]})
    for t in RANDOM_AT if skip_rates else ():
        rate = skip_rates[t]

        def keep(toks, i, rate=rate, t=t):  # seeded per text and rate: the same draw in every run
            rng = random.Random(f"{seed}:{t}:{i}")
            return [w for w in toks if rng.random() >= rate]
        out.append({"key": f"random-{t:g}", "what": f"random skipping at the predictor's rate at t={t:g} "
                    f"({100 * rate:.1f}%)", "model": models["base"], "threshold": None, "keep": keep})
    if models.get("skim"):
        out += [{"key": f"skim-{t:g}", "what": f"Skim-LSTM {models['skim']} (retrained), t={t:g}",
                 "model": models["skim"], "threshold": t, "keep": None} for t in SKIM_THRESHOLDS]
    return out


def sweep(client: Client, configs: list[dict], texts: list[str], labels: list[int], label_names: list[str],
          bias_label: int, head: int) -> list[dict]:
    toks = [tokenize(t) for t in texts]
    acc = {c["key"]: {"correct": 0, "tokens": 0, "skipped": 0, "flops": 0, "ms": 0.0, "empty": 0, "mismatch": 0,
                      "pred": np.zeros(len(texts), np.int64)} for c in configs}
    prepared = {}
    for c in configs:  # reduced texts, built once
        if c["keep"] is None:
            prepared[c["key"]] = (texts, [len(t) for t in toks])
            continue
        kept = [c["keep"](t, i) for i, t in enumerate(toks)]
        joined = [" ".join(k) for k in kept]
        acc[c["key"]]["mismatch"] = sum(tokenize(j) != k for j, k in zip(joined, kept))
        prepared[c["key"]] = (joined, [len(k) for k in kept])
    name_to_ix = {n: i for i, n in enumerate(label_names)}
    for bi, b0 in enumerate(range(0, len(texts), BATCH)):
        sl = slice(b0, b0 + BATCH)
        order = configs[bi % len(configs):] + configs[:bi % len(configs)]
        for c in order:
            a = acc[c["key"]]
            batch, lens = prepared[c["key"]][0][sl], prepared[c["key"]][1][sl]
            send = [j for j, n in enumerate(lens) if n > 0]
            res = client.classify(c["model"], [batch[j] for j in send], c["threshold"]) if send else []
            got = dict(zip(send, res))
            for j in range(len(batch)):
                r = got.get(j)
                k = b0 + j
                if r is None:  # nothing left to read: h = 0, the head's bias decides
                    a["empty"] += 1
                    a["flops"] += head
                    p = bias_label
                else:
                    p = name_to_ix[r["label"]]
                    a["tokens"] += r["tokens"]
                    a["skipped"] += r["skimmed"]
                    a["flops"] += r["flops"]
                    a["ms"] += r["latency_ms"]
                    if r["tokens"] != lens[j]:
                        a["mismatch"] += 1
                a["pred"][k] = p
                a["correct"] += int(p == labels[k])
    full = acc["full"]
    all_tokens = full["tokens"]
    rows = []
    for c in configs:
        a = acc[c["key"]]
        removed = all_tokens - a["tokens"]  # baselines: tokens never sent; predictor/skim: 0
        rows.append({"key": c["key"], "method": c["what"], "model": c["model"], "threshold": c["threshold"],
                     "examples": len(texts), "accuracy": round(a["correct"] / len(texts), 6),
                     "change_points": round(100 * (a["correct"] - full["correct"]) / len(texts), 3),
                     "agreement": round(float((a["pred"] == full["pred"]).mean()), 6),
                     "skip_rate": round((a["skipped"] + removed) / all_tokens, 6),
                     "flops_saved": round(1 - a["flops"] / full["flops"], 6),
                     "flop_reduction": round(full["flops"] / a["flops"], 4),
                     "us_per_token_sent": round(1000 * a["ms"] / max(a["tokens"], 1), 4),
                     "us_per_token_of_text": round(1000 * a["ms"] / all_tokens, 4),
                     "empty": a["empty"], "tokenizer_mismatches": a["mismatch"]})
    return rows


def bias_label(models_dir: Path, base: str) -> int:
    with np.load(models_dir / base / "weights.npz", allow_pickle=False) as z:
        return int(np.argmax(z["head.b"]))


def best_within(rows: list[dict], max_loss: float) -> dict | None:
    ok = [r for r in rows if r["key"].startswith("predictor-") and r["change_points"] >= -max_loss]
    return max(ok, key=lambda r: r["flops_saved"]) if ok else None


def verdict(test: dict, dev: dict | None, bar_saving: float = 0.25, bar_loss: float = 0.5) -> str:
    """Issue 19's bar read on this table: at the default threshold (chosen on dev), and which thresholds meet it
    on this split, with their dev figures beside (a threshold picked from the test rows alone is test selection)."""
    rows = {r["threshold"]: r for r in test["rows"] if r["key"].startswith("predictor-")}
    dev_rows = {r["threshold"]: r for r in (dev or {}).get("rows", []) if r["key"].startswith("predictor-")}
    t = test["default_threshold"]
    d = rows.get(t)
    meets = lambda r: r["flops_saved"] >= bar_saving and r["change_points"] >= -bar_loss  # noqa: E731
    out = [f"Bar (>= {100 * bar_saving:.0f}% fewer FLOPs at <= {bar_loss} points lost against the unmodified base): "]
    if d:
        out.append(f"at the default t={t:g} (chosen on dev) {100 * d['flops_saved']:.1f}% saved at "
                   f"{d['change_points']:+.2f} points on {test['split']}: {'met' if meets(d) else 'not met'}. ")
    ok = [r for r in rows.values() if meets(r)]
    if ok:
        parts = []
        for r in sorted(ok, key=lambda r: r["threshold"]):
            dv = dev_rows.get(r["threshold"])
            parts.append(f"t={r['threshold']:g} ({100 * r['flops_saved']:.1f}%, {r['change_points']:+.2f}"
                         + (f"; dev {100 * dv['flops_saved']:.1f}%, {dv['change_points']:+.2f}" if dv else "") + ")")
        out.append(f"Thresholds meeting it on {test['split']}: " + ", ".join(parts) + ".")
    else:
        out.append(f"No threshold meets it on {test['split']}.")
    return "".join(out)


def write_cards(record: dict, models_dir: Path) -> None:
    """The test table (predictor and baselines) into each skip model's card (card.json, card.md re-rendered,
    checksums refreshed)."""
    from service.artifacts import refresh_checksums
    from training.evaluate import write_card

    for t in record["tables"]:
        if t["split"] != "test":
            continue
        folder = models_dir / t["models"]["skip"]
        card_path = folder / "card.json"
        if not card_path.exists():
            continue
        dev = next((x for x in record["tables"] if x["dataset"] == t["dataset"] and x["split"] == "dev"), None)
        card = json.loads(card_path.read_text())
        card["comparison"] = ""  # training.evaluate gives a skip model no Skim-paper comparison
        card["server_sweep"] = {"command": record["command"], "date": record["date"], "split": t["split"],
                                "base": t["models"]["base"], "examples": t["examples"], "rows": t["rows"],
                                "default_threshold": t["default_threshold"],
                                "verdict": verdict(t, dev)}
        write_card(folder, card)
        refresh_checksums(folder)
        print(f"wrote {folder}/card.md")


def main(argv=None) -> int:
    from training import data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["sst2", "imdb"])
    p.add_argument("--splits", nargs="+", default=["test"])
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--limit", type=int, help="first N texts of each split (a quick look)")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "skip_sweep"), help="writes OUT.json and OUT.md")
    p.add_argument("--cards", action="store_true", help="also write the test tables into the skip models' cards")
    p.add_argument("--render", metavar="JSON", help="no server: re-render OUT.md (and --cards) from a saved JSON")
    args = p.parse_args(argv)
    models_dir = Path(args.models_dir)
    if args.render:
        return finish(json.loads(Path(args.render).read_text()), args, models_dir)
    t0 = time.time()
    record = {"command": "python -m benchmarks.skip_sweep " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "cpu": platform.processor() or platform.machine(),
              "server": "python -m service serve, one worker, one model thread, loopback, one keep-alive connection",
              "batch": BATCH, "seed": args.seed, "tables": []}
    with running_server(models_dir, extra=["--workers", "1", "--pool-threads", "1", "--log-level", "warning"],
                        timeout=180) as url:
        client = Client(url)
        for ds in args.datasets:
            models = {"base": f"{ds}-lstm", "skip": f"{ds}-lstm-skip",
                      "skim": f"{ds}-skim" if (models_dir / f"{ds}-skim").is_dir() else None}
            man = json.loads((models_dir / models["base"] / "manifest.json").read_text())
            skip_man = json.loads((models_dir / models["skip"] / "manifest.json").read_text())
            names = man["labels"]
            head = head_flops(man["sizes"]["hidden"], len(names))
            for split in args.splits:
                t1 = time.time()
                ex = data.load(ds, split, args.data_dir, args.limit)
                texts, labels = [e.text for e in ex], [e.label for e in ex]
                client.classify(models["skip"], texts[:8], 0.5)  # warm-up
                # the predictor's own skip rates first: random skipping is drawn at them
                probe = sweep(client, [c for c in configs_for(ds, models, None, args.seed)
                                       if c["key"] == "full" or c["key"] in {f"predictor-{t:g}" for t in RANDOM_AT}],
                              texts, labels, names, bias_label(models_dir, models["base"]), head)
                rates = {r["threshold"]: r["skip_rate"] for r in probe if r["key"].startswith("predictor-")}
                rows = sweep(client, configs_for(ds, models, rates, args.seed), texts, labels, names,
                             bias_label(models_dir, models["base"]), head)
                table = {"dataset": ds, "split": split, "examples": len(texts), "models": models,
                         "default_threshold": skip_man.get("default_threshold"),
                         "dev_rule": skip_man.get("training", {}).get("default_threshold_rule"), "rows": rows}
                for loss in (0.3, 0.5, 1.0):
                    b = best_within(rows, loss)
                    table[f"best_within_{loss:g}_points"] = b and {k: b[k] for k in ("threshold", "accuracy",
                                                                                     "change_points", "flops_saved")}
                table["seconds"] = round(time.time() - t1, 1)
                record["tables"].append(table)
                print(markdown_table(table), f"({table['seconds']} s)", flush=True)
    record["seconds"] = round(time.time() - t0, 1)
    return finish(record, args, models_dir)


def finish(record: dict, args, models_dir: Path) -> int:
    for t in record["tables"]:
        if t["split"] == "test":
            dev = next((x for x in record["tables"] if x["dataset"] == t["dataset"] and x["split"] == "dev"), None)
            t["verdict"] = verdict(t, dev)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    if args.cards:
        write_cards(record, models_dir)
    return 0


def markdown_table(t: dict) -> str:
    lines = [f"### {t['dataset']} {t['split']} ({t['examples']} texts)", "",
             f"Base `{t['models']['base']}`, predictor `{t['models']['skip']}` (default threshold "
             f"{t['default_threshold']}, chosen on dev: {t['dev_rule']}).", "",
             "| method | accuracy % | change (points) | agreement with base % | tokens skipped % | FLOPs saved % "
             "| FLOP reduction | model µs / token of text |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in t["rows"]:
        name = r["method"] + (" **(default)**" if r["key"] == f"predictor-{t['default_threshold']:g}" else "")
        lines.append(f"| {name} | {100 * r['accuracy']:.2f} | {r['change_points']:+.2f} | {100 * r['agreement']:.1f} | "
                     f"{100 * r['skip_rate']:.1f} | {100 * r['flops_saved']:.1f} | {r['flop_reduction']:.2f}x | "
                     f"{r['us_per_token_of_text']:.2f} |")
    lines.append("")
    if t.get("verdict"):
        lines += [t["verdict"], ""]
    for loss in (0.3, 0.5, 1.0):
        b = t.get(f"best_within_{loss:g}_points")
        lines.append(f"Most FLOPs saved by the predictor within {loss:g} points of the base on this split: " + (
            f"t={b['threshold']:g}, {100 * b['flops_saved']:.1f}% saved, {b['change_points']:+.2f} points."
            if b else "none.") + "  ")
    return "\n".join(lines) + "\n"


def markdown(record: dict) -> str:
    head = [f"# Skip predictor vs baselines, through the running server ({record['date']}, {record['cpu']})", "",
            f"`{record['command']}` (benchmarks/skip_sweep.py): {record['server']}; `POST /classify` batches of "
            f"{record['batch']}, configurations interleaved per batch. Baselines are the unmodified LSTM reading the "
            "kept tokens; FLOPs saved against the unmodified LSTM on the whole texts; model time is the server's "
            "`latency_ms` (per token of the whole text). \"Within x points\" lines read this split itself: the "
            "threshold a user should run is chosen on dev (the predictor's default).", ""]
    return "\n".join(head) + "\n" + "\n".join(markdown_table(t) for t in record["tables"])


if __name__ == "__main__":
    sys.exit(main())
