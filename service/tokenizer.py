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
    from ._tokenscan import gather as _gather
    from ._tokenscan import ids as _ids
    from ._tokenscan import scan as _scan
    from ._tokenscan import scan_ids as _scan_ids
    from ._tokenscan import vocab_table as _vocab_table
except ImportError:  # built without a C compiler: the regex alone
    _scan = _ids = _scan_ids = _vocab_table = _gather = None

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
    """The scanner's tokens: an (n, 2) array of spans, the words (lower-cased; made from the text only when
    read, if the scanner gave ids instead), and the vocabulary ids of the Vocabulary that scanned them. A
    Token is built only when one is read: a request without an explanation never builds one."""

    __slots__ = ("_words", "spans", "text", "ids", "vocabulary")

    def __init__(self, words: list[str] | None, spans: np.ndarray, text: str | None = None,
                 ids: np.ndarray | None = None, vocabulary: "Vocabulary | None" = None):
        self._words, self.spans, self.text, self.ids, self.vocabulary = words, spans, text, ids, vocabulary

    @property
    def words(self) -> list[str]:
        if self._words is None:  # the scanner's word is the lower-cased slice (ASCII and other text alike)
            text = self.text
            self._words = [text[a:b].lower() for a, b in self.spans.tolist()]
        return self._words

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i):
        if isinstance(i, slice):
            ids = None if self.ids is None else self.ids[i]
            return Tokens(self.words[i], self.spans[i], self.text, ids, self.vocabulary)
        a, b = self.spans[i].tolist()
        return Token(self.words[i], a, b)

    def __iter__(self):
        return map(Token, self.words, *self.spans.T.tolist()) if len(self.spans) else iter(())

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


class Vocabulary:
    """A model's word -> id map: the dict is the definition; the compiled table (service/_tokenscan.c,
    about 1.4 MB in one block for 35k words, one cache line per lookup of a short word, where the dict and
    its str keys spread several MB over the heap) is what a request uses, scanning text straight to ids.
    tests/test_tokenizer_fast.py holds the two equal."""

    def __init__(self, words: list[str], unk: str):
        self.index = {w: i for i, w in enumerate(words)}
        self.unk_id = self.index[unk]  # KeyError: a vocabulary without its unknown-word entry
        self.table = _vocab_table(list(words)) if _vocab_table is not None else None

    def __len__(self) -> int:
        return len(self.index)

    def tokenize(self, text: str) -> Sequence[Token]:
        """The text's tokens (as tokenize_with_spans) carrying their ids in this vocabulary."""
        if self.table is None:
            return tokenize_with_spans(text)
        if not text.isascii():  # (ASCII is NFC already)
            text = normalize(text)
        ids, spans = _scan_ids(text, self.table, self.unk_id)
        return Tokens(None, np.frombuffer(spans, np.int32).reshape(-1, 2), text, np.frombuffer(ids, np.int64), self)

    def ids(self, tokens: Sequence[Token] | list[str]) -> np.ndarray:
        if isinstance(tokens, Tokens) and tokens.vocabulary is self and tokens.ids is not None:
            return tokens.ids
        return ids_of(words_of(tokens), self.index, self.unk_id)


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


def embed_rows(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """table[ids] as a C-contiguous float32 array (the embedding lookup): compiled, with prefetching, for a
    float32 C-contiguous table; numpy's fancy index otherwise."""
    if (_gather is not None and table.dtype == np.float32 and table.ndim == 2 and table.flags.c_contiguous
            and ids.dtype == np.int64 and ids.ndim == 1):
        return np.frombuffer(_gather(table, np.ascontiguousarray(ids), table.shape[1]),
                             np.float32).reshape(len(ids), table.shape[1])
    return np.ascontiguousarray(table[ids], dtype=np.float32)


def tokenize(text: str) -> list[str]:
    if _scan is not None:
        return _scan(text if text.isascii() else normalize(text))[0]
    return [t.text for t in regex_tokenize_with_spans(text)]
