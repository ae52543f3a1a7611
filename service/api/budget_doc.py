"""OpenAPI: the `budget` parameter of /classify and /qa states the accuracy to expect at each budget, per
served model, read from its card (card.json `calibration.budgets`, written by training.calibrate_curve) or,
without a card, from its manifest's dev figures. Filled in once the models are loaded."""
from __future__ import annotations

from fastapi import FastAPI

PATHS = {"/classify": "classify", "/qa": "qa"}


def budget_table(registry, task: str) -> str:
    lines = []
    for name in registry.names(task):
        entry = registry.entries[name]
        cal = (entry.card or {}).get("calibration") or entry.model.manifest.get("calibration") or {}
        rows = cal.get("budgets") or []
        if not rows:
            continue
        metric = "test" if any("test_accuracy" in r for r in rows) else "dev"
        cells = ", ".join(f"{r['budget']:g} → {100 * r.get(metric + '_accuracy', r.get('dev_accuracy', 0)):.1f}%"
                          for r in rows)
        lines.append(f"- `{name}` ({metric} accuracy): {cells}")
    if not lines:
        return ""
    return "Expected accuracy by budget (from each model's card):\n" + "\n".join(lines)


def install(app: FastAPI) -> None:
    base = app.openapi

    def openapi():
        registry = app.state.registry
        if app.openapi_schema is not None and getattr(app.state, "budget_doc_ready", False):
            return app.openapi_schema
        app.openapi_schema = None
        schema = base()
        if registry.ready:
            for path, task in PATHS.items():
                table = budget_table(registry, task)
                for param in schema.get("paths", {}).get(path, {}).get("post", {}).get("parameters", []):
                    if param.get("name") == "budget" and table:
                        param["description"] = param.get("description", "") + "\n\n" + table
        app.state.budget_doc_ready = registry.ready
        return schema

    app.openapi = openapi
