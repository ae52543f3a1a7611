"""Load-test scripts: Locust discovers the users in loadtest/, a short headless run against a real local
server with tiny random models writes Locust's CSVs, and the report turns them into a table and plots."""
import csv
import importlib.util
import json
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
import run_matrix  # noqa: E402
from _server import running_server  # noqa: E402
from random_model import make_random_classifier, make_random_reader  # noqa: E402

QA_LAYERS = ["l0.bw", "l0.fw", "l1.bw", "l1.fw"]


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


def _locust_list(**env):
    import os

    r = subprocess.run([sys.executable, "-m", "locust", "-f", "loadtest/", "--list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_locust_discovers_users_in_directory(monkeypatch):
    monkeypatch.delenv("SKIMSERVE_TASKS", raising=False)
    out = _locust_list()
    assert "ShortTextUser" in out and "LongTextUser" in out and "QAUser" in out
    out = _locust_list(SKIMSERVE_TASKS="short,long")
    assert "ShortTextUser" in out and "QAUser" not in out
    out = _locust_list(SKIMSERVE_TASKS="qa")
    assert "QAUser" in out and "ShortTextUser" not in out


def test_texts_come_from_test_splits_or_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")  # import for load_texts only; no gevent patching here
    import locustfile

    short, long_ = locustfile.load_texts("short", 50), locustfile.load_texts("long", 20)
    assert short and long_
    assert sum(len(t.split()) for t in long_) / len(long_) > 3 * sum(len(t.split()) for t in short) / len(short)
    monkeypatch.setenv("SKIMSERVE_DATA", str(tmp_path / "missing"))
    assert locustfile.load_texts("short") == locustfile.FALLBACK_SHORT


def test_qa_items_come_from_squad_test_split_or_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")
    import locustfile

    items = locustfile.load_qa(10_000)
    if items == locustfile.FALLBACK_QA:
        pytest.skip("squad/test.json not in the data dir")
    assert len(items) == 1080  # SQuAD v1.1 dev, test split by article
    assert all(set(i) == {"context", "question"} and i["context"].strip() and i["question"].strip() for i in items)
    assert locustfile.load_qa(5) == items[:5]  # seeded sample
    monkeypatch.setenv("SKIMSERVE_DATA", str(tmp_path / "missing"))
    assert locustfile.load_qa() == locustfile.FALLBACK_QA


def test_layer_skim_rates_of_qa_bodies(monkeypatch):
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")
    import locustfile

    one = {"answer": "x", "skim_rate": 0.5, "per_layer": [{"layer": "l0.fw", "skim_rate": 0.25},
                                                          {"layer": "l1.fw", "skim_rate": 0.75}]}
    assert locustfile.layer_skim_rates(one) == {"l0.fw": 0.25, "l1.fw": 0.75}
    assert locustfile.layer_skim_rates({"results": [one]}) == {"l0.fw": 0.25, "l1.fw": 0.75}
    assert locustfile.layer_skim_rates({"label": "positive", "skim_rate": 0.1}) == {}
    assert report.parse_layers("l0.fw=0.25 l1.fw=0.75") == {"l0.fw": 0.25, "l1.fw": 0.75}
    assert report.parse_layers("") == {}


def test_matrix_qa_scenarios_are_opt_in(tmp_path):
    for name, fn, kw in (("tiny-skim", make_random_classifier, {"d_small": 4}),
                         ("tiny-lstm", make_random_classifier, {"d_small": 0}),
                         ("tiny-reader-skim", make_random_reader, {"d_small": 3}),
                         ("tiny-reader", make_random_reader, {"d_small": 0})):
        fn(tmp_path / name, **kw)
    picked = run_matrix.pick_models(tmp_path)
    assert picked["qa_skim"] == "tiny-reader-skim" and picked["qa_dense"] == "tiny-reader"
    assert not any(s["tasks"] == "qa" for s in run_matrix.scenarios(picked, 8))
    qa = {s["name"]: s for s in run_matrix.scenarios(picked, 8, qa=True) if s["tasks"] == "qa"}
    assert set(qa) == {"skim-qa-u1", "skim-qa-u8", "dense-qa-u1", "dense-qa-u8"}
    assert qa["skim-qa-u1"]["qa_model"] == "tiny-reader-skim" and qa["skim-qa-u1"]["thr"] == run_matrix.SKIM_THRESHOLDS
    assert qa["dense-qa-u8"]["qa_model"] == "tiny-reader" and qa["dense-qa-u8"]["thr"] == "1.0"
    script = (ROOT / "loadtest" / "gpu_compare.sh").read_text()
    assert "--qa" in script and "QA:-" in script
    assert subprocess.run(["bash", "-n", str(ROOT / "loadtest" / "gpu_compare.sh")]).returncode == 0


@pytest.fixture(scope="module")
def models_with_reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("models-qa")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_reader(root / "tiny-reader-skim", d_small=3, seed=3)
    return root


def test_headless_qa_run_against_real_server_and_report(models_with_reader, tmp_path):
    results = tmp_path / "results"
    with running_server(models_with_reader, log=tmp_path / "server.log") as url:
        rc = run_headless.main(["--host", url, "--name", "qa-smoke", "--users", "2", "--spawn-rate", "2",
                                "--run-time", "4s", "--tasks", "qa", "--thresholds", "1.0,0.3",
                                "--qa-model", "tiny-reader-skim", "--texts", "50", "--results-dir", str(results),
                                "--label", "test"])
    assert rc == 0
    run = results / "qa-smoke"
    with open(run / "locust_stats.csv") as f:
        stats = {r["Name"]: r for r in csv.DictReader(f)}
    for name in ("/qa qa t=1", "/qa qa t=0.3"):
        assert int(stats[name]["Request Count"]) > 0, name
        assert int(stats[name]["Failure Count"]) == 0, name
    assert not any(n.startswith("/classify") for n in stats)
    with open(run / "locust_skim.csv") as f:
        skim = {(r["task"], float(r["threshold"])): r for r in csv.DictReader(f)}
    assert skim[("qa", 1.0)]["model"] == "tiny-reader-skim"
    assert float(skim[("qa", 1.0)]["skim_rate_mean"]) == 0.0
    layers = report.parse_layers(skim[("qa", 0.3)]["layer_skim_rates"])
    assert sorted(layers) == QA_LAYERS and all(0.0 <= v <= 1.0 for v in layers.values())
    assert set(report.parse_layers(skim[("qa", 1.0)]["layer_skim_rates"]).values()) == {0.0}
    assert json.loads((run / "meta.json").read_text())["qa_model"] == "tiny-reader-skim"

    assert report.main([str(results), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| test | 2 | qa | tiny-reader-skim |" in md
    assert (tmp_path / "report" / "latency_vs_threshold.png").stat().st_size > 1000
    assert "## Question answering: skim rate per layer" in md
    assert "| test | 2 | tiny-reader-skim | 0.3 |" in md


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
    # 3 servers x 12 classification scenarios + 2 servers (cpu, gpu) x 6 QA scenarios
    assert len(report.find_runs([str(committed)])) == 48
    assert "## Side by side: who wins" in report_md
