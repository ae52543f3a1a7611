"""training.calibrate_curve: the dev curve and the per-budget thresholds go into the manifest (re-signed:
it still loads) and the card; the server reads them at load; the shipped skim classifiers carry one."""
import json
from pathlib import Path

import pytest

from conftest import require_dataset  # noqa: E402
from random_model import make_random_classifier
from service.artifacts import load_artifact, verify_checksums
from service.calibration import Calibration
from service.families import build_model
from training import calibrate_curve

MODELS = Path(__file__).resolve().parent.parent / "models"
CALIBRATED = ["imdb-skim", "imdb-lstm-skip", "mr-skim", "sst2-skim", "sst2-lstm-skip"]


def test_writes_a_signed_curve_and_budget_table_the_server_reads(tmp_path):
    require_dataset("sst2", "dev")
    folder = tmp_path / "tiny-skim"
    make_random_classifier(folder, d_small=4, seed=5, training={"dataset": "sst2"})
    record, budgets = calibrate_curve.main([str(folder), "--limit", "40", "--test-limit", "40",
                                            "--timing-texts", "5", "--rounds", "1"])
    assert [r["threshold"] for r in record["curve"]] == calibrate_curve.THRESHOLDS
    for r in budgets:
        best = max(r["dev_by_threshold"].values())
        assert r["dev_accuracy"] == best  # the most accurate threshold under the cap, on dev
        assert r["test_max_flop_share"] <= max(r["budget"], record["floor_share"]) + 0.01  # + the head's share
    art = load_artifact(folder)  # re-signed after the card was rewritten: loads without a checksum error
    model = build_model(art, kernel="reference")
    assert model.calibration is not None and model.calibration.budget_rule == "table"
    by_budget = {r["budget"]: r["threshold"] for r in budgets}
    assert model.calibration.threshold_for_budget(0.3) == by_budget[0.3]
    assert model.calibration.threshold_for_budget(0.4) == by_budget[0.3]   # the row below it
    assert model.calibration.threshold_for_budget(0.05) == by_budget[0.1]  # under the first row: the first
    assert model.calibration.threshold_for_budget(1.0) is None             # no cap: the default


def test_plain_lstm_is_refused(tmp_path):
    folder = tmp_path / "tiny-lstm"
    make_random_classifier(folder, d_small=0)
    with pytest.raises(SystemExit, match="nothing to calibrate"):
        calibrate_curve.main([str(folder), "--no-write"])


@pytest.mark.parametrize("name", CALIBRATED)
def test_shipped_skim_classifiers_carry_their_curve(name):
    folder = MODELS / name
    manifest = json.loads((folder / "manifest.json").read_text())
    verify_checksums(folder, manifest)
    cal = Calibration.from_manifest(manifest)
    assert cal is not None and cal.budget_rule == "table"
    assert [r["threshold"] for r in cal.curve] == [round(0.1 * i, 1) for i in range(11)]
    assert [r["budget"] for r in cal.budgets] == [0.1, 0.2, 0.3, 0.5]
    assert manifest["calibration"]["split"] == "dev" and manifest["calibration"]["limit"] is None
    card = json.loads((folder / "card.json").read_text())
    assert [r["budget"] for r in card["calibration"]["budgets"]] == [0.1, 0.2, 0.3, 0.5]
    assert "## Calibrated curve and FLOP budgets" in (folder / "card.md").read_text()
