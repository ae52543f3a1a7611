"""Train a wide dense LSTM teacher and AntMan students of it by distillation, as skimserve artifacts.

  # the teacher: a dense d=400 LSTM over the frozen embedding of the narrow model (its `base`)
  python -m training.train_antman --dataset sst2 --cell lstm --d 400 --base models/sst2-lstm --name sst2-lstm-d400
  # the coefficient rule (section 4 of the paper): train the student with each loss alone, keep the converged
  # dev value of that loss ...
  python -m training.train_antman --dataset sst2 --cell antman-lstm --W-ih lgp-shuffle:10 --W-hh lgp-shuffle:10 \
      --base models/sst2-lstm --teacher models/sst2-lstm-d400 --loss mse --probe-out probes/sst2-mse.json
  # ... then distill with C_target = 1 and C_mse, C_kl scaling their terms to the target loss's magnitude
  python -m training.train_antman --dataset sst2 --cell antman-lstm --W-ih lgp-shuffle:10 --W-hh lgp-shuffle:10 \
      --base models/sst2-lstm --teacher models/sst2-lstm-d400 --probes probes/sst2-{ce,mse,kl}.json --name sst2-antman-10x
  # AntMan + skim: the big cell compressed, small cell and decision layer as the Skim-LSTM (training/torch_models.py)
  python -m training.train_antman --dataset sst2 --cell antman-skim-lstm --W-ih lgp-shuffle:5 --W-hh lgp-shuffle:5 \
      --d-small 20 --gamma 0.04 --min-skim 0.5 --read-warmup 1500 ... --name sst2-antman-skim

Loss (eq. 1): C_target * CE(student, labels) + C_mse * MSE(student logits, teacher logits)
+ C_kl * KL(teacher || student); the teacher's logits are computed on the fly (eval mode, no dropout).
The embedding is frozen and is the base model's, so the artifact holds only the recurrent layer and the
head and names its base by checksum (service/artifacts.py). Selection (early stopping) on dev only;
--results writes the test-split accuracy measured here in torch, after selection.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from service.artifacts import load_artifact, write_artifact
from service.flops import decision_flops, read_flops, skim_flops
from service.manifest import new_manifest
from service.tokenizer import TOKENIZER_NAME

from . import data, encoded_splits
from .antman import AntManClassifier, AntManSkimClassifier, from_artifact, parse_spec
from .runlog import LOG_FILE, RunLog
from .torch_models import LSTMClassifier, lstm_from_weights, skim_loss
from .train import WeightAverage, base_record, batches, encode, evaluate, tau_at

CELLS = ("lstm", "antman-lstm", "antman-skim-lstm")
LOSSES = ("target", "mse", "kl")


def loss_terms(logits, teacher_logits, labels) -> dict:
    """The three terms of eq. 1 (means over the batch; KL(teacher || student) summed over classes)."""
    terms = {"target": F.cross_entropy(logits, labels)}
    if teacher_logits is not None:
        terms["mse"] = F.mse_loss(logits, teacher_logits)
        terms["kl"] = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(teacher_logits, -1), log_target=True,
                               reduction="batchmean")
    return terms


def coefficients(converged: dict) -> dict:
    """The paper's rule: C_target = 1, and C_mse, C_kl chosen so that each term, at the value its loss
    converged to when trained alone, is about as large as the target term (rounded to 2 significant digits)."""
    ref = converged["target"]
    out = {"C_target": 1.0}
    for k in ("mse", "kl"):
        out["C_" + k] = float(f"{ref / max(converged[k], 1e-8):.2g}")
    return out


def read_probes(paths: list[str]) -> tuple[dict, list[dict]]:
    """The converged value of each loss from its single-loss probe run (--probe-out files)."""
    probes = [json.loads(Path(p).read_text()) for p in paths]
    converged = {p["loss"]: p["converged"] for p in probes}
    missing = set(LOSSES) - set(converged)
    if missing:
        raise SystemExit(f"--probes: no probe for {sorted(missing)} (need one run per loss: {', '.join(LOSSES)})")
    return converged, probes


@torch.no_grad()
def dev_losses(model, teacher, encoded, device, batch_size=512) -> dict:
    model.eval()
    sums, n = {}, 0
    for ids, lengths, labels in batches(encoded, batch_size, None):
        ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
        logits, _ = model(ids, lengths)
        t_logits = teacher(ids, lengths)[0] if teacher is not None else None
        for k, v in loss_terms(logits, t_logits, labels).items():
            sums[k] = sums.get(k, 0.0) + v.item() * len(labels)
        n += len(labels)
    model.train()
    return {k: v / n for k, v in sums.items()}


def load_teacher(folder: str, emb: torch.Tensor, vocab: list[str]):
    art = load_artifact(folder)
    if art.vocab != vocab:
        raise SystemExit(f"--teacher {folder}: its vocabulary is not the base's")
    t = lstm_from_weights({k: torch.tensor(v) for k, v in art.weights.items()}, emb, 2)
    for q in t.parameters():
        q.requires_grad_(False)
    return art, t.eval()


def load_splits(args, base, index) -> tuple[dict, str]:
    """Encoded train / dev / test: from the texts (train truncated to --max-len), or from an --encoded file
    (training/encoded_splits.py) made with the base's vocabulary; test is read only when asked for."""
    if args.encoded is None:
        def test():
            return encode(data.load(args.dataset, "test", args.data_dir, args.limit), index, 0)
        enc = {"train": encode(data.load(args.dataset, "train", args.data_dir, args.limit), index, args.max_len),
               "dev": encode(data.load(args.dataset, "dev", args.data_dir, args.limit), index, 0), "test": test}
        return enc, f"../shared/data/{args.dataset}"
    meta, enc = encoded_splits.read(args.encoded)
    if meta["dataset"] != args.dataset or meta["vocab_sha256"] != base.manifest["files"]["vocab.txt"]:
        raise SystemExit(f"--encoded {args.encoded}: {meta['dataset']} ids of {meta['base']}'s vocabulary, "
                         f"not {args.dataset} ids of {base.manifest['name']}'s")
    if args.max_len:
        enc["train"] = [(ids[-args.max_len:], y) for ids, y in enc["train"]]
    if args.limit:
        enc = {k: v[:args.limit] for k, v in enc.items()}
    if "test" not in enc:
        def missing():
            raise SystemExit(f"--results: {args.encoded} holds no test split")
        enc["test"] = missing
    note = (f"../shared/data/{args.dataset} as token ids ({Path(args.encoded).name}, training/encoded_splits.py, "
            f"each text's last {meta['max_len']} tokens)" if meta["max_len"] else
            f"../shared/data/{args.dataset} as token ids ({Path(args.encoded).name}, training/encoded_splits.py)")
    return enc, note


