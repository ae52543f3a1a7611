"""Fine-tune MiniLM-L6 teachers on a classification split and label a transfer set with their mean
probabilities, in the file format train.py --distill reads (training/teacher_labels.py).

  python -m training.minilm_teacher --minilm .carry/minilm --dataset sst2 \
      --texts .carry/transfer/imdb-sentences.jsonl.gz --out runs/sst2-minilm.jsonl.gz --lrs 5e-5 1e-4 --seeds 1 2 3 4

Why: every SST-2 LSTM and ensemble trained here (phases 4-7) reached 0.85-0.86 dev, so distilling them
gave no accuracy to pass on. A pretrained Transformer encoder (training/minilm.py) fine-tuned on the same
6,920 sentences is a stronger and different teacher. It is a training-time tool only: the student is still
the d=100 Skim-LSTM on GloVe 50d vectors that the runtime serves. Each teacher: AdamW, linear warm-up
(10%) and decay, early stopping on dev (the state with the best dev accuracy is kept). Test is never read.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data
from .minilm import load, load_tokenizer
from .teacher_labels import accuracy, read_texts, write_labelled


def batch_tensors(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T) padded on the right, mask (B, T) True on real pieces)."""
    t = max(map(len, seqs))
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    for j, s in enumerate(seqs):
        ids[j, :len(s)] = torch.tensor(s)
    lengths = torch.tensor([len(s) for s in seqs])
    mask = torch.arange(t)[None] < lengths[:, None]
    return ids.to(device), mask.to(device)


@torch.no_grad()
def predict(model, seqs, pad, device, batch_size=512, desc=None) -> np.ndarray:
    model.eval()
    out = np.zeros((len(seqs), model.head.out_features), dtype=np.float32)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for s in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5, disable=desc is None):
        b = order[s:s + batch_size]
        ids, mask = batch_tensors([seqs[i] for i in b], pad, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(ids, mask)
        out[b] = torch.softmax(logits.float(), -1).cpu().numpy()
    return out


def fine_tune(args, seed: int, lr: float, train, dev, device) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """One teacher: the dev-best state of a fine-tuning run, its record, and its dev probabilities."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tok, _ = load(args.minilm, labels=len(data.LABELS))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps_per_epoch = (len(train) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    best = {"dev_accuracy": -1.0, "step": 0}
    best_state, best_dev_p, step, t0 = None, None, 0, time.time()
    dev_seqs, dev_labels = [x for x, _ in dev], [l for _, l in dev]
    bar = tqdm(total=total, desc=f"teacher lr {lr:g} seed {seed}", mininterval=5)
    for _ in range(args.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for s in range(0, len(order), args.batch_size):
            model.train()
            b = [train[i] for i in order[s:s + args.batch_size]]
            ids, mask = batch_tensors([x for x, _ in b], tok.pad, device)
            y = torch.tensor([l for _, l in b], device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(ids, mask).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update()
            if step % args.eval_every == 0 or step == total:
                dev_p = predict(model, dev_seqs, tok.pad, device)
                acc = accuracy(dev_p, dev_labels)
                print(f"lr {lr:g} seed {seed} step {step} loss {loss.item():.4f} dev {acc:.4f}", flush=True)
                if acc > best["dev_accuracy"]:
                    best = {"dev_accuracy": round(acc, 4), "step": step}
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best_dev_p = dev_p
    bar.close()
    model.load_state_dict(best_state)
    return model, {**best, "seconds": round(time.time() - t0, 1)}, best_dev_p


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minilm", required=True, help="a folder written by python -m training.minilm")
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--texts", required=True, help="a transfer set (training/transfer_set.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lrs", type=float, nargs="+", default=[5e-5], help="one teacher per (lr, seed)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds: start no further teacher once another as long as the last would overrun")
    p.add_argument("--limit", type=int, default=0, help="first N training examples and texts (smoke tests)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.eval_every < 1 or min(args.lrs) <= 0:
        raise SystemExit("need --epochs, --batch-size, --eval-every >= 1 and --lrs > 0")
    device = torch.device(args.device)
    texts = read_texts(args.texts)[:args.limit or None]
    if not texts:
        raise SystemExit(f"{args.texts}: no texts")
    tok, minilm_meta = load_tokenizer(args.minilm)
    encode = lambda split: [(tok.encode(ex.text), ex.label) for ex in data.load(args.dataset, split, args.data_dir)]
    train, dev = encode("train")[:args.limit or None], encode("dev")
    seqs = [tok.encode(t) for t in texts]
    total, dev_total, teachers = None, None, []
    start, last = time.time(), 0.0
    for lr, seed in [(lr, seed) for lr in args.lrs for seed in args.seeds]:
        if teachers and args.time_budget and time.time() - start + last > args.time_budget:
            print(f"time budget: stopping after {len(teachers)} teachers", flush=True)
            break
        t_teacher = time.time()
        model, record, dev_p = fine_tune(args, seed, lr, train, dev, device)
        probs = predict(model, seqs, tok.pad, device, batch_size=1024, desc=f"label lr {lr:g} seed {seed}")
        total = probs if total is None else total + probs
        dev_total = dev_p if dev_total is None else dev_total + dev_p
        teachers.append({"name": f"minilm-{args.dataset}-lr{lr:g}-s{seed}", "family": "minilm-l6 (fine-tuned)",
                         "weights_sha256": minilm_meta["source_sha256"], **record,
                         "hyperparameters": {"lr": lr, "epochs": args.epochs, "batch_size": args.batch_size}})
        last = time.time() - t_teacher
        print(f"teacher lr {lr:g} seed {seed}: dev {record['dev_accuracy']:.4f} (step {record['step']}), "
              f"{last:.0f} s with labelling", flush=True)
    extra = {"teacher_source": minilm_meta["source"], **({"texts_limit": args.limit} if args.limit else {})}
    write_labelled(args.out, args.dataset, teachers, args.texts, texts, total / len(teachers),
                   dev_total / len(teachers), [l for _, l in dev], **extra)

if __name__ == "__main__":
    main()
