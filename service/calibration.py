"""A skim model's calibrated curve (manifest `calibration`, written by `python -m training.calibrate_curve`):
dev-split threshold -> skim rate, flop share, per-token time and accuracy, and the threshold a request
that sends only a budget gets. Read at load; the server never measures it itself."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Calibration:
    curve: list[dict] = field(default_factory=list)   # rows sorted by threshold, ascending
    budget_rule: str = "default"                      # "curve": threshold from the curve; "default": the model's
    budgets: list[dict] = field(default_factory=list)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Calibration | None":
        cal = manifest.get("calibration")
        if not isinstance(cal, dict) or not cal.get("curve"):
            return None
        curve = sorted((dict(r) for r in cal["curve"]), key=lambda r: float(r["threshold"]))
        return cls(curve, str(cal.get("budget_rule", "default")), list(cal.get("budgets", [])))

    def threshold_for_budget(self, budget: float) -> float | None:
        """The highest curve threshold whose dev FLOP share fits the budget (the lowest when none does), or
        None when the rule chosen on dev is to keep the default threshold and let the cap alone act."""
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
