"""Error mapping: every failure leaves as JSON {"detail", "code"[, "errors"]} with the right status.

Client mistakes are 4xx with a reason; overload and not-ready are 503 with Retry-After; only a bug
is a 500 (logged with its traceback, never shown to the client).
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dataplane import InputError
from ..pool import QueueFull
from ..registry import UnknownModel

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"


class ApiError(InputError):
    """An HTTP-level problem (content type, body, readiness), optionally with response headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, code, message)
        self.headers = headers


def error_response(status: int, code: str, detail: str, errors: list | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def validation_errors(errors) -> tuple[str, str, list[dict]]:
    """Pydantic/FastAPI errors -> (code, one-line detail, list without echoing the input back)."""
    items = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
             for e in errors]
    code = "invalid_threshold" if any(i["loc"] == ["query", "threshold"] for i in items) else "invalid_request"
    if code == "invalid_request" and any(i["loc"] == ["query", "budget"] for i in items):
        code = "invalid_budget"
    detail = "; ".join(f"{'.'.join(i['loc'])}: {i['msg']}" for i in items) or "invalid request"
    return code, detail, items


STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                415: "unsupported_media_type", 503: "unavailable"}


def install(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input(_req: Request, exc: InputError):
        return error_response(exc.status, exc.code, exc.message, headers=getattr(exc, "headers", None))

    @app.exception_handler(UnknownModel)
    async def _unknown_model(_req: Request, exc: UnknownModel):
        return error_response(404, "unknown_model", str(exc))

    @app.exception_handler(QueueFull)
    async def _queue_full(_req: Request, exc: QueueFull):
        return error_response(503, "overloaded", f"server busy: {exc}; retry later",
                              headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError):
        code, detail, items = validation_errors(exc.errors())
        return error_response(422, code, detail, items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(req: Request, exc: Exception):
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return error_response(500, "internal_error", "internal server error (logged)")
