"""Load-test scripts: Locust discovers the users in loadtest/, a short headless run against a real local
server with tiny random models writes Locust's CSVs, and the report turns them into a table and plots."""
import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
# Check for locust without importing it: importing locust runs gevent's monkey.patch_all() in the pytest
# process, which breaks every later in-process test that uses real threads (e.g. FastAPI's TestClient).
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust not installed", allow_module_level=True)

import report  # noqa: E402
import run_headless  # noqa: E402
from _server import running_server  # noqa: E402


@pytest.mark.parametrize("host", ["http://10.0.0.5:8000", "http://example.com", "http://0.0.0.0:8000",
                                  "ftp://127.0.0.1"])
def test_runner_refuses_non_loopback(host):
    with pytest.raises(SystemExit, match="refusing"):
        run_headless.loopback_only(host)


@pytest.mark.parametrize("host", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80", "127.0.0.2:9"])
def test_runner_accepts_loopback(host):
    assert run_headless.loopback_only(host).startswith("http")


def test_runner_bounds(tmp_path):
    with pytest.raises(SystemExit, match="users"):
        run_headless.main(["--name", "x", "--users", "1000", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="run-time"):
        run_headless.main(["--name", "x", "--run-time", "2h", "--results-dir", str(tmp_path)])
    assert run_headless.seconds("1m30s") == 90 and run_headless.seconds("45") == 45


def test_locust_discovers_users_in_directory():
    r = subprocess.run([sys.executable, "-m", "locust", "-f", "loadtest/", "--list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ShortTextUser" in r.stdout and "LongTextUser" in r.stdout
    assert "QAUser" not in r.stdout  # only with SKIMSERVE_TASKS=...qa


def test_texts_come_from_test_splits_or_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")  # import for load_texts only; no gevent patching here
    import locustfile

    short, long_ = locustfile.load_texts("short", 50), locustfile.load_texts("long", 20)
    assert short and long_
    assert sum(len(t.split()) for t in long_) / len(long_) > 3 * sum(len(t.split()) for t in short) / len(short)
    monkeypatch.setenv("SKIMSERVE_DATA", str(tmp_path / "missing"))
    assert locustfile.load_texts("short") == locustfile.FALLBACK_SHORT


def test_headless_run_against_real_server_and_report(random_models_dir, tmp_path):
    results = tmp_path / "results"
    with running_server(random_models_dir, log=tmp_path / "server.log") as url:
        rc = run_headless.main(["--host", url, "--name", "smoke", "--users", "2", "--spawn-rate", "2",
                                "--run-time", "4s", "--tasks", "short,long", "--thresholds", "1.0,0.3",
                                "--model", "tiny-skim", "--texts", "50", "--results-dir", str(results),
                                "--label", "test"])
    assert rc == 0
    run = results / "smoke"
    for f in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust_skim.csv", "meta.json"):
        assert (run / f).exists(), f
    with open(run / "locust_stats.csv") as f:
        stats = {r["Name"]: r for r in csv.DictReader(f)}
    for name in ("/classify short t=1", "/classify short t=0.3", "/classify long t=1", "/classify long t=0.3"):
        assert int(stats[name]["Request Count"]) > 0, name
        assert int(stats[name]["Failure Count"]) == 0, name
    with open(run / "locust_skim.csv") as f:
        skim = {(r["task"], float(r["threshold"])): r for r in csv.DictReader(f)}
    assert float(skim[("short", 1.0)]["skim_rate_mean"]) == 0.0

    assert report.main([str(results), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| test | 2 | short | tiny-skim |" in md
    for png in ("latency_vs_threshold.png", "throughput_vs_threshold.png", "per_token_vs_threshold.png",
                "skim_vs_noskim.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000, png


def test_committed_cpu_vs_gpu_report_is_what_report_writes_from_the_committed_runs(tmp_path):
    """loadtest/results/cpu-vs-gpu keeps only what report.py reads (locust_stats.csv, locust_skim.csv,
    meta.json per run): REPORT.md must come out of them unchanged, so a run folder pruned too far fails here."""
    committed = ROOT / "loadtest" / "results" / "cpu-vs-gpu"
    report_md = (committed / "REPORT.md").read_text(encoding="utf-8")
    title = report_md.splitlines()[0].removeprefix("# ")
    assert report.main([str(committed), "--out", str(tmp_path), "--title", title, "--no-plots"]) == 0
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == report_md
    assert len(report.find_runs([str(committed)])) == 12
