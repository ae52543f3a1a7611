"""Publishing picks by dev accuracy (never test), records every candidate, and can let the model
already published compete (--incumbent) without losing its earlier selection record."""
from service.artifacts import load_artifact
from random_model import make_random_classifier
from training import publish


def run(tmp_path, name, dev_acc, dev_skim=0.6, seed=0):
    folder = tmp_path / "runs" / name
    make_random_classifier(folder, d_small=4, seed=seed, name=name,
                           training={"dev_accuracy": dev_acc, "dev_skim_rate": dev_skim, "command": f"train {name}"})
    return str(folder)


def published(tmp_path):
    art = load_artifact(tmp_path / "models" / "m")  # re-signed: loads
    return art.manifest["selection"]


def test_best_dev_accuracy_above_the_skim_floor_is_published(tmp_path):
    runs = [run(tmp_path, "a", 0.80), run(tmp_path, "b", 0.85, 0.40, 1), run(tmp_path, "c", 0.83, 0.55, 2)]
    publish.main(["--name", "m", "--out-dir", str(tmp_path / "models"), "--min-dev-skim", "0.5", *runs])
    sel = published(tmp_path)
    assert sel["chosen"] == "c"  # b is more accurate but skims under the floor
    assert [c["variant"] for c in sel["candidates"]] == ["a", "b", "c"]
    assert "earlier" not in sel


def test_incumbent_competes_and_keeps_its_record(tmp_path):
    models = str(tmp_path / "models")
    publish.main(["--name", "m", "--out-dir", models, run(tmp_path, "old", 0.84), run(tmp_path, "older", 0.80, seed=3)])
    # a worse and an exactly tied newcomer: the incumbent stays
    publish.main(["--name", "m", "--out-dir", models, "--incumbent", run(tmp_path, "tie", 0.84, seed=4),
                  run(tmp_path, "worse", 0.82, seed=5)])
    sel = published(tmp_path)
    assert sel["chosen"] == "old"
    assert [c["variant"] for c in sel["candidates"]] == ["old", "tie", "worse"]
    assert sel["earlier"]["chosen"] == "old" and len(sel["earlier"]["candidates"]) == 2
    # a better newcomer replaces it; the record of the round before is kept
    publish.main(["--name", "m", "--out-dir", models, "--incumbent", run(tmp_path, "new", 0.86, seed=6)])
    sel = published(tmp_path)
    assert sel["chosen"] == "new" and [c["variant"] for c in sel["candidates"]] == ["old", "new"]
    assert [c["variant"] for c in sel["earlier"]["candidates"]] == ["old", "tie", "worse"]
    assert load_artifact(tmp_path / "models" / "m").manifest["training"]["command"] == "train new"
