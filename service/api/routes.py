"""Thin route functions: read and validate the body, then the dataplane does the rest (lookup, task check,
threshold, pool, envelope)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from .. import metrics
from ..dataplane import Dataplane
from ..registry import Registry
from .body import BATCH_KEYS, read_json
from .errors import RETRY_AFTER_S, ApiError
from .inputs import Threshold, parse_thresholds
from .schemas import (BUDGET_DOC, THRESHOLD_DOC, BatchClassifyResponse, BatchQAResponse, ClassifyRequest, ClassifyResponse,
                      ErrorBody, Health, ModelDetail, ModelList, QARequest, QAResponse, Readiness)

router = APIRouter()

ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in {
    400: "Malformed JSON or non-UTF-8 body; the model does not answer this task (wrong_task); a budget below 1 "
         "for a model that cannot skim (budget_unsupported).",
    404: "Unknown model.",
    413: "Text over the byte or token limit, batch over the batch limit, or body too large.",
    415: "Content type is not application/json.",
    422: "Empty or whitespace text, both or neither of text/texts, threshold outside [0, 1] or not a number, "
         "budget outside (0, 1] (invalid_budget).",
    503: "Not ready yet (models loading) or overloaded (queue full); see Retry-After.",
}.items()}

MODEL_DOC = "Model name (GET /models); default: the server's default model for this task."
EXPLAIN_DOC = "Add each token with its span, read/skim decision and p_skim."


async def read_body(request: Request, schema: type[BaseModel]) -> BaseModel:
    settings = request.app.state.settings
    batch = BATCH_KEYS.get(request.scope["path"])
    try:  # validated where it was parsed (off the event loop for a big body)
        return await read_json(request, settings.max_body_bytes, settings.max_text_bytes, schema.model_validate,
                               (batch, settings.max_batch) if batch else None)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def dataplane_entry(request: Request, task: str, model: str | None):
    dp: Dataplane = request.app.state.dataplane
    entry = dp.entry(task, model)
    request.scope["skimserve"]["model"] = entry.name  # request-duration metric label (see middleware)
    return dp, entry


def _body_schema(schema: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema.model_json_schema()}}}}


@router.post(
    "/classify", response_model=ClassifyResponse | BatchClassifyResponse, response_model_exclude_none=True,
    summary="Classify one text or a batch, at a per-request skim threshold", responses=ERRORS,
    openapi_extra=_body_schema(ClassifyRequest),
)
async def classify(
    request: Request,
    threshold: Annotated[Threshold | None, Query(description=THRESHOLD_DOC)] = None,
    model: str | None = Query(None, description=MODEL_DOC),
    explain: bool = Query(False, description=EXPLAIN_DOC),
    budget: float | None = Query(None, gt=0.0, le=1.0, allow_inf_nan=False, description=BUDGET_DOC),
):
    """Runs the model over the tokens of each text. The response carries the answer (label, probabilities)
    and what it cost: tokens, skimmed, skim_rate, flops, flops_full, flop_reduction, latency_ms,
    per_token_us, and the threshold, model, version and kernel used. A single `text` gives a flat object;
    `texts` gives `results`, one per text, in order."""
    dp, entry = dataplane_entry(request, "classify", model)
    body = await read_body(request, ClassifyRequest)
    return await dp.run(entry, body, dp.params(entry, threshold, explain, budget))


QA_ERRORS = {**ERRORS, 413: {"model": ErrorBody, "description": "Context or question over the byte or token "
                                                                  "limit, batch over the batch limit, or body too large."},
             422: {"model": ErrorBody, "description": "Empty or whitespace context or question, a missing field, "
                                                       "threshold(s) outside [0, 1] or not numbers, or as many "
                                                       "thresholds as the model has layers not given."}}
THRESHOLDS_DOC = ("One threshold per layer, lowest first, comma-separated (e.g. 0.5,0.3 skims the upper layer "
                  "harder); both directions of a layer share it. Overrides `threshold`.")


@router.post(
    "/qa", response_model=QAResponse | BatchQAResponse, response_model_exclude_none=True,
    summary="Answer a question from a context (extractive), at a per-request skim threshold", responses=QA_ERRORS,
    openapi_extra=_body_schema(QARequest),
)
async def qa(
    request: Request,
    threshold: Annotated[Threshold | None, Query(description=THRESHOLD_DOC)] = None,
    thresholds: str | None = Query(None, description=THRESHOLDS_DOC, examples=["0.5,0.3"]),
    model: str | None = Query(None, description=MODEL_DOC),
    explain: bool = Query(False, description="Add each context token's read/skim decision per layer."),
    budget: float | None = Query(None, gt=0.0, le=1.0, allow_inf_nan=False, description=BUDGET_DOC),
):
    """Finds the answer span in the context: `answer` is exactly `context[start:end]` of the context as sent.
    The cost (tokens = layer-steps, skimmed, skim_rate, flops, flops_full, flop_reduction, latency_ms,
    per_token_us) comes in total and per layer and direction (`per_layer`)."""
    dp, entry = dataplane_entry(request, "qa", model)
    per_layer = parse_thresholds(thresholds)
    body = await read_body(request, QARequest)
    return await dp.run(entry, body, dp.params(entry, per_layer if per_layer is not None else threshold, explain,
                                               budget))


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    if not registry.ready:
        raise ApiError(503, "not_ready", "models are still loading; retry shortly", {"Retry-After": RETRY_AFTER_S})
    return registry


@router.get("/models", response_model=ModelList, summary="Served models")
async def list_models(request: Request):
    registry = _registry(request)
    return {"default": registry.default_name,
            "defaults": {task: registry.default_for(task) for task in sorted({e.model.task for e in registry.entries.values()})},
            "models": [{**registry.entries[n].summary(), "default": n == registry.default_name}
                       for n in registry.names()]}


@router.get("/models/{name}", response_model=ModelDetail, responses={404: ERRORS[404]},
            summary="One model: manifest and model card")
async def get_model(request: Request, name: str):
    entry = _registry(request).get(name)
    request.scope["skimserve"]["model"] = entry.name
    return {**entry.detail(), "default": entry.name == request.app.state.registry.default_name}


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=Health,
            summary="Liveness: the process answers (answered before routing: service/api/admission.py)")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, response_model_exclude_none=True, responses={503: {"model": Readiness}},
            summary="Readiness: every model loaded, verified and warmed up")
async def readyz(request: Request):
    registry: Registry = request.app.state.registry
    if not registry.ready:
        return JSONResponse({"ready": False, "models": [], "detail": "models are loading"}, status_code=503,
                            headers={"Retry-After": RETRY_AFTER_S})
    return {"ready": True, "models": registry.names()}


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics_endpoint():  # sync: FastAPI runs it in its thread pool (multiprocess mode reads files)
    data, content_type = metrics.render()
    return Response(data, media_type=content_type)
