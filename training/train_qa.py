"""Train the LSTM+Att extractive-QA reader on SQuAD v1.1 (our article-level split of the official dev set)
and write a servable artifact (service/artifacts.py) plus train_log.jsonl.

  python -m training.train_qa --family lstm --name squad-lstm-att --out-dir runs/qa
  python -m training.train_qa --family skim --name squad-skim-lstm-att --out-dir runs/qa --pretrain-steps 1500 --gamma 0.1

--family skim --pretrain-steps N is half-pretraining (paper appendix A.2): the first N steps train the big
cells alone (the dense model), then every LSTM skims. --init-from starts from an artifact (dense or skim):
a dense one is the paper's "full pretraining". --distill-from DENSE adds the KL from a trained reader's
start and end distributions to the loss (the dense model teaching its skim copy).
Model selection and the default threshold use dev.json only; test.json is never read.
The vocabulary (train contexts + questions, training/vocab.build_vocab) needs the GloVe package once;
--vocab-cache DIR keeps it (vocab.txt + emb.npy) so a machine without the package trains from it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from service.artifacts import load_artifact, write_artifact
from service.manifest import new_manifest
from service.tokenizer import TOKENIZER_NAME

from . import squad_metric
from .qa_torch import LAYER_NAMES, QAReader, decode_spans, from_artifact, qa_loss, skim_loss_qa, span_kd_loss
from .squad import load_squad, span_text
from .vocab import build_vocab, cached_vocab

MAX_ANSWER_TOKENS = 15
THRESHOLD_SWEEP = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def tau_at(step: int, rate: float) -> float:  # as training/train.py
    return max(0.5, math.exp(-rate * step))


def qa_vocab(train, cache_dir, key="squad"):
    """vocab: <pad>, <unk>, words of the train split's contexts and questions (by frequency) found in GloVe,
    plus train words missing from GloVe seen >= 3 times (random rows), plus the 20,000 most frequent GloVe
    words not yet in (build_vocab's rules). Dev/test never shape it."""
    texts = list(dict.fromkeys(ex.context for ex in train)) + [ex.question for ex in train]
    return cached_vocab(Path(cache_dir) if cache_dir else None, key, lambda: build_vocab(texts, extra_glove=20000))


def encode(examples, index, max_len=0, train=False):
    out = []
    for ex in examples:
        c = [index.get(t.text, 1) for t in ex.context_tokens]
        q = [index.get(t, 1) for t in ex.question_tokens] or [1]
        if train:
            if ex.span is None or (max_len and ex.span[1] >= max_len):
                continue
            c = c[:max_len] if max_len else c
        out.append((c, q, ex.span or (0, 0), ex))
    return out


def batches(enc, bs, rng=None):
    """Length-bucketed batches: sorted by context length within chunks of 50 batches, batches shuffled."""
    idx = list(range(len(enc)))
    if rng is not None:
        rng.shuffle(idx)
    chunk = bs * 50
    groups = []
    for k in range(0, len(idx), chunk):
        part = sorted(idx[k:k + chunk], key=lambda i: len(enc[i][0]))
        groups += [part[j:j + bs] for j in range(0, len(part), bs)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def collate(enc, ids, device):
    rows = [enc[i] for i in ids]
    T = max(len(r[0]) for r in rows)
    Q = max(len(r[1]) for r in rows)
    ctx = torch.zeros(len(rows), T, dtype=torch.long)
    q = torch.zeros(len(rows), Q, dtype=torch.long)
    for b, (c, qq, _, _) in enumerate(rows):
        ctx[b, :len(c)] = torch.tensor(c)
        q[b, :len(qq)] = torch.tensor(qq)
    clen = torch.tensor([len(r[0]) for r in rows])
    qlen = torch.tensor([len(r[1]) for r in rows])
    span = torch.tensor([r[2] for r in rows])
    return ctx.to(device), clen.to(device), q.to(device), qlen.to(device), span.to(device), rows


@torch.no_grad()
def evaluate(model, enc, device, thresholds=(0.5, 0.5), bs=128):
    """Official EM/F1 (percent) on enc, and skim rates per layer-direction and overall (fractions)."""
    was = model.training
    model.eval()
    preds, refs = {}, {}
    skimmed = torch.zeros(4)
    tokens = 0
    for ids in batches(enc, bs):
        ctx, clen, q, qlen, _, rows = collate(enc, ids, device)
        s, e, (aux, valid) = model(ctx, clen, q, qlen, thresholds=thresholds)
        i, j = decode_spans(s, e, MAX_ANSWER_TOKENS)
        for b, (_, _, _, ex) in enumerate(rows):
            preds[ex.id] = span_text(ex.context, ex.context_tokens, int(i[b]), int(j[b]))
            refs[ex.id] = ex.answer_texts
        tokens += int(valid.sum())
        if aux[0] is not None:
            for layer in (0, 1):
                sk = aux[layer][2]
                skimmed[2 * layer:2 * layer + 2] += (sk & valid[None]).sum((1, 2)).float().cpu()
    model.train(was)
    m = squad_metric.evaluate(preds, refs)
    rates = {n: float(skimmed[k]) / tokens for k, n in enumerate(LAYER_NAMES)}
    return {"f1": m["f1"], "em": m["exact_match"], "skim_rate": float(skimmed.sum()) / (4 * tokens), "skim": rates}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True, choices=["lstm", "skim"])
    p.add_argument("--name", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--data-dir", default=None, help="folder holding squad/ (default $SKIMSERVE_DATA or ../shared/data)")
    p.add_argument("--vocab-cache", default=None, help="folder of prepared vocabularies (key 'squad')")
    p.add_argument("--init-from", default=None, help="an artifact folder (dense or skim) to start from")
    p.add_argument("--distill-from", default=None, help="a trained QA artifact (e.g. the dense reader) to distill")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation KL")
    p.add_argument("--distill-temp", type=float, default=1.0, help="softmax temperature of the distillation KL")
    p.add_argument("--pretrain-steps", type=int, default=0, help="skim: train the big cells alone for N steps first")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--d-small", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="steps between dev evals (default: one epoch)")
    p.add_argument("--patience", type=int, default=8, help="evals without a better dev F1 before stopping")
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds of training (0: none)")
    p.add_argument("--min-skim", type=float, default=0.4, help="skim: selection needs dev skim rate >= this")
    p.add_argument("--tau-rate", type=float, default=1e-4)
    p.add_argument("--hard-gumbel", action="store_true")
    p.add_argument("--max-train-len", type=int, default=400, help="train contexts cut to this many tokens")
    p.add_argument("--limit", type=int, default=0, help="use the first N train and dev examples (smoke runs)")
    p.add_argument("--version", default="20261202")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    t0 = time.time()
    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    device = torch.device(args.device)
    out = Path(args.out_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_f = open(log_path, "w", encoding="utf-8")

    def log(rec):
        rec = {"t": round(time.time() - t0, 1), **rec}
        log_f.write(json.dumps(rec) + "\n"), log_f.flush()
        print(json.dumps(rec), flush=True)

    train = load_squad("train", args.data_dir)
    dev = load_squad("dev", args.data_dir)
    if args.limit:
        train, dev = train[:args.limit], dev[:args.limit]
    vocab, emb, vstats = qa_vocab(load_squad("train", args.data_dir) if args.limit else train, args.vocab_cache)
    emb16 = emb.astype(np.float16)                     # train and evaluate with the table that ships
    index = {w: i for i, w in enumerate(vocab)}
    tr = encode(train, index, args.max_train_len, train=True)
    dv = encode(dev, index)
    skim = args.family == "skim"
    model = QAReader(torch.tensor(emb16.astype(np.float32)), args.d, args.d_small, skim=skim, dropout=args.dropout)
    base = None
    if args.init_from:
        art = load_artifact(args.init_from)
        if art.vocab != vocab:
            raise SystemExit(f"{args.init_from}: vocabulary differs from this run's")
        model.load_weights(art.weights)
        base = {"name": art.manifest["name"], "family": art.manifest["family"],
                "command": art.manifest.get("training", {}).get("command"),
                "dev_f1": art.manifest.get("training", {}).get("dev_f1"),
                "base": art.manifest.get("training", {}).get("base")}   # the chain, back to a run from scratch
    teacher = None
    if args.distill_from:
        t_art = load_artifact(args.distill_from)
        if t_art.vocab != vocab:
            raise SystemExit(f"{args.distill_from}: vocabulary differs from this run's")
        teacher = from_artifact(t_art).to(device).eval()
        for q_ in teacher.parameters():
            q_.requires_grad_(False)
        base = {**(base or {}), "teacher": t_art.manifest["name"], "teacher_weights_sha256": t_art.manifest["files"]["weights.npz"],
                "teacher_dev_f1": t_art.manifest.get("training", {}).get("dev_f1")}
    model.hard_gumbel = args.hard_gumbel
    model.use_skim = skim and args.pretrain_steps == 0
    model.to(device)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=args.lr)
    log({"event": "start", "name": args.name, "family": args.family, "train": len(tr), "dev": len(dv),
         "vocab": len(vocab), "device": str(device), "args": vars(args)})
    rng = random.Random(args.seed)
    eval_every = args.eval_every or math.ceil(len(tr) / args.batch_size)
    step = skim_step = 0
    best = None
    bad = 0
    pretrain_eval = None
    stop = False
    for epoch in range(1, args.epochs + 1):
        for ids in batches(tr, args.batch_size, rng):
            ctx, clen, q, qlen, span, _ = collate(tr, ids, device)
            tau = tau_at(skim_step, args.tau_rate)
            s, e, aux = model(ctx, clen, q, qlen, tau=tau)
            loss = qa_loss(s, e, span)
            if teacher is not None:
                with torch.no_grad():
                    ts, te, _ = teacher(ctx, clen, q, qlen)
                loss = loss + args.distill_weight * span_kd_loss(s, e, ts, te, args.distill_temp)
            if model.use_skim:
                loss = loss + skim_loss_qa(aux, args.gamma)
                skim_step += 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            switch = skim and not model.use_skim and step >= args.pretrain_steps
            if step % eval_every == 0 or switch:
                r = evaluate(model, dv, device)
                phase = "skim" if model.use_skim else "dense"
                log({"event": "eval", "step": step, "epoch": epoch, "phase": phase, "tau": round(tau, 4),
                     "loss": round(loss.item(), 4), **r})
                eligible = phase == "skim" and r["skim_rate"] >= args.min_skim if skim else True
                if eligible and (best is None or r["f1"] > best[0]["f1"]):
                    best = (r, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
                    bad = 0
                elif phase == ("skim" if skim else "dense"):
                    bad += 1
                if switch:
                    pretrain_eval = {"step": step, **r}
                    model.use_skim = True
                    log({"event": "switch_to_skim", "step": step})
                if bad >= args.patience:
                    stop = True
            if (args.max_steps and step >= args.max_steps) or (args.time_budget and time.time() - t0 > args.time_budget):
                stop = True
            if stop:
                break
        if stop:
            break
    if best is None:  # nothing eligible (e.g. skim rate never reached min_skim): keep the last state
        r = evaluate(model, dv, device)
        best = (r, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
        log({"event": "no_eligible_eval", "step": step, **r})
    model.load_state_dict(best[2])
    sweep = []
    default_threshold = 0.5
    if skim:
        for t in THRESHOLD_SWEEP:
            r = evaluate(model, dv, device, thresholds=(t, t))
            sweep.append({"threshold": t, **r})
            log({"event": "sweep", "threshold": t, **r})
        ok = [x for x in sweep if x["skim_rate"] >= args.min_skim]
        if ok:
            top = max(x["f1"] for x in ok)
            tied = [x["threshold"] for x in ok if x["f1"] == top]
            default_threshold = 0.5 if 0.5 in tied else min(tied)
    final = evaluate(model, dv, device, thresholds=(default_threshold, default_threshold))
    log({"event": "final", "best_step": best[1], "default_threshold": default_threshold, **final})
    log_f.close()
    model.cpu().eval()
    weights = model.export_weights()
    sizes = {"embed": int(emb.shape[1]), "hidden": args.d, "layers": 2, "directions": 2}
    if skim:
        sizes["small_hidden"] = args.d_small
    manifest = new_manifest(
        args.name, "qa", "skim-lstm" if skim else "lstm", version=args.version,
        sizes=sizes, default_threshold=default_threshold, max_answer_tokens=MAX_ANSWER_TOKENS,
        layers=[{"name": n, "direction": "forward" if n.endswith("fw") else "backward"} for n in LAYER_NAMES],
        architecture= "LSTM+Att (Seo et al. 2018, appendix A.1): attention over question words, 2-layer BiLSTM, "
                     "start/end linear heads on [h_fw; h_bw] of layer 2",
        tokenizer={"name": TOKENIZER_NAME, "module": "service/tokenizer.py", "lowercase": True},
        vocab_stats=vstats,
        training={
            "command": "python -m training.train_qa " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
            "data": "SQuAD v1.1 dev, split by article: train.json / dev.json (test.json unread)",
            "splits": {"train": len(tr), "dev": len(dv)}, "seed": args.seed, "steps": step,
            "skim_steps": skim_step, "pretrain_steps": args.pretrain_steps if skim else None,
            "pretrain_eval": pretrain_eval, "gamma": args.gamma if skim else None, "best_step": best[1],
            "hyperparameters": vars(args), "embeddings": "GloVe 6B 50d rows (float16-rounded), frozen",
            "dev_f1": final["f1"], "dev_em": final["em"], "dev_skim_rate": final["skim_rate"],
            "dev_skim_rate_per_layer": final["skim"], "threshold_sweep": sweep, "base": base,
            "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "seconds": round(time.time() - t0, 1),
        })
    write_artifact(out, manifest, weights, vocab, extra_files=("train_log.jsonl",))
    print(json.dumps({"artifact": str(out), "dev_f1": final["f1"], "dev_em": final["em"],
                      "dev_skim_rate": final["skim_rate"], "skim": final["skim"]}), flush=True)


if __name__ == "__main__":
    main()