def build_model(args, emb_t: torch.Tensor):
    e = emb_t.shape[1]
    if args.cell == "lstm":
        m = LSTMClassifier(emb_t, args.d, 2, args.dropout, True, args.emb_dropout)
        cost = read_flops(e, args.d)
        return m, cost
    ih, hh = parse_spec(args.W_ih), parse_spec(args.W_hh)
    if args.cell == "antman-lstm":
        m = AntManClassifier(emb_t, args.d, 2, ih, hh, args.dropout, args.emb_dropout)
        if args.init_from:
            init_big_cell(m, args.init_from)
        return m, m.rnn.read_cost()
    m = AntManSkimClassifier(emb_t, args.d, args.d_small, 2, ih, hh, args.dropout, args.emb_dropout)
    m.hard_gumbel = args.hard_gumbel
    if args.init_from:
        init_big_cell(m, args.init_from)
    return m, m.big.read_cost()


def init_big_cell(model, folder: str) -> None:
    """Start a student's big cell and head from a trained antman-lstm student of the same compression:
    an AntMan+skim student (as train.py --init-from starts a Skim-LSTM from an LSTM; only the small cell
    and the decision layer start fresh), or an antman-lstm student continued (e.g. on longer texts)."""
    src = from_artifact(load_artifact(folder))
    big = model.big if hasattr(model, "big") else model.rnn
    if src.rnn.compression() != big.compression():
        raise SystemExit(f"--init-from {folder}: compression {src.rnn.compression()}, this student "
                         f"{big.compression()}")
    big.load_state_dict(src.rnn.state_dict())
    model.head.load_state_dict(src.head.state_dict())


