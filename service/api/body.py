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
from collections.abc import AsyncIterator, Callable

from fastapi import Request

from .errors import ApiError

JSON_TYPES = ("application/json",)
MAX_INT_DIGITS = 4000  # Python refuses int() of more than 4,300 digits with a ValueError (a 500 before this)


def _parse_int(digits: str):
    # no field of any request body is a number this long: keep it as a float so validation refuses it (422)
    return int(digits) if len(digits) <= MAX_INT_DIGITS else float("inf")


DECODER = json.JSONDecoder(parse_int=_parse_int)
PARSE_INLINE_BYTES = 64 * 1024


class TextRunGuard:
    """Cheap streaming lower bound on the longest JSON string of a body, so one huge string is refused
    after about `max_text_bytes` of it instead of after the whole body.

    Per chunk, at C speed (bytes.replace/count/rfind): escaped backslashes (two bytes) are dropped, then an
    escaped quote is no string end, so the parity of the remaining quotes says whether the body is inside a
    string. Inside one, a run of R bytes since its opening quote decodes to at least R minus what its
    escapes save (\\uXXXX: 6 bytes to at least 1; any other escape: 2 bytes to 1). Bytes outside strings
    (numbers, brackets, whitespace) are never counted: those bodies fail later, with their own 400/422.
    Checked at chunk granularity: a string that opens and closes inside one chunk (so smaller than a
    socket read) is left to the exact per-text check, which still runs on the parsed texts."""

    def __init__(self, max_text_bytes: int):
        self.limit = max_text_bytes
        self.in_string = False
        self.run = self.escapes = 0  # bytes since the last quote; and what escapes there save on decoding
        self.carry = b""  # a trailing unpaired backslash: its escaped byte comes in the next chunk

    @staticmethod
    def _saved(data: bytes, start: int = 0, end: int | None = None) -> int:
        # \uXXXX: 6 bytes -> at least 1; every other escape: 2 bytes -> 1
        return data.count(b"\\", start, end) + 4 * data.count(b"\\u", start, end)

    def feed(self, chunk: bytes) -> bool:
        """False once the body certainly holds a string over the limit."""
        data = (self.carry + chunk).replace(b"\\\\", b"")
        self.carry = b""
        if data.endswith(b"\\"):
            data, self.carry = data[:-1], b"\\"
        data = data.replace(b'\\"', b"\\~")  # an escaped quote neither opens nor closes a string
        first = data.find(b'"')
        if first < 0:
            self.run += len(data)
            self.escapes += self._saved(data)
            return not self.in_string or self.run - self.escapes <= self.limit
        if self.in_string and self.run + first - self.escapes - self._saved(data, 0, first) > self.limit:
            return False  # the string open at the chunk's start, ended by its first quote, was over
        last = data.rfind(b'"')
        self.in_string ^= data.count(b'"') % 2 == 1
        self.run, self.escapes = len(data) - last - 1, self._saved(data, last + 1)
        return not self.in_string or self.run - self.escapes <= self.limit


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


def check_content_type(content_type: str | None) -> None:
    """415 unless the content type is JSON in UTF-8."""
    if not is_json(content_type or ""):
        raise ApiError(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json' "
                       f"(got {repr(content_type) if content_type else 'none'})")


def check_declared_length(declared: str | None, max_bytes: int) -> None:
    """413 for a Content-Length over the body limit, before any byte is read."""
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes; the limit is {max_bytes}")


async def collect_body(chunks: AsyncIterator[bytes], max_bytes: int, max_text_bytes: int | None = None) -> bytearray:
    """The body from its chunks, refused (413) as soon as it is over the body limit or certainly holds a
    string over the text limit."""
    body = bytearray()
    guard = TextRunGuard(max_text_bytes) if max_text_bytes else None
    async for chunk in chunks:
        body += chunk
        if guard is not None and not guard.feed(chunk):
            raise ApiError(413, "text_too_large", f"a text of the body is over {max_text_bytes} bytes (UTF-8); "
                                                  f"the limit is {max_text_bytes}")
        if len(body) > max_bytes:
            raise ApiError(413, "body_too_large", f"body over {max_bytes} bytes")
    return body


async def parse_body(body: bytes | bytearray, parse: Callable[[object], object] | None = None) -> object:
    """decode_json, on a worker thread for a body over PARSE_INLINE_BYTES: the event loop (health,
    shedding) never waits behind a big parse."""
    if len(body) > PARSE_INLINE_BYTES:
        return await asyncio.to_thread(decode_json, body, parse)
    return decode_json(body, parse)


async def read_json(request: Request, max_bytes: int, max_text_bytes: int | None = None,
                    parse: Callable[[object], object] | None = None) -> object:
    """The body of a starlette Request as parsed JSON (or parse(parsed), e.g. a pydantic validation, done
    on the same thread). A raw-ASGI route does the same with its own chunk iterator:
    check_content_type, check_declared_length, collect_body, parse_body."""
    check_content_type(request.headers.get("content-type"))
    check_declared_length(request.headers.get("content-length"), max_bytes)
    body = await collect_body(request.stream(), max_bytes, max_text_bytes)
    return await parse_body(body, parse)


def decode_json(body: bytes | bytearray, parse: Callable[[object], object] | None = None) -> object:
    """UTF-8 JSON bytes -> value (400 for empty, non-UTF-8, malformed or too deeply nested), then parse(value)."""
    if not body.strip():
        raise ApiError(400, "malformed_json", "the body is empty; expected a JSON object")
    try:
        # tolerate a BOM; reject every other non-UTF-8 byte (= decode("utf-8-sig"), same error offsets)
        text = (body[3:] if body[:3] == b"\xef\xbb\xbf" else body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding",
                       f"the body is not valid UTF-8 (byte {exc.start}: {body[exc.start:exc.start + 1]!r})"
                       ) from None
    try:
        value = DECODER.decode(text)  # = json.loads(text, parse_int=_parse_int), without a decoder per call
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                              f"column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    return parse(value) if parse is not None else value
