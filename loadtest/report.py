"""Turn headless Locust runs (loadtest/results/<run>/) into a markdown table and PNG plots.

  python loadtest/report.py                       # every run under loadtest/results/
  python loadtest/report.py RUN_DIR ... --out DIR --title "CPU vs GPU"

Reads each run's locust_stats.csv (client-side request latency and throughput, per task and threshold:
see below), locust_skim.csv (server-reported skim rate, FLOP
reduction and model per-token latency; for /qa runs also the skim rate per layer/direction) and meta.json
(label, users, hardware). Request names are "/classify <task> t=<thr>" and "/qa qa t=<thr>". Writes into --out:
  REPORT.md                 one table row per run x task x threshold, plus the hardware of each run; with
                            /qa runs, a "Question answering: skim rate per layer" table (tokens there are
                            layer-steps: context tokens x 4)
  latency_vs_threshold.png  request latency p50/p95/p99 vs threshold, one line per run
  throughput_vs_threshold.png
  per_token_vs_threshold.png  server-side model time per token (p50) vs threshold
  skim_vs_noskim.png        request p50 and per-token p50: skim (each threshold) vs no skim
                            (threshold 1.0 or a dense LSTM), per run
Safe to import (Locust imports every .py file under loadtest/); matplotlib is imported lazily.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME_RE = re.compile(r"^/(?P<endpoint>\w+) (?P<task>\w+) t=(?P<thr>[0-9.eE+-]+)$")


@dataclass
class Row:
    run: str
    label: str
    users: int
    task: str
    threshold: float
    model: str = ""
    kernel: str = ""
    requests: int = 0
    failures: int = 0
    rps: float = math.nan
    avg: float = math.nan
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    skim_rate: float = math.nan
    flop_reduction: float = math.nan
    tokens: float = math.nan
    tok_p50: float = math.nan
    tok_p95: float = math.nan
    model_ms_p50: float = math.nan
    layers: dict = field(default_factory=dict)  # /qa: {layer: mean skim rate}
    extra: dict = field(default_factory=dict)

    @property
    def rps_equiv(self) -> float:
        """Closed-loop throughput this threshold alone would give: users / mean latency (Little's law).
        Each user cycles through the thresholds, so Locust's own req/s per name is only a share."""
        return self.users * 1000.0 / self.avg if self.avg and self.users else math.nan

    @property
    def series(self) -> str:
        return f"{self.label} u={self.users} {self.model}"


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _kernels(meta: dict) -> dict[str, str]:
    models = meta.get("server_models")
    if isinstance(models, dict):
        models = models.get("models", models)
    out = {}
    if isinstance(models, list):
        for m in models:
            if isinstance(m, dict) and "name" in m:
                out[m["name"]] = str(m.get("kernel", ""))
    return out


def load_run(run_dir: Path) -> tuple[dict, list[Row]]:
    meta = json.loads((run_dir / "meta.json").read_text()) if (run_dir / "meta.json").exists() else {}
    label = meta.get("label") or run_dir.name
    users = int(meta.get("users", 0))
    kernels = _kernels(meta)
    skim = {}
    if (run_dir / "locust_skim.csv").exists():
        with open(run_dir / "locust_skim.csv") as f:
            for r in csv.DictReader(f):
                skim[(r["task"], round(_f(r["threshold"]), 6))] = r
    rows = []
    with open(run_dir / "locust_stats.csv") as f:
        for r in csv.DictReader(f):
            m = NAME_RE.match(r.get("Name", ""))
            if not m:
                continue
            thr = round(_f(m["thr"]), 6)
            s = skim.get((m["task"], thr), {})
            model = s.get("model") or meta.get(f"{m['task']}_model") or meta.get("model") or ""
            rows.append(Row(
                run=run_dir.name, label=label, users=users, task=m["task"], threshold=thr, model=model,
                kernel=kernels.get(model, ""), requests=int(_f(r["Request Count"])),
                failures=int(_f(r["Failure Count"])), rps=_f(r["Requests/s"]), avg=_f(r["Average Response Time"]), p50=_f(r["50%"]),
                p95=_f(r["95%"]), p99=_f(r["99%"]), skim_rate=_f(s.get("skim_rate_mean")),
                flop_reduction=_f(s.get("flop_reduction_mean")), tokens=_f(s.get("tokens_mean")),
                tok_p50=_f(s.get("per_token_us_p50")), tok_p95=_f(s.get("per_token_us_p95")),
                model_ms_p50=_f(s.get("model_ms_p50")), layers=parse_layers(s.get("layer_skim_rates"))))
    return meta, rows


def parse_layers(text: str | None) -> dict[str, float]:
    """'l0.fw=0.41 l0.bw=0.4 ...' (locust_skim.csv's layer_skim_rates) -> {layer: rate}."""
    out = {}
    for part in (text or "").split():
        name, _, val = part.partition("=")
        if name and val:
            out[name] = _f(val)
    return out


def qa_layers_markdown(rows: list[Row]) -> list[str]:
    """Per-layer skim rates of the /qa runs (empty when there are none): does the second layer skim more?"""
    qa = [r for r in rows if r.layers]
    if not qa:
        return []
    names = sorted({n for r in qa for n in r.layers})
    out = ["## Question answering: skim rate per layer", "",
           "Server-reported mean skim rate of each layer/direction (l0 = first layer, l1 = second; fw/bw = "
           "direction) per /qa run and threshold; `tokens` in the results table are layer-steps.", "",
           "| label | users | model | threshold | " + " | ".join(names) + " | l1 - l0 |",
           "|---|---|---|---|" + "---|" * (len(names) + 1)]
    for r in sorted(qa, key=lambda r: (r.label, r.users, r.model, -r.threshold)):
        by_depth = {}
        for n, v in r.layers.items():
            by_depth.setdefault(n.split(".")[0], []).append(v)
        diff = (sum(by_depth["l1"]) / len(by_depth["l1"]) - sum(by_depth["l0"]) / len(by_depth["l0"])
                if "l0" in by_depth and "l1" in by_depth else math.nan)
        out.append(f"| {r.label} | {r.users} | {r.model} | {r.threshold:g} | "
                   + " | ".join(fmt(r.layers.get(n, math.nan), 2) for n in names) + f" | {fmt(diff, 2)} |")
    return out + [""]


def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for p in map(Path, paths or [str(HERE / "results")]):
        if (p / "locust_stats.csv").exists():
            runs.append(p)
        else:
            runs += sorted(q.parent for q in p.glob("*/locust_stats.csv"))
    return runs


def fmt(v, nd=1):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def markdown(metas: dict[str, dict], rows: list[Row], title: str) -> str:
    out = [f"# {title}", "",
           "Request latency and throughput are client-side (Locust, ms); per-token latency is the server's "
           "model time divided by tokens (µs, from the response body); skim rate and FLOP reduction are "
           "server-reported means. Threshold 1.0 never skims (p_skim > 1 is impossible). Each Locust user "
           "cycles through the thresholds, so 'req/s' is that threshold's share of the run; 'req/s equiv.' = "
           "users / mean latency is the closed-loop throughput the threshold alone would give.", ""]
    out += ["## Runs and hardware", "", "| run | label | users | run time | CPU | GPU | kernels |", "|---|---|---|---|---|---|---|"]
    for name, m in metas.items():
        hw = m.get("hardware", {})
        gpus = "; ".join(hw.get("gpus", [])) or "-"
        ks = ", ".join(f"{k}={v}" for k, v in sorted(_kernels(m).items())) or "-"
        out.append(f"| {name} | {m.get('label', '')} | {m.get('users', '')} | {m.get('run_time_s', '')} s | "
                   f"{hw.get('cpu', '')} ({hw.get('cpus', '?')} cpus) | {gpus} | {ks} |")
    out += ["", "## Results", "",
            "| label | users | task | model | kernel | threshold | skim rate | FLOP red. | tokens | req p50 ms | "
            "req p95 ms | req p99 ms | req/s | req/s equiv. | token p50 µs | token p95 µs | requests | failures |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.task, r.label, r.users, -r.threshold)):
        out.append(f"| {r.label} | {r.users} | {r.task} | {r.model} | {r.kernel} | {r.threshold:g} | "
                   f"{fmt(r.skim_rate, 2)} | {fmt(r.flop_reduction, 2)} | {fmt(r.tokens, 0)} | {fmt(r.p50, 0)} | "
                   f"{fmt(r.p95, 0)} | {fmt(r.p99, 0)} | {fmt(r.rps, 1)} | {fmt(r.rps_equiv, 1)} | {fmt(r.tok_p50, 1)} | "
                   f"{fmt(r.tok_p95, 1)} | {r.requests} | {r.failures} |")
    out += [""] + side_by_side_markdown(rows) + qa_layers_markdown(rows)
    out += ["Plots: latency_vs_threshold.png, throughput_vs_threshold.png, per_token_vs_threshold.png, "
            "skim_vs_noskim.png", ""]
    return "\n".join(out)


def _pick(rows, task, users, label, skim: bool, threshold: float):
    """The row of one side at one load: the skim model at `threshold`, or the dense model (threshold 1.0)."""
    for r in rows:
        if (r.task, r.users, r.label) == (task, users, label) and ("skim" in r.model) == skim \
                and abs(r.threshold - (threshold if skim else 1.0)) < 1e-9:
            return r
    return None


def _winner(cells: dict[str, float], lower_is_better: bool) -> str:
    vals = {k: v for k, v in cells.items() if v == v}  # drop NaN
    if len(vals) < 2:
        return ""
    order = sorted(vals, key=vals.get, reverse=not lower_is_better)
    best, second = order[0], order[1]
    if vals[best] == vals[second]:
        return "tie (" + ", ".join(k for k in order if vals[k] == vals[best]) + ")"
    ratio = vals[second] / vals[best] if lower_is_better else vals[best] / vals[second]
    return f"{best} ({ratio:.2f}x)"


def side_by_side_markdown(rows: list[Row], threshold: float = 0.5) -> list[str]:
    """Each side (label) at each load and text length, the skim model at `threshold` and the dense model,
    with the winner on p50, p99 and throughput and its margin over the runner-up; then each side's best
    configuration against the other sides' best."""
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        return []
    out = ["## Side by side: who wins", "",
           f"Per load (users) and text length: the skim model at threshold {threshold:g} and the dense model on each "
           "side; p50 / p99 in ms, throughput in req/s equiv.; the winner and its margin over the runner-up. "
           "'best' takes each side's better configuration (lower p50) against the others'.", "",
           "| task | users | model | " + " | ".join(f"{lb} p50 / p99 / req/s" for lb in labels)
           + " | p50 winner | p99 winner | req/s winner |",
           "|---|---|---|" + "---|" * len(labels) + "---|---|---|"]
    for task in sorted({r.task for r in rows}):
        for users in sorted({r.users for r in rows if r.task == task}):
            picks = {kind: {lb: _pick(rows, task, users, lb, kind == "skim", threshold) for lb in labels}
                     for kind in ("skim", "dense")}
            picks["best"] = {}
            for lb in labels:
                cands = [picks[k][lb] for k in ("skim", "dense") if picks[k][lb] is not None]
                picks["best"][lb] = min(cands, key=lambda r: r.p50) if cands else None
            for kind, by_label in picks.items():
                if sum(r is not None for r in by_label.values()) < 2:
                    continue
                cells = []
                for lb in labels:
                    r = by_label[lb]
                    tag = "" if kind != "best" or r is None else (" (skim)" if "skim" in r.model else " (dense)")
                    cells.append("-" if r is None else f"{fmt(r.p50, 0)} / {fmt(r.p99, 0)} / {fmt(r.rps_equiv, 0)}{tag}")
                get = lambda attr: {lb: getattr(r, attr) for lb, r in by_label.items() if r is not None}  # noqa: E731
                name = {"skim": f"skim t={threshold:g}", "dense": "dense", "best": "**best**"}[kind]
                out.append(f"| {task} | {users} | {name} | " + " | ".join(cells) + f" | {_winner(get('p50'), True)} | "
                           f"{_winner(get('p99'), True)} | {_winner(get('rps_equiv'), False)} |")
    return out + [""]


def _series(rows, task):
    by = {}
    for r in rows:
        if r.task == task:
            by.setdefault(r.series, []).append(r)
    return {k: sorted(v, key=lambda r: r.threshold) for k, v in sorted(by.items())}


def _line_plot(rows, tasks, path, metrics, ylabel, title, logy=True):
    """One panel per task, or per task x load when the runs have several user counts (a legend stays readable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = sorted({r.users for r in rows})
    cols = loads if len(loads) > 1 else [None]
    fig, axes = plt.subplots(len(tasks), len(cols), figsize=(6.5 * len(cols), 4.8 * len(tasks)), squeeze=False)
    styles = {"p50": "-", "p95": "--", "p99": ":"}
    for ti, task in enumerate(tasks):
        for ci, users in enumerate(cols):
            ax = axes[ti][ci]
            panel = [r for r in rows if users is None or r.users == users]
            for i, (series, rs) in enumerate(_series(panel, task).items()):
                color = plt.cm.tab20(i % 20)
                if users is not None:
                    series = series.replace(f" u={users}", "")
                for attr, name in metrics:
                    xs = [r.threshold for r in rs]
                    ys = [getattr(r, attr) for r in rs]
                    if all(math.isnan(y) for y in ys):
                        continue
                    if len(xs) == 1:
                        ax.axhline(ys[0], color=color, ls=styles.get(name, "-"), alpha=0.7,
                                   label=f"{series} {name} (dense)")
                    else:
                        ax.plot(xs, ys, styles.get(name, "-"), marker="o", ms=3, color=color,
                                label=f"{series} {name}".strip())
            ax.set_title(task if users is None else f"{task}, {users} user{'s' if users > 1 else ''}")
            ax.set_xlabel("threshold (1.0 = no skimming)")
            ax.set_ylabel(ylabel)
            if logy:
                ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _skim_bar(rows, tasks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(6.5 * len(tasks), 8), squeeze=False)
    for j, task in enumerate(tasks):
        for i, (attr, ylabel) in enumerate((("p50", "request p50 (ms)"), ("tok_p50", "per-token p50 (µs)"))):
            ax = axes[i][j]
            labels, vals, colors = [], [], []
            for k, (series, rs) in enumerate(_series(rows, task).items()):
                for r in sorted(rs, key=lambda r: -r.threshold):
                    if "skim" not in r.model:
                        tag = "dense LSTM"
                    elif r.threshold >= 1.0:
                        tag = "skim model, t=1 (no skim)"
                    else:
                        tag = f"skim t={r.threshold:g} ({fmt(100 * r.skim_rate, 0)}%)"
                    labels.append(f"{r.label} u={r.users}\n{tag}")
                    vals.append(getattr(r, attr))
                    colors.append(f"C{k % 10}")
            bars = ax.bar(range(len(vals)), vals, color=colors)
            ax.bar_label(bars, labels=[fmt(v, 1) for v in vals], fontsize=6)
            ax.set_xticks(range(len(vals)), labels, rotation=75, fontsize=6)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{task}: {ylabel}")
            ax.grid(alpha=0.3, axis="y", which="both")
    fig.suptitle("skim vs no skim")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run dirs or folders of run dirs (default loadtest/results)")
    ap.add_argument("--out", default=None, help="output folder (default: the first folder given, or results/)")
    ap.add_argument("--title", default="skimserve load test report")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    runs = find_runs(args.runs)
    if not runs:
        print("no runs found (expected */locust_stats.csv)", file=sys.stderr)
        return 1
    metas, rows = {}, []
    for run in runs:
        meta, rs = load_run(run)
        metas[run.name] = meta
        rows += rs
    out = Path(args.out) if args.out else (Path(args.runs[0]) if args.runs and not (Path(args.runs[0]) / "locust_stats.csv").exists() else HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(markdown(metas, rows, args.title))
    if not args.no_plots and rows:
        tasks = sorted({r.task for r in rows})
        _line_plot(rows, tasks, out / "latency_vs_threshold.png", [("p50", "p50"), ("p95", "p95"), ("p99", "p99")],
                   "request latency (ms)", "request latency vs threshold")
        _line_plot(rows, tasks, out / "throughput_vs_threshold.png", [("rps_equiv", "")], "requests/s (users / mean latency)",
                   "throughput vs threshold")
        _line_plot(rows, tasks, out / "per_token_vs_threshold.png", [("tok_p50", "p50"), ("tok_p95", "p95")],
                   "model time per token (µs)", "per-token latency vs threshold")
        _skim_bar(rows, tasks, out / "skim_vs_noskim.png")
    print(f"wrote {out / 'REPORT.md'} ({len(rows)} rows from {len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
