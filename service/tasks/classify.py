"""The classify task (POST /classify): texts in, a label, probabilities and the cost per text out."""
from __future__ import annotations

from ..families.classifier import ClassifyResult, Classifier
from ..inputs import check_texts, tokenize_checked
from . import register_task
from .base import Params, Task

WARMUP_THRESHOLDS = (1.0, 0.5, 0.3, 0.0)
_METRICS = []


def _metrics():
    """service.metrics, imported on first use: the CLI imports tasks before it sets up multiprocess metrics."""
    if not _METRICS:
        from .. import metrics

        _METRICS.append(metrics)
    return _METRICS[0]


def result_dict(r: ClassifyResult, explain: bool) -> dict:
    c = r.cost
    d = {"label": r.label, "probabilities": r.probabilities, "tokens": c.tokens, "skimmed": c.skimmed,
         "skim_rate": c.skim_rate, "flops": c.flops, "flops_full": c.flops_full,
         "flop_reduction": c.flop_reduction, "latency_ms": c.latency_ms, "per_token_us": c.per_token_us}
    if explain:
        d["explanation"] = [
            {"token": t.text, "start": t.start, "end": t.end, "decision": "skim" if s else "read", "p_skim": float(p)}
            for t, s, p in zip(r.tokens, r.layer.skim.tolist(), r.layer.p_skim.tolist())]
    return d


@register_task
class ClassifyTask(Task):
    name = "classify"
    model_class = Classifier

    def inputs(self, body) -> list[str]:
        return body.as_list()

    def check(self, items, limits):
        check_texts(items, limits, "text", "texts")

    def run(self, model, items, params: Params, limits):
        where = ["text"] if len(items) == 1 else [f"texts[{i}]" for i in range(len(items))]
        tokenized = [tokenize_checked(model, text, limits, w) for text, w in zip(items, where)]
        results = [model.classify_tokens(tokens, params.threshold, params.budget) for tokens in tokenized]
        metrics = _metrics()
        metrics.record_threshold(model.name, params.threshold)
        for r in results:
            metrics.record_cost(model.name, r.cost)
        return [result_dict(r, params.explain) for r in results]

    def warm(self, model):
        words = [w for w in model.artifact.vocab[2:50]] or ["warm"]
        text = " ".join((words * (64 // len(words) + 1))[:64])
        for thr in WARMUP_THRESHOLDS:
            model.classify(text, thr)
            model.classify(words[0], thr)

    def envelope(self, ref, body, results):
        if body.text is not None:
            return {**ref, **results[0]}
        return {**ref, "results": results}
