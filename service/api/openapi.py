"""The OpenAPI document says what the server enforces (issue 20): request bodies with "exactly one of"
as oneOf, the limits of the running server's settings (maxLength, maxItems), the texts the server calls
empty, the served model names per route and the per-layer thresholds as a list of numbers. Built on
FastAPI's document, after startup (the models are known then), so schema-driven tools (schemathesis,
generated clients) neither send what the server must refuse nor miss what it accepts.

What JSON Schema cannot say, and the server still refuses with a 413: a text under maxLength characters
that is over the limit in UTF-8 bytes (non-ASCII), or over the token limit."""
from __future__ import annotations

import re
import sys

from fastapi import FastAPI

from ..config import Settings
from .schemas import ClassifyRequest, QARequest

# Python's str.isspace(), which the server's empty-text check uses (ECMA-262's \s differs: it has U+FEFF
# and lacks U+001C-U+001F and U+0085), as a pattern class: a text must hold one character outside it.
_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
NOT_ONLY_SPACE = "[^" + re.sub(r"[\\\]^-]", r"\\\g<0>", _SPACE) + "]"


def _text(limit: int, description: str = "") -> dict:
    schema = {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NOT_ONLY_SPACE}
    return {**schema, "description": description} if description else schema


def _one_of(title: str, description: str, forms: list[tuple[dict, list[str]]], examples: list) -> dict:
    names = sorted({name for props, _ in forms for name in props})
    branches = []
    for props, required in forms:
        others = {n: {"type": "null"} for n in names if n not in props}  # the other form's keys may be null
        branches.append({"type": "object", "properties": {**props, **others}, "required": required,
                         "additionalProperties": False})
    return {"title": title, "description": description, "oneOf": branches, "examples": examples}


def classify_body_schema(max_text_bytes: int, max_batch: int) -> dict:
    text = _text(max_text_bytes)
    return _one_of("ClassifyRequest", ClassifyRequest.__doc__, [
        ({"text": {**text, "description": "One text to classify."}}, ["text"]),
        ({"texts": {"type": "array", "items": text, "minItems": 1, "maxItems": max_batch,
                    "description": "A batch of texts, classified with one threshold."}}, ["texts"]),
    ], ClassifyRequest.model_config["json_schema_extra"]["examples"])


def qa_body_schema(max_text_bytes: int, max_batch: int) -> dict:
    text = _text(max_text_bytes)
    item = {"type": "object", "properties": {"context": text, "question": text},
            "required": ["context", "question"], "additionalProperties": False}
    return _one_of("QARequest", QARequest.__doc__, [
        ({"context": {**text, "description": "The paragraph to find the answer in."}, "question": text},
         ["context", "question"]),
        ({"items": {"type": "array", "items": item, "minItems": 1, "maxItems": max_batch,
                    "description": "A batch of {context, question}, answered with one threshold."}}, ["items"]),
    ], QARequest.model_config["json_schema_extra"]["examples"])


BODIES = {"/classify": ("classify", classify_body_schema), "/qa": ("qa", qa_body_schema)}


def _declare_models(op: dict, registry, task: str) -> None:
    """`model`: one of the served models of this route's task; `thresholds`: as many numbers as they have layers."""
    entries = [e for e in registry.entries.values() if e.model.task == task]
    params = {p["name"]: p for p in op.get("parameters", [])}
    if "model" in params and entries:
        params["model"]["schema"] = {"type": "string", "enum": sorted(e.name for e in entries)}
    if "thresholds" in params and entries:
        depths = [len(e.model.stack.depths) for e in entries]
        params["thresholds"].update(style="form", explode=False)
        params["thresholds"]["schema"] = {
            "type": "array", "items": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "minItems": min(depths), "maxItems": max(depths), "examples": [[0.5] * min(depths)]}


def install(app: FastAPI, settings: Settings) -> None:
    """Replace app.openapi with FastAPI's document plus the above (cached once the models are loaded)."""
    default_openapi = app.openapi

    def openapi():
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()  # FastAPI caches it in app.openapi_schema: kept only once models are known
        registry = app.state.registry
        for path, (task, build) in BODIES.items():
            op = schema["paths"].get(path, {}).get("post")
            if op is None:
                continue
            op["requestBody"]["content"]["application/json"]["schema"] = build(settings.max_text_bytes,
                                                                                settings.max_batch)
            if registry.ready:
                _declare_models(op, registry, task)
        app.openapi_schema = schema if registry.ready else None
        return schema

    app.openapi = openapi
