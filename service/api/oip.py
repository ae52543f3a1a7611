"""The Open Inference Protocol (KServe V2 / Triton HTTP/REST) over the same dataplane as /classify and /qa:
server and model metadata, health, and POST /v2/models/{name}[/versions/{v}]/infer with BYTES input
tensors (classify: `text`; qa: `context` + `question`), the threshold as a request parameter, and the
answer and its cost as output tensors. Errors leave as the protocol's {"error": "..."} (4xx; 503 +
Retry-After while loading or overloaded). Tensor encoding: service/api/oip_tensors.py."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .. import __version__
from ..dataplane import Dataplane, InputError, NotReady
from ..pool import QueueFull
from ..registry import ModelEntry, UnknownModel
from .body import decode_json
from .errors import RETRY_AFTER_S
from .oip_tensors import (HEADER_LENGTH, TENSORS, InferRequest, OipError, encode_outputs, input_strings,
                          parse_request, split_body, wanted_outputs)
from .routes import parse_thresholds
from .schemas import ClassifyRequest, QAItem, QARequest

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe V2)"])
EXTENSIONS = ["binary_tensor_data"]


class OipErrorBody(BaseModel):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, str | float | bool] | None = None


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, int] | None = None
    data: list | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, str | float] = {}
    outputs: list[OutputTensor]


def _errors(*statuses: int) -> dict:
    return {s: {"model": OipErrorBody} for s in statuses}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def as_error(exc: Exception) -> JSONResponse:
    """The dataplane's and registry's refusals in the protocol's shape."""
    if isinstance(exc, UnknownModel):
        return error(404, str(exc))
    if isinstance(exc, QueueFull):
        return error(503, f"server busy: {exc}; retry later", {"Retry-After": RETRY_AFTER_S})
    return error(exc.status, exc.message, getattr(exc, "headers", None))


REFUSALS = (InputError, UnknownModel, QueueFull)


def model_entry(request: Request, name: str, version: str | None) -> ModelEntry:
    registry = request.app.state.registry
    if not registry.ready:
        raise NotReady()
    entry = registry.get(name)
    if version is not None and version != entry.model.version:
        raise OipError(f"model '{name}' has version '{entry.model.version}', not '{version}'", 404)
    request.scope["skimserve"]["model"] = entry.name  # request-duration metric label (app.py)
    return entry


def metadata(entry: ModelEntry) -> dict:
    m = entry.model
    names, outputs = TENSORS[m.task]
    labels = m.describe().get("labels") or []
    return {"name": m.name, "versions": [m.version], "platform": f"skimserve-{m.task}",
            "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in names],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": [-1, len(labels)] if t.per_label else [-1]}
                        for t in outputs],
            "parameters": {"task": m.task, "cell": m.cell, "kernel": m.kernel_name,
                           "default_threshold": m.default_threshold,
                           **({"labels": ",".join(labels)} if labels else {})}}


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata():
    return {"name": "skimserve", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", summary="Server live", responses={200: {"content": {"application/json": {}}}})
async def live():
    return {}


@router.get("/health/ready", summary="Server ready: every model loaded and warmed", responses=_errors(503))
async def ready(request: Request):
    if not request.app.state.registry.ready:
        return error(503, "models are still loading", {"Retry-After": RETRY_AFTER_S})
    return {}


async def _model_metadata(request: Request, name: str, version: str | None):
    try:
        return metadata(model_entry(request, name, version))
    except REFUSALS as exc:
        return as_error(exc)


async def _model_ready(request: Request, name: str, version: str | None):
    try:
        model_entry(request, name, version)
    except REFUSALS as exc:
        return as_error(exc)
    return {}


@router.get("/models/{name}", response_model=ModelMetadata, responses=_errors(404, 503), summary="Model metadata")
async def model_metadata(request: Request, name: str):
    return await _model_metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_errors(404, 503),
            summary="Model metadata (one version)")
async def model_version_metadata(request: Request, name: str, version: str):
    return await _model_metadata(request, name, version)


@router.get("/models/{name}/ready", responses=_errors(404, 503), summary="Model ready")
async def model_ready(request: Request, name: str):
    return await _model_ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", responses=_errors(404, 503), summary="Model ready (one version)")
async def model_version_ready(request: Request, name: str, version: str):
    return await _model_ready(request, name, version)


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise OipError(f"body of {declared} bytes; the limit is {max_bytes}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise OipError(f"body over {max_bytes} bytes", 413)
    return bytes(body)


def threshold_parameter(parameters: dict, task: str):
    """None (model default), a float, or a per-layer list (qa's `thresholds`, read by /qa's own parser)."""
    if task == "qa" and parameters.get("thresholds") is not None:
        return parse_thresholds(str(parameters["thresholds"]))
    thr = parameters.get("threshold")
    if thr is None:
        return None
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0:  # NaN fails too
        raise OipError(f"parameter threshold={thr!r}: expected a number in [0, 1]")
    return float(thr)


def task_body(task: str, values: dict[str, list[str]]):
    """The task's own request schema, so the dataplane sees exactly what /classify or /qa would."""
    if task == "classify":
        return ClassifyRequest(texts=values["text"])
    return QARequest(items=[QAItem(context=c, question=q) for c, q in zip(values["context"], values["question"])])


async def _infer(request: Request, name: str, version: str | None) -> Response:
    try:
        entry = model_entry(request, name, version)
        task = entry.model.task
        json_part, binary = split_body(await read_body(request, request.app.state.settings.max_body_bytes),
                                       request.headers.get(HEADER_LENGTH))
        infer: InferRequest = parse_request(decode_json(json_part))
        values = input_strings(infer, binary, TENSORS[task][0])
        wanted = wanted_outputs(infer, task)
        dp: Dataplane = request.app.state.dataplane
        entry = dp.entry(task, entry.name)
        params = dp.params(entry, threshold_parameter(infer.parameters or {}, task))
        envelope = await dp.run(entry, task_body(task, values), params)
    except REFUSALS as exc:
        return as_error(exc)
    thr = envelope["threshold"]
    tensors, chunks = encode_outputs(envelope["results"], wanted, entry.model.describe().get("labels"))
    reply = {"model_name": entry.name, "model_version": entry.model.version,
             **({"id": infer.id} if infer.id is not None else {}),
             "parameters": {"threshold": ",".join(map(str, thr)) if isinstance(thr, list) else thr,
                            "kernel": envelope["kernel"]},
             "outputs": tensors}
    if not chunks:
        return JSONResponse(reply)
    header = JSONResponse(reply).body
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its $defs put in place (an operation's body schema cannot point into them)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


INFER_DOC = dict(
    response_model=InferResponse, responses={
        200: {"content": {"application/octet-stream": {}}, "description": "JSON, or (binary tensor data "
              "extension) a JSON header of Inference-Header-Content-Length bytes followed by the binary outputs."},
        **_errors(400, 404, 413, 422, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_schema(InferRequest)}}}},
)


@router.post("/models/{name}/infer", summary="Inference", **INFER_DOC)
async def infer(request: Request, name: str):
    """BYTES input `text` (classify) or `context` + `question` (qa), shape [batch] or [batch, 1]; request
    `parameters`: `threshold` (qa also `thresholds`, '0.5,0.3'). Outputs: the answer (label and
    probabilities, or answer/start/end/score) and the cost (tokens, skimmed, skim_rate, flops, flops_full,
    flop_reduction, latency_ms, per_token_us), one element per input."""
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference (one version)", **INFER_DOC)
async def infer_version(request: Request, name: str, version: str):
    return await _infer(request, name, version)
