"""The compiled ASCII scanner (service/_tokenscan.c) against the tokenizer's definition, the regex.

Token for token (text, start, end) on every text of every split of every shipped dataset, and on
generated strings built from the characters the pattern treats specially. Training and serving must
keep seeing the same tokens, so any difference fails.
"""
from __future__ import annotations

import json
import random

import pytest

from service import tokenizer as T

pytestmark = pytest.mark.skipif(T._scan is None, reason="service._tokenscan was not built")


def _same(text: str) -> bool:
    return list(T.tokenize_with_spans(text)) == T.regex_tokenize_with_spans(text)


def _dataset_texts():
    from training import data, squad

    root = data.data_dir()
    if not root.is_dir():
        pytest.skip(f"no data under {root}")
    for dataset in sorted(data.LOADERS):
        for split in ("train", "dev", "test"):
            for ex in data.load(dataset, split):
                yield f"{dataset}/{split}", ex.text
    for split in ("train", "dev", "test"):
        with open(squad.split_path(split), encoding="utf-8") as f:
            doc = json.load(f)
        for article in doc["data"]:
            for para in article["paragraphs"]:
                yield f"squad/{split}", para["context"]
                for qa in para["qas"]:
                    yield f"squad/{split}", qa["question"]


def test_scanner_equals_regex_on_every_shipped_dataset():
    checked, ascii_texts, bad = 0, 0, []
    for where, text in _dataset_texts():
        checked += 1
        if text.isascii():
            ascii_texts += 1
            words, _ = T._scan(text)
            if not _same(text) or words != T.tokenize(text) or words != [t.text for t in T.regex_tokenize_with_spans(text)]:
                bad.append((where, text[:80]))
    assert checked > 80_000 and ascii_texts > 0.9 * checked, (checked, ascii_texts)
    assert not bad, f"{len(bad)} texts tokenized differently, e.g. {bad[:3]}"


# Everything the pattern treats specially: word characters next to contraction letters, the joiners
# - . ', the <br /> tag, ellipses, underscores, digits and every ASCII space class (\x1c-\x1f included).
ALPHABET = list("aAnNtTsSdDmMrReEvVlLbBxX0_'-./<> \t\n\x0b\x0c\r\x1c\x1f!?,;\"")
CHUNKS = ["n't", "N'T", "'s", "'re", "'ve", "'ll", "'d", "'m", "<br />", "<BR/>", "<br>", "<br  /", "...", "..",
          "don't", "can't", "isn't", "it's", "o'neil", "3.5", "rock-n-roll", "_n't", "n'tx", "'sx"]


@pytest.mark.parametrize("seed", range(4))
def test_scanner_equals_regex_on_generated_strings(seed):
    rng = random.Random(seed)
    for _ in range(5000):
        parts = [rng.choice(CHUNKS) if rng.random() < 0.3 else rng.choice(ALPHABET) for _ in range(rng.randint(0, 24))]
        text = "".join(parts)
        assert _same(text), repr(text)


def test_every_ascii_character_alone_and_between_words():
    for c in map(chr, range(128)):
        for text in (c, f"a{c}b", f"n{c}t", f"x'{c}", f"{c}n't", f"<br{c}>"):
            assert _same(text), repr(text)


def test_non_ascii_text_takes_the_regex_path():
    text = "Caf\u00e9 don't \u00e9t\u00e9"  # the fast path refuses it; the public functions still agree
    with pytest.raises(ValueError):
        T._scan(text)
    assert list(T.tokenize_with_spans(text)) == T.regex_tokenize_with_spans(text)
    assert T.tokenize(text) == ["caf\u00e9", "do", "n't", "\u00e9t\u00e9"]


def test_tokens_sequence_behaves_like_a_list_of_tokens():
    toks = T.tokenize_with_spans("It's <br /> fine...")
    assert isinstance(toks, T.Tokens)
    assert list(toks) == [T.Token("it", 0, 2), T.Token("'s", 2, 4), T.Token("fine", 12, 16), T.Token("...", 16, 19)]
    assert toks[1] == T.Token("'s", 2, 4) and toks[-1].end == 19 and len(toks[1:3]) == 2
    assert list(T.tokenize_with_spans("   ")) == [] and T.tokenize("") == []
