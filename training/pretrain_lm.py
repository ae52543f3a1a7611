"""Pretrain the LSTM as a word-level language model on a dataset's training text (Dai & Le 2015,
"Semi-supervised sequence learning"), then start a classifier from it with --init-from:

  python -m training.pretrain_lm --dataset imdb --name imdb-lm --out-dir runs
  python -m training.train --dataset imdb --family lstm --name imdb-lstm --init-from runs/imdb-lm --tune-embeddings

Only the training split's text is read (labels are not); the dev split's perplexity picks the checkpoint.
The text is one stream (reviews in a shuffled order, re-shuffled each epoch), cut into windows of --bptt
tokens; the state is carried across windows (truncated backpropagation through time).
The result is an artifact of family "lstm", task "language-model": the embedding rows (fine-tuned),
the LSTM weights and a zero classifier head, so train.py can start from it like from any LSTM. The
output layer of the language model is not kept. Not a served model: keep it out of models/.
"""
from __future__ import annotations

import argparse
import copy
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from service.artifacts import write_artifact
from service.tokenizer import TOKENIZER_NAME, tokenize

from . import data
from .runlog import LOG_FILE, RunLog
from .vocab import build_vocab, cached_vocab


class LSTMLanguageModel(nn.Module):
    def __init__(self, emb: torch.Tensor, d: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(emb.clone(), freeze=False, padding_idx=0)
        self.lstm = nn.LSTM(emb.shape[1], d, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, emb.shape[0])

    def forward(self, ids, state=None):
        y, state = self.lstm(self.drop(self.embedding(ids)), state)
        return self.out(self.drop(y)), state


def encode(texts: list[str], index: dict) -> list[list[int]]:
    unk = index["<unk>"]
    return [[index.get(t, unk) for t in tokenize(text)] for text in texts]


def stream(docs: list[list[int]], rng: random.Random | None) -> torch.Tensor:
    """The documents as one stream of ids, in a shuffled order when rng is given (tokenised once, not per epoch)."""
    order = list(range(len(docs)))
    if rng:
        rng.shuffle(order)
    return torch.tensor([t for i in order for t in docs[i]], dtype=torch.long)


def windows(ids: torch.Tensor, batch_size: int, bptt: int):
    """(inputs, targets) windows of a stream laid out as batch_size parallel rows."""
    n = (len(ids) - 1) // batch_size
    x = ids[:n * batch_size].view(batch_size, n)
    y = ids[1:n * batch_size + 1].view(batch_size, n)
    for s in range(0, n, bptt):
        yield x[:, s:s + bptt], y[:, s:s + bptt]


@torch.no_grad()
def perplexity(model, ids, device, batch_size=64, bptt=200) -> float:
    model.eval()
    total, n, state = 0.0, 0, None
    for x, y in windows(ids, batch_size, bptt):
        logits, state = model(x.to(device), state)
        total += F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten(), reduction="sum").item()
        n += y.numel()
    model.train()
    return math.exp(total / max(n, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--name", required=True)
    p.add_argument("--out-dir", required=True, help="a runs folder (a language model is not a served model)")
    p.add_argument("--data-dir", default=None, help="default: $SKIMSERVE_DATA or ../shared/data")
    p.add_argument("--vocab-cache", default=None)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--patience", type=int, default=3000, help="stop when dev perplexity has not improved for N steps")
    p.add_argument("--time-budget", type=float, default=0, help="stop after N seconds (keeps the best)")
    p.add_argument("--limit", type=int, default=None, help="use only N training texts (smoke tests)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    run = RunLog("training.pretrain_lm")
    train = [ex.text for ex in data.load(args.dataset, "train", args.data_dir, args.limit)]
    dev = [ex.text for ex in data.load(args.dataset, "dev", args.data_dir, args.limit)]
    # the same vocabulary (and cache key) as train.py builds for this dataset, so a classifier can start from it
    vocab, emb, vocab_stats = cached_vocab(Path(args.vocab_cache) if args.vocab_cache else None,
                                           f"{args.dataset}-{args.limit or 'full'}", lambda: build_vocab(train))
    index = {w: i for i, w in enumerate(vocab)}
    device = torch.device(args.device)
    model = LSTMLanguageModel(torch.tensor(emb), args.d, args.dropout).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_docs = encode(train, index)
    dev_ids = stream(encode(dev, index), None)
    out = Path(args.out_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    log = run.log
    log({"event": "start", "args": vars(args), "train_texts": len(train), "dev_tokens": len(dev_ids), "vocab": vocab_stats})
    rng = random.Random(args.seed)
    run.stop_on_sigterm()
    best = (math.inf, None, 0)
    step, epoch, stop = 0, 0, False
    bar = tqdm(total=args.max_steps, desc=args.name, mininterval=5)
    while not stop:
        epoch += 1
        state = None
        for x, y in windows(stream(train_docs, rng), args.batch_size, args.bptt):
            logits, state = model(x.to(device), state)
            state = tuple(s.detach() for s in state)
            loss = F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            if step % args.eval_every == 0:
                ppl = perplexity(model, dev_ids, device)
                improved = ppl < best[0]
                if improved:
                    best = (ppl, copy.deepcopy(model.state_dict()), step)
                log({"event": "eval", "step": step, "epoch": epoch, "train_loss": round(loss.item(), 4),
                     "dev_ppl": round(ppl, 2), "best": improved})
                bar.set_postfix(dev_ppl=f"{ppl:.1f}")
                stop = step - best[2] >= args.patience
            if stop or step >= args.max_steps or run.sigterm_at is not None or run.over_budget(args.time_budget):
                stop = True
                break
    bar.close()
    if best[1] is None:
        best = (perplexity(model, dev_ids, device), copy.deepcopy(model.state_dict()), step)
    model.load_state_dict(best[1])
    if run.sigterm_at is not None:
        log({"event": "sigterm", "at_s": round(run.sigterm_at, 1)})
    log({"event": "done", "best_step": best[2], "best_dev_ppl": round(best[0], 2), "steps": step})

    L = model.lstm
    weights = {"rnn.W_ih": L.weight_ih_l0, "rnn.W_hh": L.weight_hh_l0, "rnn.b": L.bias_ih_l0 + L.bias_hh_l0,
               "head.W": torch.zeros(2, args.d), "head.b": torch.zeros(2)}  # no classifier yet: a zero head
    weights = {k: v.detach().cpu().float().numpy() for k, v in weights.items()}
    weights["embedding"] = model.embedding.weight.detach().cpu().numpy().astype(np.float16)
    run.write(out)
    cmd = run.command(argv)
    manifest = {
        "name": args.name, "version": time.strftime("%Y%m%d"), "task": "language-model", "family": "lstm",
        "sizes": {"embed": emb.shape[1], "hidden": args.d, "small_hidden": 0},
        "labels": data.LABELS, "default_threshold": 0.5,
        "tokenizer": {"name": TOKENIZER_NAME, "module": "service/tokenizer.py", "lowercase": True},
        "vocab_stats": vocab_stats,
        "training": {"command": cmd, "dataset": args.dataset, "data": f"../shared/data/{args.dataset}",
                     "objective": "next-word prediction on the training split's text (labels unused)",
                     "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("name", "out_dir", "device")},
                     "embeddings": "GloVe 6B 50d, fine-tuned", "best_step": best[2], "dev_perplexity": best[0],
                     "dev_accuracy": None, "dev_skim_rate": 0.0,
                     "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                     "seconds": round(run.elapsed(), 1)},
    }
    write_artifact(out, manifest, weights, vocab, extra_files=(LOG_FILE,))
    print(f"wrote {out} (dev perplexity {best[0]:.1f})")


if __name__ == "__main__":
    main()
