"""Train an LSTM or Skim-LSTM sentiment classifier and write it as a skimserve artifact.

  python -m training.train --dataset sst2 --family lstm --name sst2-lstm
  python -m training.train --dataset sst2 --family skim --name sst2-skim --init-from models/sst2-lstm

Seeded; early stopping on the dev split (never the test split); a JSON-lines log of the run is kept
in the artifact folder (train_log.jsonl) and the exact command in its manifest.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from service.artifacts import load_artifact, write_artifact
from service.manifest import new_manifest
from service.tokenizer import TOKENIZER_NAME, tokenize

from . import data
from .encoding import padded, token_ids
from .runlog import LOG_FILE, RunLog
from .teacher_labels import read_labelled
from .torch_models import LSTMClassifier, SkimLSTMClassifier, lstm_from_weights, skim_loss, skim_step
from .vocab import build_vocab, cached_vocab, extend_vocab


def encode(examples, index, max_len):
    """(token ids, label) per example; a label may be a class index or a probability vector (distillation)."""
    out = []
    for ex in examples:
        ids = token_ids(tokenize(ex.text), index)
        out.append((ids[-max_len:] if max_len else ids, ex.label))  # keep the end: the classifier reads the last state
    return out


def batches(encoded, batch_size, rng: random.Random | None):
    """Length-bucketed batches (less padding); shuffled when rng is given."""
    order = list(range(len(encoded)))
    if rng:
        rng.shuffle(order)
    chunk = batch_size * 50
    for s in range(0, len(order), chunk):
        part = sorted(order[s:s + chunk], key=lambda i: len(encoded[i][0]))
        bs = [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        if rng:
            rng.shuffle(bs)
        for b in bs:
            ids, lengths = padded([encoded[i][0] for i in b])
            yield ids, lengths, torch.tensor([encoded[i][1] for i in b])


def endless(encoded, batch_size, rng: random.Random):
    """Shuffled batches, epoch after epoch (the transfer set of a distilled run is consumed alongside train)."""
    while True:
        yield from batches(encoded, batch_size, rng)


def soft_cross_entropy(logits, probs):
    """Cross-entropy against a teacher's class probabilities (renormalised: the file rounds them)."""
    probs = probs / probs.sum(-1, keepdim=True)
    return -(probs * F.log_softmax(logits, -1)).sum(-1).mean()


def load_distill(args, index):
    """The teacher-labelled transfer set of --distill, encoded with this model's vocabulary, and its record."""
    meta, texts, probs = read_labelled(args.distill)
    if meta["dataset"] != args.dataset:
        raise SystemExit(f"--distill {args.distill}: its teachers are {meta['dataset']} models, not {args.dataset}")
    if args.limit:
        texts, probs = texts[:args.limit], probs[:args.limit]
    if not texts:
        raise SystemExit(f"--distill {args.distill}: no labelled sentences")
    enc = encode([data.Example(t, [float(v) for v in pr]) for t, pr in zip(texts, probs)], index, args.max_len)
    record = {**meta, "file": Path(args.distill).name,
              "sha256": hashlib.sha256(Path(args.distill).read_bytes()).hexdigest(),
              "sentences": len(enc), "weight": args.distill_weight, "batch_size": args.distill_batch}
    return enc, record


@torch.no_grad()
def evaluate(model, encoded, device, batch_size=256, threshold=0.5):
    model.eval()
    correct = n = skimmed = tokens = 0
    for ids, lengths, labels in batches(encoded, batch_size, None):
        ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
        logits, aux = model(ids, lengths, threshold=threshold)
        correct += (logits.argmax(-1) == labels).sum().item()
        n += len(labels)
        if aux is not None:
            _, skims, valid = aux
            skimmed += (skims * valid).sum().item()
            tokens += valid.sum().item()
    model.train()
    return correct / n, (skimmed / tokens if tokens else 0.0)


