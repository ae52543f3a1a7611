"""Pydantic models of the HTTP API: what clients send and get back (and what /docs shows)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

THRESHOLD_DOC = (
    "Skim threshold in [0, 1]. A token is skimmed (small cell, cheaper) iff p_skim > threshold, where p_skim "
    "is the model's decision probability for that token. Lower = more skimming = fewer FLOPs and lower "
    "latency, possibly lower accuracy; 1.0 never skims (the full LSTM); 0.0 skims every token with "
    "p_skim > 0. Default: the model's default_threshold (0.5 = the trained argmax). Per request: no "
    "reload, no shared state. Plain LSTM models accept it and never skim."
)


BUDGET_DOC = (
    "FLOP budget in (0, 1]: spend at most this share of the full model's FLOPs on each text (guaranteed, "
    "enforced inside the kernel on every backend: each layer reads a token only while the rest of the "
    "sequence could still be skimmed within the budget; the decision layer's cost is inside the cap). The "
    "floor is the cost of skimming every token (imdb-skim: about 11%): a budget below it skims every token. "
    "The non-recurrent part (classifier head, QA attention) is paid in full and is outside the cap. With "
    "`threshold` too, the threshold decides and the budget caps; alone, the threshold comes from the model's "
    "calibrated curve (`threshold_source: budget`). Models with a plain LSTM layer answer 400 "
    "budget_unsupported for a budget below 1."
)


class ClassifyRequest(BaseModel):
    """Exactly one of `text` (one text) or `texts` (a batch)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "the film was not very good but the acting was great ."},
                     {"texts": ["a moving , funny film .", "a boring , awful movie ."]}]})

    text: StrictStr | None = Field(None, description="One text to classify.")
    texts: list[StrictStr] | None = Field(None, description="A batch of texts, classified with one threshold.")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def as_list(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts)


class QAItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: StrictStr = Field(description="The paragraph to find the answer in.")
    question: StrictStr


class QARequest(BaseModel):
    """Exactly one of `context` + `question` (one question) or `items` (a batch)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"context": "The Amazon rainforest covers much of the Amazon basin of South America.",
                      "question": "What does the Amazon rainforest cover?"}]})

    context: StrictStr | None = None
    question: StrictStr | None = None
    items: list[QAItem] | None = Field(None, description="A batch of {context, question}, answered with one threshold.")

    @model_validator(mode="after")
    def _exactly_one(self):
        single = self.context is not None or self.question is not None
        if single == (self.items is not None):
            raise ValueError("give either 'context' and 'question' (strings) or 'items' (a list of them)")
        if single and (self.context is None or self.question is None):
            raise ValueError("give both 'context' and 'question'")
        return self

    def as_list(self) -> list[tuple[str, str]]:
        if self.items is not None:
            return [(i.context, i.question) for i in self.items]
        return [(self.context, self.question)]


class TokenDecision(BaseModel):
    token: str = Field(description="The token as the model saw it (lower-cased).")
    start: int = Field(description="Character offset of the token in the (NFC-normalised) text.")
    end: int
    decision: Literal["read", "skim"]
    p_skim: float = Field(description="Decision probability; skimmed iff p_skim > threshold.")


class RequestCost(BaseModel):
    """What one text or question cost (every task reports these)."""
    tokens: int = Field(description="Tokens in the text; several layers: layer-steps (tokens x layers x directions).")
    skimmed: int = Field(description="Tokens (layer-steps) that went through the small (skim) cell, or were skipped.")
    skim_rate: float = Field(description="skimmed / tokens.")
    flops: int = Field(description="FLOPs this request spent in the model (multiply-add = 2).")
    flops_full: int = Field(description="FLOPs of the full model on the same tokens (every step read, no decision layer).")
    flop_reduction: float = Field(description="flops_full / flops (above 1 = savings).")
    latency_ms: float = Field(description="Wall time of the model part (tokenization and HTTP excluded).")
    per_token_us: float = Field(description="latency_ms per token (layer-step), in microseconds.")


class Classification(RequestCost):
    label: str
    probabilities: dict[str, float]
    explanation: list[TokenDecision] | None = Field(None, description="Per-token decisions (explain=true).")


class ModelRef(BaseModel):
    model: str
    version: str
    kernel: str = Field(description="Layer kernel serving the model (reference, fast, onnx, torch-cuda, ...).")
    threshold: float = Field(description="The threshold used.")
    budget: float | None = Field(None, description="The FLOP budget applied (absent: none).")
    threshold_source: Literal["request", "budget", "default", "load"] = Field(
        "default", description="Why this threshold: the request set it; chosen for the budget from the calibrated "
        "curve; the model's default; or lowered by the latency-objective controller under load.")


class LayerCost(BaseModel):
    layer: str = Field(description="Layer name, e.g. l0.fw (layer 0, forward) or l1.bw.")
    direction: Literal["forward", "backward"]
    threshold: float
    tokens: int
    skimmed: int
    skim_rate: float
    flops: int
    flops_full: int
    flop_reduction: float
    latency_ms: float
    per_token_us: float


class QATokenDecision(BaseModel):
    token: str
    start: int = Field(description="Character offset of the token in the context as sent.")
    end: int
    in_answer: bool
    decisions: dict[str, Literal["read", "skim"]] = Field(description="Per layer/direction.")
    p_skim: dict[str, float]


class QAAnswer(RequestCost):
    answer: str = Field(description="The answer: exactly context[start:end] of the context as sent.")
    start: int = Field(description="Character offset of the answer's start in the context as sent.")
    end: int = Field(description="Character offset just after the answer.")
    score: float = Field(description="p_start(first token) * p_end(last token) under the model.")
    context_tokens: int = Field(description="Tokens in the context (the cost fields count layer-steps: x4).")
    per_layer: list[LayerCost]
    explanation: list[QATokenDecision] | None = None


class QARef(ModelRef):
    threshold: float | list[float] = Field(description="The threshold used (a list: one per layer, lowest first).")


class QAResponse(QARef, QAAnswer):
    """One question: the model reference and the answer, flat."""


class BatchQAResponse(QARef):
    results: list[QAAnswer]


class ClassifyResponse(ModelRef, Classification):
    """One text: the model reference and the classification, flat."""


class BatchClassifyResponse(ModelRef):
    results: list[Classification]


class ModelSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    task: str
    family: str = Field(description="The cell of its layers (format-1 name; same as `cell`).")
    cell: str | None = None
    skims: bool | None = Field(None, description="Whether the threshold changes what this model computes.")
    kernel: str
    default_threshold: float
    labels: list[str] | None = None
    has_card: bool
    default: bool = False


class ModelList(BaseModel):
    default: str | None = Field(description="The server's default model (used by /classify when none is named).")
    defaults: dict[str, str | None] = Field(default_factory=dict, description="The default model of each task.")
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    manifest: dict
    card: dict | None = Field(None, description="card.json of the model folder (evaluation sweep), if present.")
    card_markdown: str | None = Field(None, description="card.md of the model folder, if present.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    models: list[str] = []
    detail: str | None = None


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong, for a human.")
    code: str = Field(description="Stable machine-readable reason, e.g. empty_text, text_too_large, unknown_model.")
    errors: list[dict] | None = Field(None, description="Field-level validation errors (422).")
