"""training/calibrate_qa.py: the rule (best dev F1 among thresholds skimming enough; ties to the lower one) and
a run over the shipped reader that agrees with the served answers."""
import pytest

from training import calibrate_qa


def test_rule_takes_the_best_f1_that_skims_enough():
    rows = [{"threshold": 0.3, "f1": 30.0, "skim_rate": 0.6}, {"threshold": 0.4, "f1": 35.0, "skim_rate": 0.45},
            {"threshold": 0.5, "f1": 35.0, "skim_rate": 0.41}, {"threshold": 0.6, "f1": 39.0, "skim_rate": 0.2}]
    assert calibrate_qa.choose_threshold(rows, 0.4) == 0.4          # 0.6 skims too little; 0.4/0.5 tie
    assert calibrate_qa.choose_threshold(rows, 0.5) == 0.3
    assert calibrate_qa.choose_threshold(rows, 0.9) is None


def test_sweep_on_the_shipped_reader(tmp_path):
    from training.data import data_dir
    if not (data_dir() / "squad" / "dev.json").is_file():
        pytest.skip("no ../shared/data/squad")
    chosen, record = calibrate_qa.main(["models/squad-skim-lstm-att", "--limit", "12", "--grid", "0.0,0.5,1.0",
                                        "--min-skim", "0.0", "--no-write"])
    rates = [r["skim_rate"] for r in record["sweep"]]
    assert rates[0] == 1.0 and rates[-1] == 0.0 and rates[0] >= rates[1] >= rates[2]   # t=0 skims all, t=1 none
    assert record["examples"] == 12 and chosen in (0.0, 0.5, 1.0)
    assert set(record["sweep"][1]["skim"]) == {"l0.fw", "l0.bw", "l1.fw", "l1.bw"}
