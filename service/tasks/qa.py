"""The qa task (POST /qa): a context and a question in; the answer span, its score and the cost (in total
and per layer and direction) out."""
from __future__ import annotations

from ..families.qa import Answer, Reader
from ..inputs import check_batch, check_text, tokenize_checked
from . import register_task
from .base import Params, Task

WARMUP_THRESHOLDS = (1.0, 0.5, 0.3, 0.0)


def result_dict(a: Answer, explain: bool) -> dict:
    c = a.cost
    d = {"answer": a.text, "start": a.start, "end": a.end, "score": a.score,
         "context_tokens": len(a.tokens), "tokens": c.tokens, "skimmed": c.skimmed, "skim_rate": c.skim_rate,
         "flops": c.flops, "flops_full": c.flops_full, "flop_reduction": c.flop_reduction,
         "latency_ms": c.latency_ms, "per_token_us": c.per_token_us, "per_layer": c.per_layer}
    if explain:
        names = [r.layer.name for r in a.layers]
        skims = [r.out.skim.tolist() for r in a.layers]
        probs = [r.out.p_skim.tolist() for r in a.layers]
        d["explanation"] = [
            {"token": t.text, "start": t.start, "end": t.end, "in_answer": a.token_start <= k <= a.token_end,
             "decisions": {n: "skim" if s[k] else "read" for n, s in zip(names, skims)},
             "p_skim": {n: float(p[k]) for n, p in zip(names, probs)}}
            for k, t in enumerate(a.tokens)]
    return d


@register_task
class QATask(Task):
    name = "qa"
    model_class = Reader

    def inputs(self, body) -> list[tuple[str, str]]:
        return body.as_list()

    def check(self, items, limits):
        check_batch(len(items), limits, "items")
        for k, (context, question) in enumerate(items):
            where = f"items[{k}]." if len(items) > 1 else ""
            check_text(context, limits, where + "context")
            check_text(question, limits, where + "question")

    def run(self, model, items, params: Params, limits):
        tokenized = []
        for k, (context, question) in enumerate(items):
            where = f"items[{k}]." if len(items) > 1 else ""
            tokenized.append((tokenize_checked(model, context, limits, where + "context"),
                              tokenize_checked(model, question, limits, where + "question")))
        answers = [model.answer_tokens(context, ct, qt, params.threshold, limits.max_answer_tokens,
                                   budget=params.budget)
                   for (context, _), (ct, qt) in zip(items, tokenized)]
        from .. import metrics  # not at import: the CLI imports tasks before it sets up multiprocess metrics

        for thr in (params.threshold if isinstance(params.threshold, tuple) else (params.threshold,)):
            metrics.record_threshold(model.name, thr)
        for a in answers:
            metrics.record_cost(model.name, a.cost)
        return [result_dict(a, params.explain) for a in answers]

    def warm(self, model):
        words = [w for w in model.artifact.vocab[2:50]] or ["warm"]
        context = " ".join((words * (128 // len(words) + 1))[:128])
        for thr in WARMUP_THRESHOLDS:
            model.answer(context, " ".join(words[:6]), thr)
            model.answer(words[0], words[1], thr)

    def envelope(self, ref, body, results):
        if body.items is None:
            return {**ref, **results[0]}
        return {**ref, "results": results}
