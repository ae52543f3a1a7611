"""Reading a JSON request body ourselves, so each way a body can be wrong gets its own clear 4xx
(FastAPI's built-in parsing folds these into one generic error): wrong content type 415, too big 413
(checked while streaming, before the whole body is in memory), not UTF-8 400, not JSON 400.

The per-text limit is enforced while streaming too (`TextRunGuard`), so a body of one huge string is
refused after about `max_text_bytes` bytes instead of being buffered and parsed whole, and so is the
batch limit (`BatchGuard`): a batch over it is refused as its first item past the limit begins. Bodies over
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
        data, self.carry, escaped = neutralise_escapes(self.carry, chunk)
        saved = self._saved if escaped else _nothing_saved
        first = data.find(b'"')
        if first < 0:
            self.run += len(data)
            self.escapes += saved(data)
            return not self.in_string or self.run - self.escapes <= self.limit
        if self.in_string and self.run + first - self.escapes - saved(data, 0, first) > self.limit:
            return False  # the string open at the chunk's start, ended by its first quote, was over
        last = data.rfind(b'"')
        self.in_string ^= data.count(b'"') % 2 == 1
        self.run, self.escapes = len(data) - last - 1, saved(data, last + 1)
        return not self.in_string or self.run - self.escapes <= self.limit


def _nothing_saved(data: bytes, start: int = 0, end: int | None = None) -> int:
    return 0


def neutralise_escapes(carry: bytes, chunk: bytes) -> tuple[bytes, bytes, bool]:
    """(data, carry, escaped): the chunk (after `carry`, a trailing unpaired backslash of the chunk before)
    with escaped backslashes dropped and escaped quotes made no quote, the new carry, and whether it had
    any backslash. A chunk without one (most text) is handed back as it is: one memchr pass, not the two
    substring passes (bytes.replace of a 2-byte pattern runs at about 1.3 GB/s: for 64 bodies at the
    limit, most of the time their bodies took to read)."""
    if not carry and b"\\" not in chunk:
        return chunk, b"", False
    data = (carry + chunk).replace(b"\\\\", b"")
    carry = b""
    if data.endswith(b"\\"):
        data, carry = data[:-1], b"\\"
    return data.replace(b'\\"', b"\\~"), carry, True  # an escaped quote neither opens nor closes a string


BATCH_KEYS = {"/classify": "texts", "/qa": "items"}  # the batch array of each model route's body


class BatchGuard:
    """Streaming count of the items of a body's batch (the array under the top-level `key`: "texts" of
    /classify, "items" of /qa), so a batch over `max_items` is refused (413 batch_too_large) as the item
    after the limit begins, instead of after the whole body was read and parsed: 64 bodies at the body
    limit that are batches of maximal texts were read and parsed whole (twice, when the fast path handed
    them to the route), the last of them waited seconds for the body budget and most were shed with 503
    (issue 20).

    Per chunk, at C speed, escapes are neutralised as in TextRunGuard and the quotes found; only what lies
    outside strings (brackets, commas, colons, scalars: a few bytes an item in any body the routes take)
    is walked byte by byte, and only a short string at depth 1 (a key) is kept. Past OUTSIDE_BUDGET bytes
    of such structure (a body of numbers, say) the guard stops counting; the exact check on the parsed
    body still runs. Like the other streaming limits it can answer 413 for a body that would also have
    failed otherwise (malformed JSON, wrong item types): limits first."""

    KEY_MAX = 32
    OUTSIDE_BUDGET = 256 * 1024

    def __init__(self, key: str, max_items: int):
        self.key, self.limit = key.encode(), max_items
        self.carry = b""
        self.in_string = False
        self.depth = 0
        self.string: bytes | None = b""  # the open string's bytes while it is short and at depth 1
        self.last = None  # the last string closed at depth 1 (a key, when a ':' follows)
        self.value_key = None  # the key whose value is next at depth 1
        self.in_batch = self.expecting = False
        self.items = self.spent = 0
        self.off = False

    def _item_starts(self) -> bool:
        """A value begins here; True once it is an item past the limit."""
        if self.in_batch and self.expecting and self.depth == 2:
            self.expecting = False
            self.items += 1
            return self.items > self.limit
        return False

    def _outside(self, part: bytes) -> bool:
        part = part.translate(None, b" \t\r\n")
        self.spent += len(part)
        if self.spent > self.OUTSIDE_BUDGET:
            self.off = True
            return True
        for c in part:
            if c == 0x2C:  # ,
                if self.depth == 2 and self.in_batch:
                    self.expecting = True
                elif self.depth == 1:
                    self.value_key = None
            elif c == 0x3A:  # :
                if self.depth == 1:
                    self.value_key = self.last
            elif c == 0x7B or c == 0x5B:  # { [
                if self._item_starts():
                    return False
                self.depth += 1
                if self.depth == 2 and c == 0x5B and self.value_key == self.key:
                    self.in_batch, self.expecting, self.items = True, True, 0
            elif c == 0x7D or c == 0x5D:  # } ]
                self.depth -= 1
                if self.depth < 2:
                    self.in_batch = False
            elif self._item_starts():  # a number, true, false or null
                return False
        return True

    def feed(self, chunk: bytes) -> bool:
        """False once the body's batch certainly holds more than max_items items."""
        if self.off:
            return True
        data, self.carry, _ = neutralise_escapes(self.carry, chunk)
        pos, n = 0, len(data)
        while pos <= n:
            quote = data.find(b'"', pos)
            end = n if quote < 0 else quote
            if self.in_string:
                if self.string is not None and self.depth == 1:
                    self.string = self.string + data[pos:end] if len(self.string) + end - pos <= self.KEY_MAX else None
            elif not self._outside(data[pos:end]):
                return False
            elif self.off:
                return True
            if quote < 0:
                return True
            if self.in_string:  # the string closes
                self.in_string = False
                if self.depth == 1:
                    self.last = self.string
            else:  # a string opens: a value (an item, maybe) or a key
                if self._item_starts():
                    return False
                self.in_string, self.string = True, b""
            pos = quote + 1
        return True


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


async def collect_body(chunks: AsyncIterator[bytes], max_bytes: int, max_text_bytes: int | None = None,
                       batch: tuple[str, int] | None = None) -> bytearray:
    """The body from its chunks, refused (413) as soon as it is over the body limit, certainly holds a
    string over the text limit, or (batch = (key, max_items): BatchGuard) a batch over the batch limit."""
    body = bytearray()
    guard = TextRunGuard(max_text_bytes) if max_text_bytes else None
    items = BatchGuard(*batch) if batch is not None else None
    async for chunk in chunks:
        body += chunk
        if guard is not None and not guard.feed(chunk):
            raise ApiError(413, "text_too_large", f"a text of the body is over {max_text_bytes} bytes (UTF-8); "
                                                  f"the limit is {max_text_bytes}")
        if items is not None and not items.feed(chunk):
            raise ApiError(413, "batch_too_large", f"over {items.limit} items in one request; the limit is "
                                                   f"{items.limit}")
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
                    parse: Callable[[object], object] | None = None, batch: tuple[str, int] | None = None) -> object:
    """The body of a starlette Request as parsed JSON (or parse(parsed), e.g. a pydantic validation, done
    on the same thread). A raw-ASGI route does the same with its own chunk iterator:
    check_content_type, check_declared_length, collect_body, parse_body."""
    check_content_type(request.headers.get("content-type"))
    check_declared_length(request.headers.get("content-length"), max_bytes)
    body = await collect_body(request.stream(), max_bytes, max_text_bytes, batch)
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
