"""BERT's uncased WordPiece tokenizer (the one MiniLM was trained with), in plain Python.

Used by the MiniLM teacher only (training/minilm_teacher.py), so a GPU machine without the `tokenizers`
package tokenizes exactly as the teacher's own tokenizer.json does; tests/test_minilm_teacher.py checks it
against `tokenizers` on real sentences. Steps as BERT's BasicTokenizer + WordpieceTokenizer: drop control
characters, lower-case, strip accents, split on whitespace and punctuation (CJK characters alone), then
greedy longest-match-first word pieces, [UNK] for a word with no split or longer than 100 characters.
Where `tokenizers` (Rust) departs from Google's Python BERT, this follows `tokenizers`: private-use characters
(Co) are dropped, lower-casing is per character (no final-sigma rule), and the CJK Extension E block is taken
from U+2B920. Known remaining difference: characters added or recategorised after the Unicode version of
`tokenizers`' tables (e.g. Unicode 14's new punctuation and marks) follow Python's unicodedata instead.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

MAX_WORD_CHARS = 100


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT counts every non-letter/number ASCII symbol as punctuation, as well as Unicode P* categories
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF  # 0x2B920: as `tokenizers`
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_words(text: str) -> list[str]:
    """Lower-cased, accent-stripped words and punctuation marks, as BERT's BasicTokenizer."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf", "Co") and ch not in "\t\n\r"):
            continue
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            chars.append(" ")
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    words = []
    # per character, as `tokenizers` lower-cases (str.lower() would turn a word-final Σ into ς, not σ)
    for word in "".join(c.lower() for c in chars).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        current = ""
        for c in word:
            if _is_punctuation(c):
                if current:
                    words.append(current)
                words.append(c)
                current = ""
            else:
                current += c
        if current:
            words.append(current)
    return words


class WordPiece:
    def __init__(self, vocab: list[str]):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.index:
                raise ValueError(f"WordPiece vocabulary lacks {special}")
        self.cls, self.sep, self.unk, self.pad = (self.index[s] for s in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"))
        self.pieces = lru_cache(maxsize=200_000)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return (self.unk,)
        out, covered = self._greedy(word)
        return tuple(out) if covered else (self.unk,)

    def _greedy(self, word: str) -> tuple[list[int], bool]:
        """The greedy longest-match-first pieces of a word and whether they cover it; when not, the pieces
        matched before the walk got stuck (the word is then [UNK])."""
        out, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.index:
                    found = self.index[piece]
                    break
                end -= 1
            if found is None:
                return out, False
            out.append(found)
            start = end
        return out, True

    def used(self, text: str) -> set[int]:
        """[CLS], [SEP], [UNK], [PAD] and every piece the greedy walk matches on this text, also within words that
        end up [UNK]: a vocabulary pruned to these pieces tokenizes the text exactly as this one does (keeping
        only the pieces of the output would let a pruned vocabulary split a word that is [UNK] here)."""
        out = {self.cls, self.sep, self.unk, self.pad}
        for w in basic_words(text):
            if len(w) <= MAX_WORD_CHARS:
                out.update(self._greedy(w)[0])
        return out

    def encode(self, text: str, max_len: int = 128) -> list[int]:
        """[CLS] pieces [SEP], the pieces cut to max_len - 2."""
        ids = [i for w in basic_words(text) for i in self.pieces(w)]
        return [self.cls] + ids[:max_len - 2] + [self.sep]
