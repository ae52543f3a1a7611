"""Generate the Grafana dashboard JSON under dashboards/grafana/dashboards/ (the committed JSON is the
product; this script is how it is kept consistent). Run: python dashboards/build.py

Every panel queries the provisioned Prometheus datasource by its fixed uid (DS_UID) and only the
metric names fixed in service/metrics.py. Grafana variables used: $model (regex, All = .*),
$instance (regex, All = .*), $__rate_interval.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "grafana" / "dashboards"
DS_UID = "skimserve-prometheus"
DS = {"type": "prometheus", "uid": DS_UID}
RI = "$__rate_interval"
SEL = 'model=~"$model", instance=~"$instance"'
INST = 'instance=~"$instance"'


class Layout:
    def __init__(self):
        self.panels, self.y, self.x, self.row_h, self.next_id = [], 0, 0, 0, 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append({"id": self._id(), "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0

    def add(self, panel, w=12, h=8):
        if self.x + w > 24:
            self._newline()
        panel = {"id": self._id(), "datasource": DS, **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(expr, legend="", ref="A", **extra):
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend, "range": not extra.get("instant"),
            **extra}


def timeseries(title, targets, unit="short", description="", stack=False, min_=None, max_=None):
    defaults = {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if stack else 0,
                                         "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                                         "showPoints": "never", "spanNulls": True}}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {"type": "timeseries", "title": title, "description": description,
            "targets": [target(*t) if isinstance(t, tuple) else t for t in _refs(targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def heatmap(title, expr, unit="short", description=""):
    return {"type": "heatmap", "title": title, "description": description,
            "targets": [target(expr, "{{le}}", format="heatmap")],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"calculate": False, "yAxis": {"unit": unit}, "cellGap": 1,
                        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                        "tooltip": {"show": True, "yHistogram": True}}}


def stat(title, expr, unit="short", description="", decimals=2):
    return {"type": "stat", "title": title, "description": description,
            "targets": [target(expr, "{{model}}")],
            "fieldConfig": {"defaults": {"unit": unit, "decimals": decimals}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "value_and_name"}}


def table(title, targets, description="", units=None):
    tg = []
    for i, (expr, name) in enumerate(targets):
        tg.append(target(expr, name, ref=chr(65 + i), instant=True, format="table"))
    overrides = [{"matcher": {"id": "byName", "options": f"Value #{chr(65 + i)}"},
                  "properties": [{"id": "displayName", "value": name}]
                  + ([{"id": "unit", "value": units[i]}] if units and units[i] else [])}
                 for i, (_, name) in enumerate(targets)]
    return {"type": "table", "title": title, "description": description, "targets": tg,
            "fieldConfig": {"defaults": {"decimals": 3}, "overrides": overrides},
            "transformations": [{"id": "merge", "options": {}},
                                {"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            "options": {"showHeader": True, "sortBy": [{"displayName": "model", "desc": False}]}}


def _refs(targets):
    out = []
    for i, t in enumerate(targets):
        expr, legend = t
        out.append(target(expr, legend, ref=chr(65 + i)))
    return out


def q(p, metric, by, sel=SEL):
    return f'histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{{{sel}}}[{RI}])))'


def mean(metric, by="model", sel=SEL):
    return (f"sum by ({by}) (rate({metric}_sum{{{sel}}}[{RI}])) / "
            f"sum by ({by}) (rate({metric}_count{{{sel}}}[{RI}]))")


REQ = "skimserve_request_duration_seconds"
TOK = "skimserve_token_latency_seconds"


def variables():
    def var(name, query, label):
        return {"name": name, "label": label, "type": "query", "datasource": DS,
                "definition": query, "query": {"query": query, "refId": "StandardVariableQuery"},
                "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "regex": ""}
    return [{"name": "datasource", "type": "datasource", "query": "prometheus", "hide": 2,
             "current": {"text": "Prometheus", "value": DS_UID}},
            var("model", "label_values(skimserve_tokens_total, model)", "Model"),
            var("instance", "label_values(skimserve_inflight_requests, instance)", "Server")]


LAYER = "skimserve_layer_tokens_total"
QA_ONLY = f'max by (model) (skimserve_model_info{{task="qa", {SEL}}})'  # `and on (model) ...`: QA models only
QA_REQ = f'endpoint="/qa", {SEL}'


def qa_rows(L: Layout) -> None:
    """The "Question answering" row: POST /qa and the per-layer series of multi-layer (QA) models.
    Layers are named l<depth>.<fw|bw> (l0.fw, l0.bw, l1.fw, l1.bw); both directions of a layer share its threshold."""
    L.row("Question answering")
    L.add(timeseries("QA per-layer skim rate by layer", [
        (f'sum by (layer) (rate({LAYER}{{decision="skim", {SEL}}}[{RI}])) / '
         f'clamp_min(sum by (layer) (rate({LAYER}{{{SEL}}}[{RI}])), 1e-9)', "{{layer}} (steps)"),
        (mean("skimserve_layer_skim_rate", by="layer"), "{{layer}} (mean per request)")],
        unit="percentunit", min_=0, max_=1,
        description="Share of layer-steps that went through the small cell, per layer and direction (l0 = "
                    "first layer, l1 = second; fw/bw = direction). The paper's finding: higher layers skim more. "
                    "thresholds=a,b skims layer 1 at b."), w=12)
    L.add(timeseries("QA layer-steps read vs skimmed by layer", [
        (f'sum by (layer, decision) (rate({LAYER}{{{SEL}}}[{RI}]))', "{{layer}} {{decision}}")],
        unit="short", stack=True,
        description="Layer-steps per second through the big cell (read) and small cell (skim), by layer and "
                    "direction. One context token is one step in each of the four layer/directions."), w=12)
    L.add(timeseries("/qa request latency p50 / p99", [
        (q(0.5, REQ, "model", sel=QA_REQ), "p50 {{model}}"),
        (q(0.99, REQ, "model", sel=QA_REQ), "p99 {{model}}")], unit="s",
        description="End-to-end POST /qa latency quantiles (request duration histogram, endpoint=\"/qa\")."), w=8)
    L.add(timeseries("QA FLOP reduction by model", [
        (f'({mean("skimserve_flop_reduction")}) and on (model) {QA_ONLY}', "{{model}} mean"),
        (f'({q(0.5, "skimserve_flop_reduction", "model")}) and on (model) {QA_ONLY}', "{{model}} p50")],
        unit="x", description="flops_full / flops per question, QA models only (skimserve_model_info "
                              "task=\"qa\"); the cost counts all four layer/directions plus attention and "
                              "span heads. 1.0 = no savings."), w=8)
    L.add(timeseries("QA per-token latency p50 by model", [
        (f'({q(0.5, TOK, "model")}) and on (model) {QA_ONLY}', "p50 {{model}}")], unit="s",
        description="Model wall time per layer-step of QA models (a context of T tokens is 4T steps)."), w=8)
    L.add(heatmap("QA per-layer skim rate distribution (per request)",
                  f'sum by (le) (increase(skimserve_layer_skim_rate_bucket{{{SEL}}}[{RI}]))',
                  description="Histogram of per-request, per-layer skim rates (all layers)."), w=24)


def overview() -> dict:
    L = Layout()
    L.row("Traffic")
    L.add(timeseries("Request rate by status", [
        (f'sum by (endpoint, status) (rate({REQ}_count{{{SEL}}}[{RI}]))', "{{endpoint}} {{status}}")],
        unit="reqps", description="Requests per second, by endpoint and HTTP status.", stack=True))
    L.add(timeseries("Errors by status", [
        (f'sum by (status) (rate({REQ}_count{{status=~"4..|5..", {SEL}}}[{RI}])) or on() vector(0)',
         "{{status}}"),
        (f'(sum(rate({REQ}_count{{status=~"5..", {SEL}}}[{RI}])) or on() vector(0)) / '
         f'clamp_min(sum(rate({REQ}_count{{{SEL}}}[{RI}])), 1e-9)', "5xx ratio")],
        unit="reqps", description="4xx/5xx responses per second (0 when there are none) and the 5xx ratio."))
    L.row("Latency")
    L.add(timeseries("Request latency p50 / p95 / p99", [
        (q(0.5, REQ, "endpoint"), "p50 {{endpoint}}"),
        (q(0.95, REQ, "endpoint"), "p95 {{endpoint}}"),
        (q(0.99, REQ, "endpoint"), "p99 {{endpoint}}")], unit="s",
        description="End-to-end request latency quantiles from the request duration histogram."))
    L.add(timeseries("Per-token latency p50 / p95 by model", [
        (q(0.5, TOK, "model"), "p50 {{model}}"),
        (q(0.95, TOK, "model"), "p95 {{model}}")], unit="s",
        description="Model wall time divided by tokens: the number the paper's speed claims are about."))
    L.row("Skimming (the threshold knob)")
    L.add(timeseries("Skim rate by model", [
        (f'sum by (model) (rate(skimserve_tokens_total{{decision="skim", {SEL}}}[{RI}])) / '
         f'clamp_min(sum by (model) (rate(skimserve_tokens_total{{{SEL}}}[{RI}])), 1e-9)', "{{model}} (tokens)"),
        (mean("skimserve_skim_rate"), "{{model}} (mean per request)")],
        unit="percentunit", min_=0, max_=1,
        description="Share of tokens that went through the small cell. Raise the threshold to skim less."), w=8)
    L.add(timeseries("FLOP reduction by model", [
        (mean("skimserve_flop_reduction"), "{{model}} mean"),
        (q(0.5, "skimserve_flop_reduction", "model"), "{{model}} p50")], unit="x",
        description="flops_full / flops per request: 1.0 = no savings."), w=8)
    L.add(timeseries("FLOPs per second by model", [
        (f'sum by (model) (rate(skimserve_flops_total{{{SEL}}}[{RI}]))', "{{model}}")], unit="short",
        description="Model FLOPs actually spent per second."), w=8)
    L.add(heatmap("Requested threshold distribution",
                  f'sum by (le) (increase(skimserve_threshold_bucket{{{SEL}}}[{RI}]))',
                  description="Histogram of the threshold clients asked for (0..1)."), w=8)
    L.add(timeseries("Mean requested threshold by model", [
        (mean("skimserve_threshold"), "{{model}}")], min_=0, max_=1), w=8)
    L.add(heatmap("Skim rate distribution (per request)",
                  f'sum by (le) (increase(skimserve_skim_rate_bucket{{{SEL}}}[{RI}]))',
                  description="Histogram of per-request skim rates."), w=8)
    L.add(timeseries("Tokens read vs skimmed", [
        (f'sum by (decision) (rate(skimserve_tokens_total{{{SEL}}}[{RI}]))', "{{decision}}")],
        unit="short", stack=True, description="Tokens per second through the big cell (read) and small cell (skim)."),
        w=24)
    qa_rows(L)
    L.row("Load")
    L.add(timeseries("Queue depth and in-flight requests", [
        (f'sum by (instance) (skimserve_queue_depth{{{INST}}})', "queue {{instance}}"),
        (f'sum by (instance) (skimserve_inflight_requests{{{INST}}})', "in-flight {{instance}}")],
        unit="short", min_=0), w=12)
    L.add(timeseries("Latency objective: load level and load-lowered share", [
        (f'max by (instance) (skimserve_load_level{{{INST}}})', "steps below default {{instance}}"),
        (f'1 - sum by (model) (rate(skimserve_threshold_source_total{{source!="load", {SEL}}}[{RI}])) / '
         f'clamp_min(sum by (model) (rate(skimserve_threshold_source_total{{{SEL}}}[{RI}])), 1e-9)',
         "load-lowered share {{model}}")], unit="short", min_=0,
        description="--latency-objective-ms: how many curve steps below its default the controller has moved "
                    "requests that set no threshold, and the share of requests it lowered (0 when the mode is "
                    "off). The applied threshold itself: the threshold panels above."), w=12)
    L.row("Model comparison")
    L.add(table("Models side by side (last 5 minutes)", [
        (f'sum by (model) (rate({REQ}_count{{{SEL}}}[5m]))', "req/s"),
        (q(0.5, TOK, "model").replace(f"[{RI}]", "[5m]"), "token p50"),
        (q(0.95, TOK, "model").replace(f"[{RI}]", "[5m]"), "token p95"),
        (q(0.95, REQ, "model").replace(f"[{RI}]", "[5m]"), "request p95"),
        (f'sum by (model) (increase(skimserve_tokens_total{{decision="skim", {SEL}}}[5m])) / '
         f'clamp_min(sum by (model) (increase(skimserve_tokens_total{{{SEL}}}[5m])), 1e-9)', "skim rate"),
        (mean("skimserve_flop_reduction").replace(f"[{RI}]", "[5m]"), "FLOP reduction"),
        (mean("skimserve_threshold").replace(f"[{RI}]", "[5m]"), "mean threshold")],
        units=["reqps", "s", "s", "s", "percentunit", "x", None],
        description="One row per model. Compare a Skim-LSTM with its dense LSTM baseline here."), w=24, h=8)
    L.add(timeseries("Per-token latency p50 by model and server (hardware)", [
        (q(0.5, TOK, "model, instance"), "{{model}} @ {{instance}}")], unit="s",
        description="Scrape a CPU and a GPU server (see prometheus.yml) to compare hardware live."))
    L.add(table("Served models", [
        (f'max by (model, version, family, task, kernel, instance) (skimserve_model_info{{{SEL}}})', "loaded")],
        description="skimserve_model_info: which kernel (reference, fast, onnx, torch-cuda ...) serves each model."))
    return {
        "uid": "skimserve-overview", "title": "skimserve: Skim-LSTM serving", "tags": ["skimserve"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
        "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
        "templating": {"list": variables()}, "annotations": {"list": []}, "links": [],
        "panels": L.panels,
    }


def iter_panels(dashboard: dict):
    """Every panel, including those nested in collapsed rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL expr) for every target of every non-row panel."""
    return [(p["title"], t["expr"]) for p in iter_panels(dashboard) if p["type"] != "row"
            for t in p.get("targets", [])]


def substitute(expr: str, model: str = ".*", instance: str = ".*", rate_interval: str = "1m") -> str:
    """Replace Grafana's variables so a query can go straight to Prometheus' HTTP API."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
            .replace("$model", model).replace("$instance", instance))


def load_dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "skimserve-overview.json"
    path.write_text(json.dumps(overview(), indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
