"""The tokenizer on the request path against the alternatives, on the same texts, side by side:

  python -m benchmarks.tokenizer [--texts 200] [--rounds 5]  -> benchmarks/results/tokenizer.{json,md}

- served: what a request runs, `Vocabulary.tokenize` (service/_tokenscan.c's scan_ids: text straight to
  ids and spans through the compact vocabulary table), back to back;
- served-cold: the same with the CPU caches evicted before each text (an 8 MB buffer written; only the
  call is timed): what a server sees, whose other work between two requests pushes the table out;
- scanner: the same scanner, words + spans, then the ids by a dict lookup per word in C (explanations);
- regex: the definition in service/tokenizer.py (re.finditer), then ids by a dict lookup per word;
- tokenizers: Hugging Face `tokenizers` (the field's library) with the same alternatives as an Oniguruma
  Split pre-tokenizer, a Lowercase normalizer and a WordLevel model on the model's vocabulary: `encode`
  (ids and offsets in one call). Its tokens are checked equal to ours (after dropping the whitespace
  pieces and <br /> that "isolated" splitting keeps), so the comparison is of the same work.
Per text set (long IMDb reviews, SST-2 sentences): median µs per text and per token over rounds.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The pattern of service/tokenizer.py in Oniguruma syntax, applied after lower-casing (no case flag).
ONIGURUMA_PATTERN = (r"<br\s*/?>|\w+(?=n't\b)|n't\b|\w+(?='(?:s|re|ve|ll|d|m)\b)|'(?:s|re|ve|ll|d|m)\b"
                     r"|\w+(?:[-.']\w+)*|\.\.\.|[^\w\s]")


def hf_tokenizer(index: dict[str, int]):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(index, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(ONIGURUMA_PATTERN), behavior="isolated")
    return tok


def hf_words(tok, text: str) -> list[str]:
    pieces = tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))
    return [w for w, _ in pieces if w.strip() and not w.startswith("<br")]


def main(argv=None):
    from benchmarks.http import load_texts
    from service import tokenizer as T
    from training.evaluate import cpu_name

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="imdb-skim", help="whose vocabulary the ids come from")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    vocab = (Path(args.models_dir) / args.model / "vocab.txt").read_text(encoding="utf-8").split("\n")
    index = {w: i for i, w in enumerate(vocab) if w}
    unk = index["<unk>"]
    sets = {"imdb-long": load_texts("imdb", args.texts, args.data_dir, long_only=True),
            "sst2-short": load_texts("sst2", args.texts, args.data_dir, long_only=False)}
    vocabulary = T.Vocabulary(vocab, "<unk>")
    ways = {
        "served": vocabulary.tokenize,
        "scanner": lambda t: T.ids_of(T.words_of(T.tokenize_with_spans(t)), index, unk),
        "regex": lambda t: [index.get(w, unk) for w in (tok.text for tok in T.regex_tokenize_with_spans(t))],
    }
    try:
        hf = hf_tokenizer(index)
        ways["tokenizers"] = lambda t: hf.encode(t)
    except ImportError:
        hf = None
    rows, agree = [], {}
    for set_name, texts in sets.items():
        if hf is not None:
            agree[set_name] = sum(hf_words(hf, t) == T.tokenize(t) for t in texts)
        tokens = sum(len(T.tokenize(t)) for t in texts)
        times = {w: [] for w in ways}
        for _ in range(args.rounds):
            for name, fn in ways.items():
                t0 = time.perf_counter()
                for text in texts:
                    fn(text)
                times[name].append(time.perf_counter() - t0)
        junk, cold = np.ones(8 << 20, np.uint8), []
        for _ in range(args.rounds):
            total = 0.0
            for text in texts:
                junk += 1  # evicts the caches
                t0 = time.perf_counter()
                vocabulary.tokenize(text)
                total += time.perf_counter() - t0
            cold.append(total)
        times["served-cold"] = cold
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append({"texts": set_name, "way": name, "n_texts": len(texts), "tokens": tokens,
                         "us_per_text": round(med / len(texts) * 1e6, 2), "us_per_token": round(med / tokens * 1e6, 3)})
    by = {(r["texts"], r["way"]): r for r in rows}
    ratios = {f"{s}: {w} / served": round(by[(s, w)]["us_per_text"] / by[(s, "served")]["us_per_text"], 1)
              for s in sets for w in [*ways, "served-cold"] if w != "served"}
    result = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "rounds": args.rounds, "rows": rows,
              "ratios": ratios, "tokenizers_tokens_equal": {s: f"{agree[s]}/{len(sets[s])}" for s in agree},
              "command": "python -m benchmarks.tokenizer " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(result, indent=1) + "\n")
    cols = ["texts", "way", "n_texts", "tokens", "us_per_text", "us_per_token"]
    lines = ["# Tokenizer + vocabulary ids: the served scanner against the regex and `tokenizers`", "",
             f"`{result['command']}` on {result['cpu']}, {result['date']}: medians over {args.rounds} rounds.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Ratios (time per text): " + ", ".join(f"{k} {v}x" for k, v in ratios.items()) + "."]
    if agree:
        lines += ["", "`tokenizers` with the same pattern gives our tokens on " +
                  ", ".join(f"{s} {v}" for s, v in result["tokenizers_tokens_equal"].items()) + " texts."]
    (out / "tokenizer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
