"""Reading a JSON request body ourselves, so each way a body can be wrong gets its own clear 4xx
(FastAPI's built-in parsing folds these into one generic error): wrong content type 415, too big 413
(checked while streaming, before the whole body is in memory), not UTF-8 400, not JSON 400."""
from __future__ import annotations

import json

from fastapi import Request

from .errors import ApiError

JSON_TYPES = ("application/json",)
MAX_INT_DIGITS = 4000  # Python refuses int() of more than 4,300 digits with a ValueError (a 500 before this)


def _parse_int(digits: str):
    # no field of any request body is a number this long: keep it as a float so validation refuses it (422)
    return int(digits) if len(digits) <= MAX_INT_DIGITS else float("inf")


def is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))):
        return False
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False  # JSON is UTF-8 (RFC 8259); anything else is refused, not guessed
    return True


async def read_json(request: Request, max_bytes: int) -> object:
    ctype = request.headers.get("content-type", "")
    if not is_json(ctype):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with 'Content-Type: application/json' (got {repr(ctype) if ctype else 'none'})")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes; the limit is {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "body_too_large", f"body over {max_bytes} bytes")
    return decode_json(bytes(body))


def decode_json(body: bytes) -> object:
    """A request body's bytes -> the JSON value, or the ApiError that says what is wrong with them."""
    if not body.strip():
        raise ApiError(400, "malformed_json", "the body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8-sig")  # tolerate a BOM; reject every other non-UTF-8 byte
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding",
                       f"the body is not valid UTF-8 (byte {exc.start}: {body[exc.start:exc.start + 1]!r})"
                       ) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                              f"column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
