"""The one tokenizer, shared by training and serving so both see identical tokens.

Lower-cased, PTB-like: contractions are split ("don't" -> "do n't", "it's" -> "it 's"),
punctuation is its own token, HTML line breaks (IMDb's "<br />") are dropped. Already
tokenized text (SST-2, MR) passes through unchanged apart from contraction splitting.
Each token keeps its character span in the original text, for extractive QA.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offset in the original (NFC-normalised) text
    end: int


def normalize(text: str) -> str:
    # NFC keeps offsets meaningful for the usual precomposed text; NFKC would change lengths.
    return unicodedata.normalize("NFC", text)


def tokenize_with_spans(text: str) -> list[Token]:
    text = normalize(text)
    return [Token(m.group("tok").lower(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text) if m.group("tok")]


def tokenize(text: str) -> list[str]:
    return [t.text for t in tokenize_with_spans(text)]
