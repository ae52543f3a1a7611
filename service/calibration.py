"""A skim model's calibrated curve (manifest `calibration`, written by `python -m training.calibrate_curve`):
dev-split threshold -> skim rate, flop share, per-token time and accuracy, and the threshold a request
that sends only a budget gets. Read at load; the server never measures it itself."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Calibration:
    curve: list[dict] = field(default_factory=list)   # rows sorted by threshold, ascending
    budget_rule: str = "default"   # "table": the budgets table's; "curve": from the curve; "default": the model's
    budgets: list[dict] = field(default_factory=list)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Calibration | None":
        cal = manifest.get("calibration")
        if not isinstance(cal, dict) or not cal.get("curve"):
            return None
        curve = sorted((dict(r) for r in cal["curve"]), key=lambda r: float(r["threshold"]))
        return cls(curve, str(cal.get("budget_rule", "default")), list(cal.get("budgets", [])))

    def threshold_for_budget(self, budget: float) -> float | None:
        """The threshold of a request that sends only a budget, or None for the model's default.
        Rule "table" (training.calibrate_curve): the budgets table's threshold, chosen on dev for that budget;
        between two rows, the row of the largest budget not above it (chosen for a tighter cap), below the
        first row the first row's. Rule "curve": the highest curve threshold whose dev FLOP share fits the
        budget (the lowest when none does). A budget of 1 caps nothing: the default."""
        if budget >= 1.0:
            return None
        if self.budget_rule == "table":
            rows = sorted((r for r in self.budgets if r.get("threshold") is not None), key=lambda r: r["budget"])
            if not rows:
                return None
            below = [r for r in rows if r["budget"] <= budget + 1e-12]
            return float((below[-1] if below else rows[0])["threshold"])
        if self.budget_rule != "curve":
            return None
        fits = [float(r["threshold"]) for r in self.curve if float(r["flop_share"]) <= budget]
        return max(fits) if fits else float(self.curve[0]["threshold"])

    def steps(self, floor: float, default: float) -> list[float]:
        """The curve's thresholds from the default down to the floor (the load controller's steps)."""
        between = sorted({float(r["threshold"]) for r in self.curve if floor <= float(r["threshold"]) < default},
                         reverse=True)
        return [default, *between] if between or floor >= default else [default, floor]

    def row(self, threshold: float) -> dict | None:
        for r in self.curve:
            if abs(float(r["threshold"]) - threshold) < 1e-9:
                return r
        return None