def try_compile(model, device, batch_size: int) -> bool:
    """Use a torch.compile'd training step (fused kernels; identical math) if it compiles and agrees with
    the eager step on random inputs; otherwise keep the eager step."""
    try:
        import torch._dynamo
        if hasattr(torch._dynamo.config, "recompile_limit"):
            torch._dynamo.config.recompile_limit = 64
        # dynamic=False: one static graph per batch size (the last batch of an epoch is smaller); a dynamic-shape
        # recompile once failed in Inductor's pad_mm pass on torch 2.11 (phase 3, call 2)
        step = torch.compile(skim_step, fullgraph=True, dynamic=False)
        d, ds = model.d, model.ds
        G = 4 * d + 4 * ds + 2
        gen = torch.Generator(device="cpu").manual_seed(0)
        args = [torch.randn(batch_size, n, generator=gen).to(device) for n in (G, d, d)]
        W = (torch.randn(G, d, generator=gen) * 0.1).to(device)
        rest = (-torch.empty(batch_size, 2).exponential_(generator=gen).log().to(device),
                torch.full((), 1.5, device=device), torch.ones(batch_size, 1, device=device), d, ds, model.hard_gumbel)
        outs = []
        for fn in (skim_step, step):
            ins = [a.clone().requires_grad_() for a in args] + [W.clone().requires_grad_()]
            h, c, lp = fn(ins[0], ins[1], ins[2], ins[3], *rest)
            (h.sum() + c.sum() + lp.sum()).backward()
            outs.append([h, c, lp] + [a.grad for a in ins])
        err = max((a - b).abs().max().item() for a, b in zip(*outs))
        if not err < 1e-4:
            raise RuntimeError(f"compiled step differs from eager by {err}")
        model.step_fn = step
        return True
    except Exception as exc:  # noqa: BLE001 - any compile failure: train with the eager step
        tqdm.write(f"torch.compile of the skim step failed, using eager: {type(exc).__name__}: {exc}")
        return False


def base_record(base) -> dict:
    """What a fine-tuned model started from, kept in its manifest: the chain back to a from-scratch run stays
    traceable when the base itself is not shipped (a language model, an intermediate run)."""
    t = base.manifest.get("training", {})
    return {"name": base.manifest["name"], "task": base.manifest["task"], "family": base.manifest.get("family"),
            "dataset": t.get("dataset"), "weights_sha256": base.manifest["files"].get("weights.npz"),
            "command": t.get("command"), "base": t.get("base")}


