"""benchmarks/antman_accuracy.py against a real server over random AntMan artifacts: the accuracy, skim
rate and FLOPs it reads from the responses equal the engine's own on the same texts, and the students'
targets are judged against their teacher."""
import json

import numpy as np
import pytest

from benchmarks import antman_accuracy as A
from random_model import DEFAULT_WORDS, make_random_classifier
from service.artifacts import load_artifact
from service.families import build_model

COMP = {"W_ih": {"module": "lgp-shuffle", "groups": 4}, "W_hh": {"module": "lgp-shuffle", "groups": 10}}


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    toy = {"dataset": "toyds"}
    make_random_classifier(root / "t", e=20, d=40, d_small=0, seed=1, name="toy-lstm-d400", training=toy)
    for i, (name, ds) in enumerate((("toy-antman-2x", 0), ("toy-antman-10x", 0), ("toy-antman-skim", 8))):
        make_random_classifier(root / name, e=20, d=40, d_small=ds, seed=2 + i, compression=COMP, name=name,
                               training=toy)
    make_random_classifier(root / "s", e=20, d=40, d_small=8, seed=9, name="toy-skim", training=toy)
    for name in ("toy-antman-2x", "toy-antman-10x", "toy-antman-skim"):   # make them name their teacher
        p = root / name / "manifest.json"
        m = json.loads(p.read_text())
        m["teacher"] = "toy-lstm-d400"
        p.write_text(json.dumps(m, indent=2))
    from service.artifacts import refresh_checksums

    for name in ("toy-antman-2x", "toy-antman-10x", "toy-antman-skim"):
        refresh_checksums(root / name)
    return root


def random_examples(seed: int, n: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(DEFAULT_WORDS, rng.integers(3, 30))), int(rng.integers(0, 2))) for _ in range(n)]


def test_accuracy_through_the_server(models, tmp_path, monkeypatch):
    examples = random_examples(0, 70)
    monkeypatch.setattr(A, "load_split", lambda dataset, split, limit: examples[:limit])
    out = tmp_path / "out"
    assert A.main(["--models-dir", str(models), "--out", str(out)]) == 0
    result = json.loads((out / "antman_accuracy.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert {r: rows[r]["role"] for r in rows} == {"toy-antman-10x": "antman", "toy-antman-2x": "antman",
                                                  "toy-antman-skim": "antman", "toy-lstm-d400": "teacher",
                                                  "toy-skim": "skim"}
    for name, row in rows.items():   # what the server said equals the engine on the same texts
        model = build_model(load_artifact(models / next(p.name for p in models.iterdir()
                                                         if json.loads((p / "manifest.json").read_text())["name"] == name)),
                            "reference")
        correct = tokens = skimmed = 0
        for text, y in examples:
            r = model.classify(text)
            correct += int(r.label_index == y)
            tokens += r.cost.tokens
            skimmed += r.cost.skimmed
        assert row["examples"] == 70 and row["accuracy"] == correct / 70
        assert row["tokens"] == tokens and row["skim_rate"] == pytest.approx(skimmed / tokens)
    for name in ("toy-antman-2x", "toy-antman-10x"):
        gap = 100 * (rows[name]["accuracy"] - rows["toy-lstm-d400"]["accuracy"])
        assert rows[name]["points_vs_teacher"] == pytest.approx(gap)
        assert rows[name]["met"] == (gap >= -(1.0 if name.endswith("2x") else 2.0))
    assert "target" not in rows["toy-antman-skim"] and "points_vs_teacher" in rows["toy-antman-skim"]
    assert rows["toy-antman-2x"]["flop_reduction"] > 3   # g=4 / g=10 modules against the dense teacher
    md = (out / "antman_accuracy.md").read_text()
    assert "| toyds | toy-antman-2x | antman |" in md


def test_update_measures_only_the_named_models(models, tmp_path, monkeypatch):
    """--update: the named models are measured again, every other row is the committed run's, and the
    comparisons against the teacher are recomputed from the rows."""
    examples = random_examples(1, 40)
    monkeypatch.setattr(A, "load_split", lambda dataset, split, limit: examples[:limit])
    out = tmp_path / "out"
    assert A.main(["--models-dir", str(models), "--out", str(out)]) == 0
    first = {r["model"]: r for r in json.loads((out / "antman_accuracy.json").read_text())["rows"]}
    doctored = json.loads((out / "antman_accuracy.json").read_text())
    for r in doctored["rows"]:            # mark the carried rows, so that a re-measurement would show
        if r["model"] == "toy-lstm-d400":
            r["accuracy"] = 0.0
    (out / "antman_accuracy.json").write_text(json.dumps(doctored))
    assert A.main(["--models-dir", str(models), "--out", str(out), "--update", "toy-antman-10x"]) == 0
    result = json.loads((out / "antman_accuracy.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["toy-lstm-d400"]["accuracy"] == 0.0                      # carried over, not measured
    assert rows["toy-antman-10x"]["accuracy"] == first["toy-antman-10x"]["accuracy"]  # measured again
    assert rows["toy-antman-10x"]["points_vs_teacher"] == pytest.approx(100 * rows["toy-antman-10x"]["accuracy"])
    assert "toy-antman-10x" not in result["carried_over"]["models"] and "toy-lstm-d400" in result["carried_over"]["models"]
    with pytest.raises(SystemExit, match="split"):
        A.main(["--models-dir", str(models), "--out", str(out), "--update", "toy-skim", "--limit", "5"])
