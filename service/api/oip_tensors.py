"""Open Inference Protocol (KServe V2 / Triton REST) tensors: the request's input tensors -> Python values,
result dicts -> output tensors, in the JSON form and in the binary tensor data extension (a JSON header of
`Inference-Header-Content-Length` bytes, then each binary tensor's bytes in order; tritonclient.http sends
and asks for this by default). No HTTP and no model here: service/api/oip.py is the transport.

Each task names its tensors once (TENSORS); the result dicts are the tasks' own (service/tasks/*.py).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..inputs import InputError

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 8


class OipError(InputError):
    """A request the protocol refuses; leaves as {"error": message} with its 4xx status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(status, "oip_error", message)


# --- request shape (also the OpenAPI schema of POST .../infer) ----------------------------------------
Parameter = str | float | int | bool | None


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[int] = Field(max_length=MAX_DIMS, description="[batch] or [batch, 1].")
    datatype: str = Field(description="BYTES (UTF-8 strings).")
    parameters: dict[str, Parameter] | None = Field(None, description="binary_data_size: the tensor's bytes after the JSON header.")
    data: list | None = Field(None, description="The strings (flat or nested in row-major order); absent with binary_data_size.")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: dict[str, Parameter] | None = Field(None, description="binary_data: true to get it as binary data.")


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a moving , funny film ."]}],
        "parameters": {"threshold": 0.3}}]})
    id: str | None = None
    parameters: dict[str, Parameter] | None = Field(
        None, description="threshold (number in [0, 1]); qa: thresholds ('0.5,0.3', one per layer); "
                          "binary_data_output (bool).")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="The outputs to return (default: all).")


# --- what each task takes and gives -----------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    per_label: bool = False  # one column per model label (shape [batch, labels])


COST = [Tensor("tokens", "INT64"), Tensor("skimmed", "INT64"), Tensor("skim_rate", "FP64"),
        Tensor("flops", "INT64"), Tensor("flops_full", "INT64"), Tensor("flop_reduction", "FP64"),
        Tensor("latency_ms", "FP64"), Tensor("per_token_us", "FP64")]
TENSORS = {
    "classify": (["text"], [Tensor("label", "BYTES"), Tensor("probabilities", "FP64", per_label=True), *COST]),
    "qa": (["context", "question"], [Tensor("answer", "BYTES"), Tensor("start", "INT64"), Tensor("end", "INT64"),
                                    Tensor("score", "FP64"), Tensor("context_tokens", "INT64"), *COST]),
}
NUMPY = {"INT64": "<i8", "FP64": "<f8"}


