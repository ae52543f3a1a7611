"""The default threshold is chosen on dev by a fixed rule, written into the manifest and served."""
import pytest

from conftest import require_dataset  # noqa: E402
from service.artifacts import load_artifact
from service.families import build_model
from random_model import make_random_classifier
from training import calibrate


def rows(*triples):
    return [{"threshold": t, "accuracy": a, "skim_rate": s} for t, a, s in triples]


def test_best_dev_accuracy_above_the_skim_floor():
    sweep = rows((0.4, 0.84, 0.78), (0.5, 0.85, 0.71), (0.6, 0.86, 0.64), (0.7, 0.87, 0.45))
    assert calibrate.choose_threshold(sweep, 0.5) == 0.6  # 0.7 is more accurate but skims under the floor
    assert calibrate.choose_threshold(sweep, 0.7) == 0.5
    assert calibrate.choose_threshold(sweep, 0.0) == 0.7


def test_ties_keep_the_trained_argmax_then_the_lower_threshold():
    assert calibrate.choose_threshold(rows((0.4, 0.85, 0.8), (0.5, 0.85, 0.7), (0.6, 0.85, 0.6)), 0.5) == 0.5
    assert calibrate.choose_threshold(rows((0.3, 0.85, 0.9), (0.4, 0.85, 0.8), (0.5, 0.80, 0.7)), 0.5) == 0.3


def test_no_threshold_reaches_the_floor_keeps_the_argmax():
    assert calibrate.choose_threshold(rows((0.0, 0.9, 0.4), (0.5, 0.9, 0.2)), 0.5) == 0.5


def test_calibrate_writes_a_signed_default_that_the_model_serves(tmp_path):
    require_dataset("sst2", "dev")
    folder = tmp_path / "tiny-skim"
    make_random_classifier(folder, d_small=4, seed=5, training={"dataset": "sst2"})

    chosen, record = calibrate.main([str(folder), "--limit", "60", "--min-skim", "0.0"])
    sweep = record["sweep"]
    assert [r["threshold"] for r in sweep] == calibrate.THRESHOLDS and record["split"] == "dev"
    best = max(r["accuracy"] for r in sweep)
    assert next(r for r in sweep if r["threshold"] == chosen)["accuracy"] == best
    art = load_artifact(folder)  # re-signed: loads without a checksum error
    assert art.manifest["default_threshold"] == chosen
    assert art.manifest["default_threshold_selection"]["examples"] == 60
    assert build_model(art, kernel="reference").default_threshold == chosen


def test_plain_lstm_is_refused(tmp_path):
    folder = tmp_path / "tiny-lstm"
    make_random_classifier(folder, d_small=0)
    with pytest.raises(SystemExit, match="never skims"):
        calibrate.main([str(folder), "--no-write"])
