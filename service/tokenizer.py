"""The one tokenizer, shared by training and serving so both see identical tokens.

Lower-cased, PTB-like: contractions are split ("don't" -> "do n't", "it's" -> "it 's"),
punctuation is its own token, HTML line breaks (IMDb's "<br />") are dropped. Already
tokenized text (SST-2, MR) passes through unchanged apart from contraction splitting.
Each token keeps its character span in the original text, for extractive QA.

The regex below is the definition. Text goes through service/_tokenscan.c, a one-pass scanner of the
same pattern that is 5-50x faster than re.finditer (benchmarks/results/tokenizer.md, docs/request-path.md);
tests/test_tokenizer_fast.py proves it token-for-token equal to the regex on every shipped dataset, on
generated strings and on every Unicode code point. A build without the extension uses the regex.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

try:
    from ._tokenscan import ids as _ids
    from ._tokenscan import scan as _scan
except ImportError:  # built without a C compiler: the regex alone
    _scan = _ids = None

TOKENIZER_NAME = "skimserve-ptb-lower-v1"

_TOKEN_RE = re.compile(
    r"""
    (?P<br><br\s*/?>)                       # HTML line break: skipped
  | (?P<tok>
        \w+(?=n't\b)                        # "do" of "don't"
      | n't\b                               # "n't"
      | \w+(?='(?:s|re|ve|ll|d|m)\b)        # "it" of "it's"
      | '(?:s|re|ve|ll|d|m)\b               # "'s"
      | \w+(?:[-.']\w+)*                    # words, hyphenated words, numbers like 3.5
      | \.\.\.                              # ellipsis
      | [^\w\s]                             # any other single symbol
    )
    """,
    re.VERBOSE | re.IGNORECASE,
)


class Token(NamedTuple):  # a tuple: ~5x cheaper to build than a frozen dataclass, same attributes
    text: str
    start: int  # character offset in the original (NFC-normalised) text
    end: int


def normalize(text: str) -> str:
    # NFC keeps offsets meaningful for the usual precomposed text; NFKC would change lengths.
    return unicodedata.normalize("NFC", text)


def regex_tokenize_with_spans(text: str) -> list[Token]:
    """The definition (and the path of a build without the extension)."""
    text = normalize(text)
    return [Token(m.group("tok").lower(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text) if m.group("tok")]


class Tokens(Sequence):
    """The scanner's tokens: the words and an (n, 2) array of spans, a Token built only when one is read
    (a request that does not ask for an explanation never builds them)."""

    __slots__ = ("words", "spans")

    def __init__(self, words: list[str], spans: np.ndarray):
        self.words, self.spans = words, spans

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Tokens(self.words[i], self.spans[i])
        a, b = self.spans[i].tolist()
        return Token(self.words[i], a, b)

    def __iter__(self):
        return map(Token, self.words, *self.spans.T.tolist()) if self.words else iter(())

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def tokenize_with_spans(text: str) -> Sequence[Token]:
    if _scan is not None:
        if not text.isascii():  # (ASCII is NFC already)
            text = normalize(text)
        words, spans = _scan(text)
        return Tokens(words, np.frombuffer(spans, np.int32).reshape(-1, 2))
    return regex_tokenize_with_spans(text)


def words_of(tokens: Sequence[Token] | list[str]) -> list[str]:
    if isinstance(tokens, Tokens):
        return tokens.words
    return [t if isinstance(t, str) else t.text for t in tokens]


def ids_of(words: list[str], index: dict[str, int], unk: int) -> np.ndarray:
    """int64 vocabulary ids of the words (unk for a word not in index): one C loop when compiled."""
    if _ids is not None and type(words) is list and type(index) is dict:
        return np.frombuffer(_ids(words, index, unk), np.int64)
    get = index.get
    return np.array([get(w, unk) for w in words], dtype=np.int64).reshape(-1)


def tokenize(text: str) -> list[str]:
    if _scan is not None:
        return _scan(text if text.isascii() else normalize(text))[0]
    return [t.text for t in regex_tokenize_with_spans(text)]
