"""Query-string checks shared by every route implementation (the FastAPI routes in service/api/routes.py
and any raw-ASGI route): strict numbers, per-layer thresholds, no repeated parameter. Each raises
ApiError with the same status and code whichever implementation calls it."""
from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl

from pydantic import BeforeValidator, Field

from .errors import ApiError

# A plain decimal: Python's float() also reads '0_5' (as 5), 'inf', 'nan', '0x1p-1' (float.fromhex aside)
# and ' 0.5 ', none of which a client means as a threshold.
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def plain_number(value):
    """The value unchanged if it is not text or is a plain decimal; else ValueError (pydantic: 422)."""
    if isinstance(value, str) and not NUMBER.fullmatch(value):
        raise ValueError(f"expected a number written like 0.5 (got {value!r})")
    return value


# FastAPI's query type: the bounds on the number itself (not on the Optional around it), so the schema
# says minimum/maximum.
Threshold = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), BeforeValidator(plain_number)]


def parse_threshold(raw: str | None) -> float | None:
    """`threshold=` as a raw route reads it: None if absent, else a plain number in [0, 1] (422 otherwise)."""
    if raw is None:
        return None
    try:
        value = float(plain_number(raw))
    except ValueError:
        raise ApiError(422, "invalid_threshold", f"threshold={raw!r}: expected a number written like 0.5") from None
    if not 0.0 <= value <= 1.0:
        raise ApiError(422, "invalid_threshold", f"threshold={raw!r}: must be in [0, 1]")
    return value


def parse_thresholds(raw: str | None) -> list[float] | None:
    """`thresholds=0.5,0.3` (one per layer): None if absent, else plain numbers in [0, 1] (422 otherwise)."""
    if raw is None:
        return None
    try:
        values = [float(plain_number(v)) for v in raw.split(",")]
    except ValueError:
        raise ApiError(422, "invalid_threshold", f"thresholds={raw!r}: expected numbers separated by commas") from None
    if not all(0.0 <= v <= 1.0 for v in values):  # NaN fails this too
        raise ApiError(422, "invalid_threshold", f"thresholds={raw!r}: every value must be in [0, 1]")
    return values


def repeated_parameter(query_string: bytes | str) -> str | None:
    """The first query parameter given more than once (frameworks keep the last silently), or None."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    seen = set()
    for key, _ in parse_qsl(query_string, keep_blank_values=True):
        if key in seen:
            return key
        seen.add(key)
    return None


def query_params(query_string: bytes | str) -> dict[str, str]:
    """The query string as one value per name; 422 `repeated_parameter` for a name given twice."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    repeated = repeated_parameter(query_string)
    if repeated is not None:
        raise ApiError(422, "repeated_parameter", f"query parameter '{repeated}' given more than once")
    return dict(parse_qsl(query_string, keep_blank_values=True))