def parse_request(document: object) -> InferRequest:
    if not isinstance(document, dict):
        raise OipError("the inference request must be a JSON object")
    try:
        return InferRequest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise OipError(f"invalid inference request: {where}: {first['msg']}"
                       + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")) from None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part (empty without the extension's header)."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise OipError(f"Inference-Header-Content-Length {header_length!r} is not a length within the "
                       f"{len(body)}-byte body")
    n = int(header_length)
    return body[:n], body[n:]


def flatten(data: list) -> list:
    """Row-major elements of a (possibly nested) list, without recursion."""
    out, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def decode_bytes_tensor(raw: bytes, name: str) -> list[bytes]:
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise OipError(f"input '{name}': truncated BYTES element length at byte {pos}")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise OipError(f"input '{name}': BYTES element of {n} bytes runs past the tensor's data")
        items.append(raw[pos:pos + n])
        pos += n
    return items


def input_strings(request: InferRequest, binary: bytes, names: list[str]) -> dict[str, list[str]]:
    """The named BYTES inputs as lists of str (every other input refused), all of one batch size."""
    given = {t.name: t for t in request.inputs}
    if len(given) != len(request.inputs):
        raise OipError("an input tensor is named twice")
    unknown = sorted(set(given) - set(names))
    missing = [n for n in names if n not in given]
    if unknown or missing:
        raise OipError(f"this model takes the BYTES input(s) {', '.join(names)}"
                       + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                       + (f"; missing: {', '.join(missing)}" if missing else ""))
    offset, values = 0, {}
    for tensor in request.inputs:  # binary data lies in the order of the inputs
        if tensor.datatype != "BYTES":
            raise OipError(f"input '{tensor.name}': datatype {tensor.datatype!r}; this model takes BYTES")
        if any(d < 0 for d in tensor.shape) or not 1 <= len(tensor.shape) <= 2 or tensor.shape[1:] not in ([], [1]):
            raise OipError(f"input '{tensor.name}': shape {tensor.shape}; expected [batch] or [batch, 1]")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise OipError(f"input '{tensor.name}': binary_data_size {size!r} does not fit the "
                               f"{len(binary) - offset} binary bytes left after the JSON header")
            if tensor.data is not None:
                raise OipError(f"input '{tensor.name}': give either data or binary_data_size, not both")
            raw_items, offset = decode_bytes_tensor(binary[offset:offset + size], tensor.name), offset + size
            try:
                items = [b.decode("utf-8") for b in raw_items]
            except UnicodeDecodeError:
                raise OipError(f"input '{tensor.name}': an element is not valid UTF-8") from None
        else:
            if tensor.data is None:
                raise OipError(f"input '{tensor.name}': no data (and no binary_data_size)")
            items = flatten(tensor.data)
            if not all(isinstance(x, str) for x in items):
                raise OipError(f"input '{tensor.name}': BYTES data must be strings")
        if len(items) != math.prod(tensor.shape):
            raise OipError(f"input '{tensor.name}': shape {tensor.shape} holds {math.prod(tensor.shape)} "
                           f"element(s), data has {len(items)}")
        values[tensor.name] = items
    if offset != len(binary):
        raise OipError(f"{len(binary) - offset} binary bytes after the JSON header belong to no input")
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise OipError(f"inputs {', '.join(names)} must have the same batch size")
    if 0 in sizes:
        raise OipError("an empty batch: give at least one element")
    return values


def wanted_outputs(request: InferRequest, task: str) -> list[tuple[Tensor, bool]]:
    """(tensor, as binary) for each output to return: the requested ones, else all of them."""
    specs = {t.name: t for t in TENSORS[task][1]}
    default_binary = bool((request.parameters or {}).get("binary_data_output", False))
    if not request.outputs:
        return [(t, default_binary) for t in specs.values()]
    out = []
    for o in request.outputs:
        if o.name not in specs:
            raise OipError(f"unknown output '{o.name}' (outputs: {', '.join(specs)})")
        out.append((specs[o.name], bool((o.parameters or {}).get("binary_data", default_binary))))
    return out


def encode_outputs(results: list[dict], wanted: list[tuple[Tensor, bool]], labels: list[str] | None
                   ) -> tuple[list[dict], list[bytes]]:
    """Output tensor objects and, for those sent as binary, their bytes (in the same order)."""
    tensors, chunks = [], []
    n = len(results)
    for spec, binary in wanted:
        if spec.per_label:
            values = [[r[spec.name][label] for label in labels] for r in results]
            shape = [n, len(labels)]
        else:
            values, shape = [r[spec.name] for r in results], [n]
        tensor = {"name": spec.name, "datatype": spec.datatype, "shape": shape}
        if binary:
            if spec.datatype == "BYTES":
                raw = b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode("utf-8") for v in values))
            else:
                raw = np.asarray(values, dtype=NUMPY[spec.datatype]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif spec.datatype == "BYTES":
            tensor["data"] = [str(v) for v in values]
        else:  # plain Python numbers, flat in row-major order
            tensor["data"] = np.asarray(values, dtype=NUMPY[spec.datatype]).reshape(-1).tolist()
        tensors.append(tensor)
    return tensors, chunks