class WeightAverage:
    """Exponential moving average of a model's float weights (Polyak averaging): a smoother checkpoint than
    the last step's weights, at no cost to training. `applied` swaps it in for evaluation and checkpoints."""

    def __init__(self, model, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    def current_decay(self) -> float:
        """With warmup, min(decay, (1 + n) / (10 + n)) after n updates: the first averages follow the live
        weights instead of holding the start (a fresh small cell and decision layer) for ~1/(1 - decay) steps."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model) -> None:
        decay = self.current_decay()
        self.updates += 1
        for k, v in model.state_dict().items():
            if k in self.avg:
                self.avg[k].mul_(decay).add_(v, alpha=1 - decay)

    @contextlib.contextmanager
    def applied(self, model):
        live = copy.deepcopy(model.state_dict())
        model.load_state_dict({**live, **self.avg})
        try:
            yield
        finally:
            model.load_state_dict(live)


def embeddings_note(args) -> str:
    if args.tune_embeddings:
        return "GloVe 6B 50d, fine-tuned"
    if args.init_from:
        return "GloVe 6B 50d rows as the starting model left them, frozen in this run"
    return "GloVe 6B 50d, frozen"


def tau_at(step: int, rate: float) -> float:
    return max(0.5, math.exp(-rate * step))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--family", required=True, choices=["lstm", "skim"])
    p.add_argument("--name", required=True)
    p.add_argument("--out-dir", default="models")
    p.add_argument("--data-dir", default=None, help="default: $SKIMSERVE_DATA or ../shared/data")
    p.add_argument("--vocab-cache", default=None, help="folder caching vocab + GloVe rows per dataset")
    p.add_argument("--init-from", default=None,
                   help="artifact of a trained LSTM to start from: a Skim-LSTM's big cell, or an LSTM to fine-tune; "
                        "from another dataset, its vocabulary is extended with this training split's words. "
                        "A Skim-LSTM artifact (--family skim, same dataset) continues its training: all its "
                        "weights, and the Gumbel temperature schedule from the step it was kept at")
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--d-small", type=int, default=10)
    p.add_argument("--gamma", type=float, default=0.02)
    p.add_argument("--tau-rate", type=float, default=1e-4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--emb-dropout", type=float, default=None, help="dropout on the word vectors; default: --dropout")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 (Adam weight_decay) on all weights but the embedding")
    p.add_argument("--forget-bias", type=float, default=0.0, help="LSTM: added to the forget-gate bias at init")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="skim: torch.compile the training step (auto: on CUDA); falls back to eager if it fails")
    p.add_argument("--tune-embeddings", action="store_true", help="default: GloVe rows frozen")
    p.add_argument("--max-len", type=int, default=0, help="training truncation (keep last N tokens); 0 = none")
    p.add_argument("--max-steps", type=int, default=20000,
                   help="a cap on the step count (a continued run starts at its base's step)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--patience", type=int, default=3000, help="stop when dev accuracy has not improved for N steps")
    p.add_argument("--min-skim", type=float, default=0.0,
                   help="skim models: only checkpoints whose dev skim rate is at least this count as best")
    p.add_argument("--time-budget", type=float, default=0, help="stop after N seconds of training (keeps the best)")
    p.add_argument("--limit", type=int, default=None, help="use only N training examples (smoke tests)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="evaluate and keep an exponential moving average of the weights with this decay "
                        "(e.g. 0.999); 0 = the raw weights")
    p.add_argument("--ema-warmup", action="store_true",
                   help="with --ema: average with decay min(ema, (1+n)/(10+n)) after n steps")
    p.add_argument("--hard-gumbel", action="store_true",
                   help="skim: straight-through Gumbel-softmax (forward with the sampled hard decision, as "
                        "served; gradient of the soft weight); default: the soft mixture of the paper")
    p.add_argument("--distill", default=None,
                   help="a teacher-labelled transfer set (training/teacher_labels.py): every step also trains on a "
                        "batch of it, loss += distill-weight * cross-entropy against the teachers' probabilities "
                        "(+ the skim loss on it)")
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--distill-batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    run = RunLog("training.train")
    train = data.load(args.dataset, "train", args.data_dir, args.limit)
    dev = data.load(args.dataset, "dev", args.data_dir, args.limit)
    vocab_key = f"{args.dataset}-{args.limit or 'full'}"
    if args.init_from:
        base = load_artifact(args.init_from)
        args.d = base.manifest["sizes"]["hidden"]  # the big cell is the base LSTM's
        if base.manifest["family"] == "skim-lstm":
            if args.family != "skim" or base.manifest["training"]["dataset"] != args.dataset:
                raise SystemExit(f"--init-from {args.init_from}: a Skim-LSTM artifact continues only a "
                                 f"--family skim run on its own dataset ({base.manifest['training']['dataset']})")
            args.d_small = base.manifest["sizes"]["small_hidden"]
        if base.manifest["training"]["dataset"] == args.dataset:
            vocab, emb = base.vocab, base.weights["embedding"]
            vocab_stats = base.manifest.get("vocab_stats", {})
        else:  # transfer (e.g. IMDb -> SST-2): the base's words, plus this split's words it lacks
            vocab, emb, vocab_stats = extend_vocab(base.vocab, base.weights["embedding"], [ex.text for ex in train])
            vocab_stats["base"] = base.manifest["name"]
    else:
        vocab, emb, vocab_stats = cached_vocab(Path(args.vocab_cache) if args.vocab_cache else None, vocab_key,
                                               lambda: build_vocab([ex.text for ex in train]))
    index = {w: i for i, w in enumerate(vocab)}
    enc_train, enc_dev = encode(train, index, args.max_len), encode(dev, index, 0)
    enc_distill, distill_record = load_distill(args, index) if args.distill else (None, None)
    emb_t = torch.tensor(emb)
    device = torch.device(args.device)
    base_lstm, start_step = None, 0
    continued = args.init_from and base.manifest["family"] == "skim-lstm"
    if continued:
        start_step = base.manifest["training"]["best_step"]  # the temperature schedule goes on from here
    elif args.init_from:
        if base.manifest["family"] != "lstm":
            raise SystemExit(f"--init-from needs an LSTM artifact, {args.init_from} is {base.manifest['family']}")
        # emb_t: the (possibly extended) vocabulary's rows
        base_lstm = lstm_from_weights({k: torch.tensor(v) for k, v in base.weights.items()}, emb_t, 2)
    if args.family == "lstm":
        model = LSTMClassifier(emb_t, args.d, 2, args.dropout, not args.tune_embeddings, args.emb_dropout)
        if base_lstm is not None:  # fine-tune a trained LSTM (e.g. one trained on another dataset)
            model.load_state_dict(base_lstm.state_dict())
        elif args.forget_bias:
            with torch.no_grad():
                model.lstm.bias_ih_l0[args.d:2 * args.d] += args.forget_bias
    else:
        model = SkimLSTMClassifier(emb_t, args.d, args.d_small, 2, args.dropout, not args.tune_embeddings,
                                   args.emb_dropout)
        if base_lstm is not None:
            model.init_from_lstm(base_lstm)
        if continued:
            with torch.no_grad():
                for k, v in model.export_weights().items():
                    v.copy_(torch.from_numpy(base.weights[k]))
        model.hard_gumbel = args.hard_gumbel
    model.to(device).train()
    decay = [q for n, q in model.named_parameters() if q.requires_grad and not n.startswith("embedding")]
    rest = [q for n, q in model.named_parameters() if q.requires_grad and n.startswith("embedding")]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest}], lr=args.lr)
    compiled = args.family == "skim" and (args.compile == "on" or (args.compile == "auto" and device.type == "cuda"))
    if compiled:
        compiled = try_compile(model, device, args.batch_size)

    out = Path(args.out_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    log = run.log
    log({"event": "start", "args": vars(args), "train": len(train), "dev": len(dev), "vocab": vocab_stats,
         "compiled_step": compiled, "start_step": start_step, "distill": distill_record})
    rng = random.Random(args.seed)
    distill_stream = endless(enc_distill, args.distill_batch, random.Random(args.seed + 1)) if enc_distill else None
    ema = WeightAverage(model, args.ema, args.ema_warmup) if args.ema else None
    run.stop_on_sigterm()
    best = (-1.0, None, start_step, 0.0)  # dev acc, state, step, skim
    step, epoch, stop = start_step, 0, False
    bar = tqdm(total=args.max_steps, initial=start_step, desc=args.name, mininterval=5)
    while not stop:
        epoch += 1
        for ids, lengths, labels in batches(enc_train, args.batch_size, rng):
            if step >= args.max_steps:  # a continued run may start at its cap already
                stop = True
                break
            ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
            tau = tau_at(step, args.tau_rate)
            logits, aux = model(ids, lengths, tau=tau)
            loss = F.cross_entropy(logits, labels)
            if aux is not None:
                loss = loss + skim_loss(aux, args.gamma)
            if distill_stream is not None:
                d_ids, d_lengths, d_probs = next(distill_stream)
                d_logits, d_aux = model(d_ids.to(device), d_lengths.to(device), tau=tau)
                loss = loss + args.distill_weight * soft_cross_entropy(d_logits, d_probs.to(device))
                if d_aux is not None:
                    loss = loss + skim_loss(d_aux, args.gamma)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            bar.update(1)
            if step % args.eval_every == 0:
                with ema.applied(model) if ema is not None else contextlib.nullcontext():
                    acc, skim = evaluate(model, enc_dev, device)
                    eligible = args.family == "lstm" or skim >= args.min_skim
                    improved = eligible and acc > best[0]
                    if improved:
                        best = (acc, copy.deepcopy(model.state_dict()), step, skim)
                log({"event": "eval", "step": step, "epoch": epoch, "tau": round(tau, 4), "loss": round(loss.item(), 4),
                     "dev_acc": round(acc, 4), "dev_skim": round(skim, 4), "best": improved})
                bar.set_postfix(dev=f"{acc:.3f}", skim=f"{skim:.2f}")
                if step - best[2] >= args.patience and best[1] is not None:
                    stop = True
            if step >= args.max_steps or run.over_budget(args.time_budget) or run.sigterm_at is not None:
                stop = True
            if stop:
                break
    bar.close()
    if best[1] is None:
        acc, skim = evaluate(model, enc_dev, device)  # no checkpoint qualified: keep the last, report it truly
        best = (acc, copy.deepcopy(model.state_dict()), step, skim)
    model.load_state_dict(best[1])
    if run.sigterm_at is not None:
        log({"event": "sigterm", "at_s": round(run.sigterm_at, 1)})
    log({"event": "done", "best_step": best[2], "best_dev_acc": best[0], "best_dev_skim": best[3], "steps": step})

    weights = {k: v.detach().cpu().float().numpy() for k, v in model.export_weights().items()}
    weights["embedding"] = model.embedding.weight.detach().cpu().numpy().astype(np.float16)  # halves the size
    run.write(out)
    family = "lstm" if args.family == "lstm" else "skim-lstm"
    cmd = run.command(argv)
    manifest = new_manifest(
        args.name, "classify", family, version=time.strftime("%Y%m%d"),
        sizes={"embed": emb.shape[1], "hidden": args.d, "small_hidden": args.d_small if family != "lstm" else 0},
        labels=data.LABELS, default_threshold=0.5,
        tokenizer={"name": TOKENIZER_NAME, "module": "service/tokenizer.py", "lowercase": True},
        vocab_stats=vocab_stats,
        training={"command": cmd, "dataset": args.dataset, "data": f"../shared/data/{args.dataset}",
                     "splits": {"train": len(train), "dev": len(dev)}, "split_seed": data.SPLIT_SEED,
                     "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("name", "out_dir", "device")},
                     "embeddings": embeddings_note(args),
                     "best_step": best[2], "dev_accuracy": best[0], "dev_skim_rate": best[3],
                     **({"start_step": start_step} if continued else {}),
                     **({"distill": distill_record} if distill_record else {}),
                     "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                     "seconds": round(run.elapsed(), 1),
                     "base": base_record(base) if args.init_from else None})
    write_artifact(out, manifest, weights, vocab, extra_files=(LOG_FILE,))
    print(f"wrote {out} (dev acc {best[0]:.4f}, dev skim {best[3]:.3f})")


if __name__ == "__main__":
    main()