def cost_record(args, e: int, read_cost: int, skim_rate: float) -> dict:
    """Per-token recurrent FLOPs (service/flops.py conventions) against the dense teacher's read."""
    teacher = read_flops(e, args.d)
    per_token = read_cost
    if args.cell == "antman-skim-lstm":
        per_token = ((1 - skim_rate) * read_cost + skim_rate * skim_flops(e, args.d, args.d_small)
                     + decision_flops(e, args.d))
    return {"read_flops": read_cost, "teacher_read_flops": teacher, "per_token_flops": round(per_token, 1),
            "flop_reduction": round(teacher / per_token, 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--cell", required=True, choices=CELLS)
    p.add_argument("--name", default=None, help="artifact name (not needed with --probe-out)")
    p.add_argument("--base", required=True, help="the narrow model whose vocabulary and frozen embedding are reused")
    p.add_argument("--teacher", default=None, help="the dense teacher artifact (students)")
    p.add_argument("--out-dir", default="models")
    p.add_argument("--data-dir", default=None, help="default: $SKIMSERVE_DATA or ../shared/data")
    p.add_argument("--encoded", default=None, help="read the splits as token ids from this file "
                                                 "(training/encoded_splits.py) instead of the texts")
    p.add_argument("--d", type=int, default=400)
    p.add_argument("--W-ih", dest="W_ih", default="dense", help="module of W_ih x: dense, lgp-shuffle:G, "
                                                               "lgp-dense:G, lowrank-lgp:GI,GO,R")
    p.add_argument("--W-hh", dest="W_hh", default="dense", help="module of W_hh h (same forms)")
    p.add_argument("--loss", choices=["distill", *LOSSES], default="distill",
                   help="distill: eq. 1 with --probes/--coefficients; target/mse/kl: that loss alone (a probe run)")
    p.add_argument("--probes", nargs="+", default=None, help="the three --probe-out files of the coefficient rule")
    p.add_argument("--coefficients", default=None, help="C_target,C_mse,C_kl given directly (instead of --probes)")
    p.add_argument("--probe-out", default=None, help="probe run: write the converged dev losses here, no artifact")
    p.add_argument("--init-from", default=None, help="start the big cell and head from this antman-lstm "
                                                   "student (same compression): continue it (antman-lstm) "
                                                   "or add skimming to it (antman-skim-lstm)")
    p.add_argument("--d-small", type=int, default=10)
    p.add_argument("--gamma", type=float, default=0.02)
    p.add_argument("--tau-rate", type=float, default=1e-4)
    p.add_argument("--hard-gumbel", action="store_true")
    p.add_argument("--min-skim", type=float, default=0.0)
    p.add_argument("--read-warmup", type=int, default=0,
                   help="antman-skim-lstm: the first N steps read every token (the big cell and head learn as "
                        "a plain student), then the small cell and decision layer train too")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--emb-dropout", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-len", type=int, default=0, help="training truncation (keep the last N tokens); 0 = none")
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--patience", type=int, default=3000)
    p.add_argument("--time-budget", type=float, default=0)
    p.add_argument("--ema", type=float, default=0.0)
    p.add_argument("--limit", type=int, default=None, help="use only N examples of each split (smoke tests)")
    p.add_argument("--results", default=None, help="write test-split accuracy (torch, after selection) here")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.cell != "lstm" and not args.teacher:
        raise SystemExit("students need --teacher")
    if args.loss == "distill" and args.cell != "lstm" and not (args.probes or args.coefficients):
        raise SystemExit("--loss distill needs --probes (the coefficient rule) or --coefficients")
    if not args.probe_out and not args.name:
        raise SystemExit("--name is required (or --probe-out for a probe run)")

    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    run = RunLog("training.train_antman")
    log = run.log
    base = load_artifact(args.base)
    if base.manifest["training"]["dataset"] != args.dataset:
        raise SystemExit(f"--base {args.base} was trained on {base.manifest['training']['dataset']}, not {args.dataset}")
    vocab, emb = base.vocab, base.weights["embedding"]
    index = {w: i for i, w in enumerate(vocab)}
    enc, data_note = load_splits(args, base, index)
    enc_train, enc_dev = enc["train"], enc["dev"]
    emb_t = torch.tensor(emb)
    device = torch.device(args.device)
    teacher_art, teacher = load_teacher(args.teacher, emb_t, vocab) if args.teacher else (None, None)
    if teacher is not None:
        teacher.to(device)
        if teacher_art.manifest["sizes"]["hidden"] != args.d:
            raise SystemExit(f"--d {args.d}: the teacher has d={teacher_art.manifest['sizes']['hidden']}")

    distillation = None
    if args.loss != "distill":
        coef = {"C_target": 0.0, "C_mse": 0.0, "C_kl": 0.0, f"C_{args.loss}": 1.0}
    elif args.cell == "lstm" and teacher is None:
        coef = {"C_target": 1.0, "C_mse": 0.0, "C_kl": 0.0}
    elif args.probes:
        converged, probes = read_probes(args.probes)
        coef = coefficients(converged)
        distillation = {**coef, "rule": "C_target = 1; C_mse, C_kl = converged target loss / converged MSE, KL "
                                        "(each loss trained alone, its dev value at convergence; AntMan section 4)",
                        "converged": converged,
                        "probes": [{k: p[k] for k in ("loss", "converged", "steps", "compression")} for p in probes]}
    else:
        c = [float(v) for v in args.coefficients.split(",")]
        coef = {"C_target": c[0], "C_mse": c[1], "C_kl": c[2]}
        distillation = {**coef, "rule": "given on the command line"}
    key = {"C_target": "target", "C_mse": "mse", "C_kl": "kl"}

    model, read_cost = build_model(args, emb_t)
    model.to(device).train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    ema = WeightAverage(model, args.ema, warmup=True) if args.ema else None  # warmup: early averages follow the weights
    skims = args.cell == "antman-skim-lstm"
    log({"event": "start", "args": vars(args), "train": len(enc_train), "dev": len(enc_dev), "coefficients": coef,
         "read_flops": read_cost, "teacher_read_flops": read_flops(emb.shape[1], args.d),
         "parameters": sum(q.numel() for q in params)})
    run.stop_on_sigterm()
    rng = random.Random(args.seed)
    probe_mode = args.probe_out is not None
    best = (float("inf") if probe_mode else -1.0, None, 0, 0.0)  # score, state, step, skim
    history = []
    step, epoch, stop = 0, 0, False
    bar = tqdm(total=args.max_steps, desc=args.name or args.probe_out, mininterval=30)
    while not stop:
        epoch += 1
        for ids, lengths, labels in batches(enc_train, args.batch_size, rng):
            ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
            warm = skims and step < args.read_warmup
            if skims and not warm:
                logits, aux = model(ids, lengths, tau=tau_at(step - args.read_warmup, args.tau_rate))
            elif skims:
                logits, aux = model.forward_read(ids, lengths)
            else:
                logits, aux = model(ids, lengths)
            with torch.no_grad():
                t_logits = teacher(ids, lengths)[0] if teacher is not None else None
            terms = loss_terms(logits, t_logits, labels)
            loss = sum(c * terms[key[k]] for k, c in coef.items() if c)
            if aux is not None:
                loss = loss + skim_loss(aux, args.gamma)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            bar.update(1)
            if step % args.eval_every == 0:
                with ema.applied(model) if ema is not None else contextlib.nullcontext():
                    acc, skim = evaluate(model, enc_dev, device, batch_size=512)
                    dl = dev_losses(model, teacher, enc_dev, device) if (probe_mode or teacher is not None) else {}
                    if probe_mode:
                        score, improved = dl[args.loss], dl[args.loss] < best[0]
                    else:
                        eligible = not skims or (step > args.read_warmup and skim >= args.min_skim)
                        score, improved = acc, eligible and acc > best[0]
                    if improved:
                        best = (score, copy.deepcopy(model.state_dict()), step, skim)
                rec = {"event": "eval", "step": step, "epoch": epoch, "loss": round(loss.item(), 4),
                       "dev_acc": round(acc, 4), "dev_skim": round(skim, 4),
                       **{f"dev_{k}": round(v, 5) for k, v in dl.items()}, "best": improved}
                history.append(rec)
                log(rec)
                if step - best[2] >= args.patience and best[1] is not None:
                    stop = True
            if step >= args.max_steps or run.over_budget(args.time_budget) or run.sigterm_at is not None:
                stop = True
            if stop:
                break
    bar.close()
    if best[1] is None:  # no checkpoint qualified: keep the last one, report it truly
        acc, skim = evaluate(model, enc_dev, device, batch_size=512)
        best = (acc, copy.deepcopy(model.state_dict()), step, skim)
    model.load_state_dict(best[1])
    log({"event": "done", "best_step": best[2], "best_score": best[0], "best_dev_skim": best[3], "steps": step})

    if probe_mode:
        out = {"loss": args.loss, "converged": best[0], "best_step": best[2], "steps": step,
               "compression": {"W_ih": parse_spec(args.W_ih), "W_hh": parse_spec(args.W_hh)},
               "dataset": args.dataset, "teacher": teacher_art.manifest["name"], "history": history,
               "command": run.command(argv)}
        Path(args.probe_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.probe_out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.probe_out} (converged dev {args.loss} = {best[0]:.5f})")
        return

    dev_acc, dev_skim = best[0], best[3]
    e = emb.shape[1]
    cost = cost_record(args, e, read_cost, dev_skim)
    if args.results:
        test = enc["test"]() if callable(enc["test"]) else enc["test"]
        acc, skim = evaluate(model, test, device, batch_size=512)
        res = {"name": args.name, "dataset": args.dataset, "cell": args.cell, "test_accuracy": acc,
               "test_skim_rate": skim, "test_examples": len(test), "dev_accuracy": dev_acc, "dev_skim_rate": dev_skim,
               **cost_record(args, e, read_cost, skim), "teacher": teacher_art.manifest["name"] if teacher_art else None,
               "compression": None if args.cell == "lstm" else {"W_ih": parse_spec(args.W_ih), "W_hh": parse_spec(args.W_hh)},
               "distillation": distillation, "measured_with": "torch, training/train_antman.py --results, threshold 0.5"}
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(res, indent=1) + "\n")
        log({"event": "test", "accuracy": acc, "skim_rate": skim, "examples": len(test)})

    out = Path(args.out_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().float().numpy() for k, v in model.export_weights().items()}
    run.write(out)
    extra = {}
    if args.cell != "lstm":
        extra = {"compression": {"W_ih": parse_spec(args.W_ih), "W_hh": parse_spec(args.W_hh)},
                 "teacher": teacher_art.manifest["name"], "distillation": distillation}
    manifest = new_manifest(
        args.name, "classify", args.cell, version=time.strftime("%Y%m%d"),
        sizes={"embed": e, "hidden": args.d, "small_hidden": args.d_small if skims else 0},
        labels=data.LABELS, default_threshold=0.5,
        tokenizer={"name": TOKENIZER_NAME, "module": "service/tokenizer.py", "lowercase": True},
        vocab_stats=base.manifest.get("vocab_stats", {}),
        base={"name": base.manifest["name"], "version": base.manifest.get("version"),
              "files": {f: base.manifest["files"][f] for f in ("weights.npz", "vocab.txt")}},
        **extra,
        training={"command": run.command(argv), "dataset": args.dataset, "data": data_note,
                  "splits": {"train": len(enc_train), "dev": len(enc_dev)}, "split_seed": data.SPLIT_SEED,
                  "hyperparameters": {k: v for k, v in vars(args).items()
                                      if k not in ("name", "out_dir", "device", "results")},
                  "embeddings": f"the base model {base.manifest['name']}'s rows, frozen",
                  "best_step": best[2], "dev_accuracy": dev_acc, "dev_skim_rate": dev_skim,
                  "recurrent_flops": cost, "device": str(device), "torch": torch.__version__,
                  "python": platform.python_version(), "seconds": round(run.elapsed(), 1),
                  "base": base_record(base),
                  "teacher": base_record(teacher_art) if teacher_art else None})
    write_artifact(out, manifest, weights, vocab, extra_files=(LOG_FILE,))
    print(f"wrote {out} (dev acc {dev_acc:.4f}, dev skim {dev_skim:.3f}, {cost['flop_reduction']}x fewer FLOPs)")


if __name__ == "__main__":
    main()
