"""loadtest/overload.py: the summary of a run (latency percentiles, 503 share, other 5xx, load-lowered share,
accuracy measured and expected from the calibrated curve) and a short real run of both modes with Locust's
OverloadUser against the shipped models."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import require_dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from loadtest import overload  # noqa: E402  (imports no locust: it runs Locust as a subprocess)

CURVE = {0.0: 0.6, 0.1: 0.8, 0.5: 0.9, 1.0: 0.9}


def test_expected_accuracy_interpolates_the_curve():
    assert overload.expected_accuracy(CURVE, 0.5) == 0.9
    assert overload.expected_accuracy(CURVE, 0.3) == pytest.approx(0.85)
    assert overload.expected_accuracy(CURVE, 0.05) == pytest.approx(0.7)


def row(t, status, latency, thr="", source="", texts=4, correct=""):
    return {"t": str(t), "kind": "long", "model": "m", "status": str(status), "latency_ms": str(latency),
            "threshold": str(thr), "source": source, "texts": str(texts), "correct": str(correct)}


def test_summary_counts_what_the_report_states():
    rows = [row(0.0, 200, 999, 0.5, "default", correct=4)]  # inside the warm-up: dropped
    rows += [row(1 + i / 100, 200, 5 + i, 0.1, "load", correct=3) for i in range(90)]
    rows += [row(2.0, 200, 8, 0.5, "default", correct=4) for _ in range(10)]
    rows += [row(2.5, 503, 1), row(2.6, 500, 1), row(2.7, 0, 1)]
    s = overload.summarise(rows, seconds=11, warmup=1, curves={"long": CURVE}, defaults={"long": 0.5})
    assert s["answered"] == 100 and s["requests"] == 103
    assert s["share_503"] == pytest.approx(1 / 103) and s["other_5xx"] == 1 and s["failed_other"] == 1
    assert s["share_load"] == pytest.approx(0.9)
    assert s["accuracy"] == pytest.approx((90 * 3 + 10 * 4) / 400)
    assert s["expected_accuracy"] == pytest.approx(0.9 * 0.8 + 0.1 * 0.9)
    assert s["expected_accuracy_default"] == pytest.approx(0.9)
    assert s["p99_ms"] == 93 and s["rate"] == pytest.approx(10.0)


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust not installed")
def test_short_run_of_both_modes(tmp_path):
    require_dataset("imdb", "test")
    require_dataset("sst2", "test")
    out = tmp_path / "overload"
    assert overload.main(["--factors", "1", "--run-time", "4", "--capacity-time", "3", "--warmup", "1",
                          "--capacity-users", "4", "--user-rate", "5", "--server-cpus", "", "--locust-cpus", "",
                          "--out", str(out)]) == 0
    rec = json.loads((out / "overload.json").read_text())
    assert rec["capacity"]["default"]["rate"] > 0 and rec["capacity"]["floor"]["rate"] > 0
    assert set(rec["capacity"]["floor"]["thresholds"]) <= {"long 0.1", "short 0.1"}  # sent explicitly
    assert [(r["factor"], r["mode"]) for r in rec["runs"]] == [(1.0, "off"), (1.0, "on")]
    off, on = rec["runs"]
    assert off["share_load"] == 0 and set(off["thresholds"]) <= {"long 0.5", "short 0.5"}
    assert off["other_5xx"] == 0 and on["other_5xx"] == 0 and on["answered"] > 0
    assert all(k.split()[1] in {"0.5", "0.4", "0.3", "0.2", "0.1"} for k in on["thresholds"])
    report = (out / "REPORT.md").read_text()
    assert "| 1x | off |" in report and "| 1x | on |" in report
    assert (out / "latency_vs_load.png").stat().st_size > 0 and (out / "thresholds_over_time.png").exists()
