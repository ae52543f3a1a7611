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


def test_holds_needs_the_p99_and_no_refusal():
    ok = {"answered": 10, "p99_ms": 19.0, "share_503": 0.0, "other_5xx": 0, "failed_other": 0}
    assert overload.holds(ok, 20)
    assert not overload.holds({**ok, "p99_ms": 21.0}, 20)
    assert not overload.holds({**ok, "share_503": 0.001}, 20)
    assert not overload.holds({**ok, "failed_other": 1}, 20) and not overload.holds({**ok, "answered": 0}, 20)


def test_short_run_of_both_modes(tmp_path):
    """The whole script with the open-loop driver, seconds long: throughput, the capacity search, a driver
    check when Locust is there, both modes at 1x, the report and its plots (and --report-only rebuilds it)."""
    require_dataset("imdb", "test")
    require_dataset("sst2", "test")
    out = tmp_path / "overload"
    check = ["--driver-check", "0.2"] if importlib.util.find_spec("locust") is not None else []
    assert overload.main(["--factors", "1", "--run-time", "3", "--capacity-time", "2", "--warmup", "1",
                          "--search", "0.2,0.3", "--search-time", "2", "--capacity-users", "4",
                          "--server-cpus", "", "--client-cpus", "", "--out", str(out), *check]) == 0
    rec = json.loads((out / "overload.json").read_text())
    sat = rec["saturation"]
    assert sat["default"]["rate"] > 0 and sat["floor"]["rate"] > 0
    assert set(sat["floor"]["thresholds"]) <= {"long 0.1", "short 0.1"}  # sent explicitly
    assert [s["fraction"] for s in rec["search"]][:1] == [0.2]
    held = [s["target_rate"] for s in rec["search"] if s["holds"]]
    assert rec["capacity"]["rate"] == (held[-1] if held else rec["search"][0]["target_rate"])
    assert [(r["factor"], r["mode"]) for r in rec["runs"]] == [(1.0, "off"), (1.0, "on")]
    off, on = rec["runs"]
    assert off["share_load"] == 0 and set(off["thresholds"]) <= {"long 0.5", "short 0.5"}
    assert off["other_5xx"] == 0 and on["other_5xx"] == 0 and on["answered"] > 0
    assert off["driver_lag_p99_ms"] is not None
    assert all(k.split()[1] in {"0.5", "0.4", "0.3", "0.2", "0.1"} for k in on["thresholds"])
    if check:
        assert [c["driver"] for c in rec["driver_check"]] == ["locust", "openloop"]
        assert all(c["answered"] > 0 for c in rec["driver_check"])
    report = (out / "REPORT.md").read_text()
    assert "| 1x | off |" in report and "| 1x | on |" in report and "Capacity search" in report
    assert (out / "latency_vs_load.png").stat().st_size > 0 and (out / "thresholds_over_time.png").exists()
    (out / "REPORT.md").unlink()
    assert overload.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "REPORT.md").read_text() == report
