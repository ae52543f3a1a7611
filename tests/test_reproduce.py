"""training.reproduce: a shipped model's recipe is the command chain its manifest records."""
import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

import pytest

from training import reproduce

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
# The models trained by training.train (classifiers); the QA readers (training.train_qa) and skip predictors
# (training.skip_predictor) record their one command, which docs/qa-training.md and docs/skip-predictor.md give.
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/manifest.json")
                 if json.loads(p.read_text())["training"]["command"].startswith("python -m training.train "))
WORK = "runs/reproduce"


def manifest(name):
    return json.loads((MODELS / name / "manifest.json").read_text())


def recorded_chain(m):
    """The manifest's training commands, the run from scratch first, read here without the module."""
    out, rec = [], m["training"]
    while rec:
        out.append(rec["command"])
        rec = rec.get("base")
    return out[::-1]


def commands(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def masked(cmd):
    """A command's tokens with the values of the location flags taken out (and --data-dir dropped)."""
    toks, out, i = shlex.split(cmd), [], 0
    while i < len(toks):
        if toks[i] in reproduce.LOCATION_FLAGS:
            if toks[i] != "--data-dir":
                out.append(toks[i])
            i += 2
        else:
            out.append(toks[i])
            i += 1
    return out


def test_six_models_ship():
    assert SHIPPED == ["imdb-lstm", "imdb-skim", "mr-lstm", "mr-skim", "sst2-lstm", "sst2-skim"]


@pytest.mark.parametrize("name", SHIPPED)
def test_recorded_mode_prints_the_manifests_commands_in_chain_order(name, capsys):
    m = manifest(name)
    assert reproduce.main([str(MODELS / name), "--recorded"]) == 0
    printed = commands(capsys.readouterr().out)
    expected = recorded_chain(m)
    if m.get("default_threshold_selection"):
        expected.append(m["default_threshold_selection"]["command"])
    assert printed == expected


@pytest.mark.parametrize("name", SHIPPED)
def test_runnable_chain_is_the_manifests_with_only_locations_rewritten(name, capsys):
    m = manifest(name)
    assert reproduce.main([str(MODELS / name)]) == 0
    printed = commands(capsys.readouterr().out)
    train = [c for c in printed if " training.train " in c or " training.pretrain_lm " in c]
    recorded = recorded_chain(m)
    assert [masked(c) for c in train] == [masked(c) for c in recorded]
    # each step writes under the work folder and starts from the output of the step before it
    previous = None
    for cmd in train:
        argv = shlex.split(cmd)
        assert reproduce._flag_value(argv, "--out-dir") == WORK
        assert "--data-dir" not in argv
        inits = [argv[i + 1] for i, t in enumerate(argv) if t == "--init-from"]
        if previous is None:
            assert not inits
        else:
            assert inits and set(inits) == {f"{WORK}/{previous}"}
        previous = reproduce._flag_value(argv, "--name")
    assert previous == m["selection"]["chosen"]
    # then published beside the runs, never over the shipped folder, and evaluated there
    published = f"{WORK}/models/{name}"
    tail = printed[len(printed) - (2 + bool(m.get("onnx")) + bool(m.get("default_threshold_selection"))):]
    assert tail[0].startswith(f"python -m training.publish --name {name} --out-dir {WORK}/models")
    assert tail[0].endswith(f" {WORK}/{previous}")
    assert tail[-1] == f"python -m training.evaluate {published}"
    assert not any(" models/" in c for c in printed)


def test_distilled_model_gets_its_teacher_steps_from_the_distill_record(capsys):
    m = manifest("sst2-skim")
    d = m["training"]["distill"]
    assert reproduce.main([str(MODELS / "sst2-skim")]) == 0
    printed = commands(capsys.readouterr().out)
    teach = next(shlex.split(c) for c in printed if "training.minilm_teacher" in c)
    lrs = teach[teach.index("--lrs") + 1:teach.index("--seeds")]
    seeds = teach[teach.index("--seeds") + 1:teach.index("--epochs")]
    assert sorted(float(x) for x in lrs) == sorted({t["hyperparameters"]["lr"] for t in d["teachers"]})
    assert len(lrs) * len(seeds) == len(d["teachers"]) == 6
    assert {f"minilm-sst2-lr{float(lr):g}-s{s}" for lr in lrs for s in seeds} == {t["name"] for t in d["teachers"]}
    assert reproduce._flag_value(teach, "--epochs") == "4"
    labels = reproduce._flag_value(teach, "--out")
    assert labels == f"{WORK}/{d['file']}"
    students = [shlex.split(c) for c in printed if "--distill" in c]
    assert len(students) == 2 and all(reproduce._flag_value(s, "--distill") == labels for s in students)
    transfer = next(shlex.split(c) for c in printed if "training.transfer_set" in c)
    assert reproduce._flag_value(transfer, "--max") == str(d["sentences"])
    assert printed.index(shlex.join(teach)) < printed.index(shlex.join(students[0]))


def test_teachers_not_a_grid_are_refused():
    d = manifest("sst2-skim")["training"]["distill"]
    with pytest.raises(reproduce.ReproduceError, match="grid"):
        reproduce.teacher_steps({**d, "teachers": d["teachers"][:5]}, Path(WORK))


def test_from_shipped_starts_from_the_shipped_model_whose_weights_are_the_base(capsys):
    # sst2-skim's base run (sst2-l8kd-w2-imdb) is what ships as sst2-lstm; sst2-lstm's base is imdb-lstm
    assert manifest("sst2-skim")["training"]["base"]["weights_sha256"] == manifest("sst2-lstm")["files"]["weights.npz"]
    assert manifest("sst2-lstm")["training"]["base"]["weights_sha256"] == manifest("imdb-lstm")["files"]["weights.npz"]
    for name, base, runs in (("sst2-skim", "sst2-lstm", ["sst2-s8b-w1-s2"]),
                             ("sst2-lstm", "imdb-lstm", ["sst2-l8kd-w2-imdb"])):
        assert reproduce.main([str(MODELS / name), "--from-shipped"]) == 0
        train = [shlex.split(c) for c in commands(capsys.readouterr().out) if " training.train " in c]
        assert [reproduce._flag_value(t, "--name") for t in train] == runs
        assert reproduce._flag_value(train[0], "--init-from") == str(MODELS / base)
    # a base that does not ship (the language model) is trained
    assert reproduce.main([str(MODELS / "imdb-lstm"), "--from-shipped"]) == 0
    assert "training.pretrain_lm" in capsys.readouterr().out


def test_data_dir_is_given_through_the_environment(capsys):
    assert reproduce.main([str(MODELS / "mr-skim"), "--data-dir", "/somewhere/data"]) == 0
    out = capsys.readouterr().out
    assert "export SKIMSERVE_DATA=/somewhere/data" in out and "--data-dir" not in out


@pytest.mark.parametrize("name", ["sst2-skim", "imdb-skim", "mr-lstm"])
def test_every_runnable_command_parses_with_its_real_cli(name, monkeypatch):
    pytest.importorskip("torch")

    class Parsed(Exception):
        pass

    def parse_only(self, args=None, namespace=None):
        ns = original(self, args, namespace)
        raise Parsed(ns)

    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    for step in reproduce.build(MODELS / name, Path(WORK)).steps:
        assert step.argv[:2] == ["python", "-m"]
        module = importlib.import_module(step.argv[2])
        with pytest.raises(Parsed):
            module.main(step.argv[3:])


def test_run_executes_in_order_skips_finished_steps_and_stops_at_a_failure(tmp_path):
    made = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    chain = reproduce.Chain("toy", [
        reproduce.Step(p.name, "test", ["python", "-c", f"import pathlib; pathlib.Path({str(p)!r}).mkdir()"], p)
        for p in made])
    calls = []

    def runner(argv, env):
        calls.append(argv)
        assert argv[0] == sys.executable
        import subprocess
        return subprocess.call(argv, env=env)

    assert reproduce.run(chain, runner=runner) == 0
    assert len(calls) == 3 and all(p.is_dir() for p in made)
    calls.clear()
    assert reproduce.run(chain, runner=runner) == 0
    assert calls == []  # every output exists: nothing reruns
    made[1].rmdir()
    assert reproduce.run(chain, runner=runner) == 1  # b reruns, then c (its input is new) fails: c exists
    assert len(calls) == 2
    chain.steps.append(reproduce.Step("never", "test", ["python", "-c", "raise SystemExit(3)"], tmp_path / "d"))
    calls.clear()
    assert reproduce.run(chain, force=True, runner=runner) == 1
    assert len(calls) == 1  # stops at the first failure (a's mkdir: a exists)


def test_a_start_that_is_not_the_recorded_base_is_refused(tmp_path):
    """A run whose --init-from is not its recorded base (an AntMan student continued from another student,
    whose training.base is the model it shares the embedding with) gets a clear error, not a wrong chain."""
    base = {"name": "toy-lstm", "command": "python -m training.train --name toy-run --family lstm --out-dir /tmp/x"}
    manifest = {"name": "toy-10x", "training": {
        "command": "python -m training.train_antman --name toy-10x --init-from /tmp/r/other-student --out-dir /tmp/r",
        "base": base}}
    (tmp_path / "toy-10x").mkdir()
    (tmp_path / "toy-10x" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(reproduce.ReproduceError, match="not the base its manifest records"):
        reproduce.build(tmp_path / "toy-10x")
    manifest["training"]["command"] = manifest["training"]["command"].replace("other-student", "toy-run")
    (tmp_path / "toy-10x" / "manifest.json").write_text(json.dumps(manifest))
    argv = reproduce.build(tmp_path / "toy-10x").steps[1].argv      # its base's run: the chain holds
    assert argv[argv.index("--init-from") + 1] == str(Path(WORK) / "toy-run")
