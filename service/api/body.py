"""Reading a JSON request body ourselves, so each way a body can be wrong gets its own clear 4xx
(FastAPI's built-in parsing folds these into one generic error): wrong content type 415, too big 413
(checked while streaming, before the whole body is in memory), not UTF-8 400, not JSON 400.

The per-text limit is enforced while streaming too (`TextRunGuard`), so a body of one huge string is
refused after about `max_text_bytes` bytes instead of being buffered and parsed whole. Bodies over
`PARSE_INLINE_BYTES` are parsed on a worker thread, not on the event loop.
"""
from __future__ import annotations

import asyncio
import json

from fastapi import Request

from .errors import ApiError

JSON_TYPES = ("application/json",)
MAX_INT_DIGITS = 4000  # Python refuses int() of more than 4,300 digits with a ValueError (a 500 before this)


def _parse_int(digits: str):
    # no field of any request body is a number this long: keep it as a float so validation refuses it (422)
    return int(digits) if len(digits) <= MAX_INT_DIGITS else float("inf")


PARSE_INLINE_BYTES = 64 * 1024


class TextRunGuard:
    """Cheap streaming lower bound on the longest JSON string of a body.

    A JSON string cannot hold a raw '"', and each escape (at most 6 bytes, starting with a backslash)
    decodes to at least one byte, so a run of R bytes without a quote holding B backslashes decodes to at
    least R - 5*B bytes. When that exceeds the text limit, some string (or a gap between strings, which
    no valid request has) is over it: 413 without reading further. Counting is done with bytes.rfind and
    bytes.count, at C speed; the exact check still runs on the parsed texts."""

    def __init__(self, max_text_bytes: int):
        self.limit = max_text_bytes
        self.run = self.backslashes = 0

    def feed(self, chunk: bytes) -> bool:
        """False once the body certainly holds a string over the limit."""
        last = chunk.rfind(b'"')
        if last >= 0:
            self.run, self.backslashes = len(chunk) - last - 1, chunk.count(b"\\", last + 1)
        else:
            self.run += len(chunk)
            self.backslashes += chunk.count(b"\\")
        return self.run - 5 * self.backslashes <= self.limit + 1


def _is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))):
        return False
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False  # JSON is UTF-8 (RFC 8259); anything else is refused, not guessed
    return True


async def read_json(request: Request, max_bytes: int, max_text_bytes: int | None = None,
                    parse=None) -> object:
    """The body as parsed JSON (or parse(parsed), e.g. a pydantic validation, done on the same thread)."""
    ctype = request.headers.get("content-type", "")
    if not _is_json(ctype):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with 'Content-Type: application/json' (got {repr(ctype) if ctype else 'none'})")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes; the limit is {max_bytes}")
    body = bytearray()
    guard = TextRunGuard(max_text_bytes) if max_text_bytes else None
    async for chunk in request.stream():
        body += chunk
        if guard is not None and not guard.feed(chunk):
            raise ApiError(413, "text_too_large", f"a text of the body is over {max_text_bytes} bytes "
                                                  f"(UTF-8); the limit is {max_text_bytes}")
        if len(body) > max_bytes:
            raise ApiError(413, "body_too_large", f"body over {max_bytes} bytes")
    if not body.strip():
        raise ApiError(400, "malformed_json", "the body is empty; expected a JSON object")
    if len(body) > PARSE_INLINE_BYTES:  # keep the event loop (health, shedding) free of big parses
        return await asyncio.to_thread(_decode, body, parse)
    return _decode(body, parse)


def _decode(body: bytearray, parse=None) -> object:
    try:
        text = bytes(body).decode("utf-8-sig")  # tolerate a BOM; reject every other non-UTF-8 byte
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding",
                       f"the body is not valid UTF-8 (byte {exc.start}: {bytes(body[exc.start:exc.start + 1])!r})"
                       ) from None
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                              f"column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    return parse(value) if parse is not None else value
