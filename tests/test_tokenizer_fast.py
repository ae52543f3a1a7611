"""The compiled scanner (service/_tokenscan.c) against the tokenizer's definition, the regex.

Token for token (text, start, end) on every text of every split of every shipped dataset, on generated
strings built from the characters the pattern treats specially, and on every Unicode code point in the
contexts where the pattern looks at a character. Training and serving must
keep seeing the same tokens, so any difference fails.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

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
    checked, other_texts, bad = 0, 0, []
    for where, text in _dataset_texts():
        checked += 1
        other_texts += not text.isascii()
        if not _same(text) or T.tokenize(text) != [t.text for t in T.regex_tokenize_with_spans(text)]:
            bad.append((where, text[:80]))
    assert checked > 80_000 and other_texts > 1000, (checked, other_texts)  # both paths of the C code
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


# Where the pattern looks at a character: as a word character, a space, a symbol, next to the joiners,
# and as each case-insensitive literal (n't, 's 're 've 'll 'd 'm, <br>).
CONTEXTS = ("{c}", "a{c}b", "x{c}'t", "xn'{c}", "x'{c}", "x'{c}e", "x'{c}l", "<{c}r>", "<b{c}>", "<br{c}>",
            "a.{c}", "a-{c}", "{c}...", "x'{c}x", "{c}n't")


def _code_points(lo: int, hi: int):
    return (chr(i) for i in range(lo, hi) if not 0xD800 <= i <= 0xDFFF)  # lone surrogates: refused before


def test_every_basic_plane_code_point_in_every_context():
    bad = []
    for c in _code_points(0, 0x10000):
        text = " ".join(ctx.format(c=c) for ctx in CONTEXTS)
        if not _same(text):
            bad.append(hex(ord(c)))
    assert not bad, f"{len(bad)} code points tokenized differently, e.g. {bad[:10]}"


def test_every_other_code_point_alone_and_in_words():
    for lo in range(0x10000, 0x110000, 0x10000):  # a plane at a time: one text of its characters
        step = 1 if lo in (0x10000, 0x20000, 0x30000, 0xE0000) else 61  # planes 4-13 and 15-16: unassigned or private
        chars = [chr(i) for i in range(lo, lo + 0x10000, step)]
        for text in (" ".join(chars), "a".join(chars)):
            assert _same(text), hex(lo)


def test_non_ascii_text_is_scanned_after_nfc():
    text = "Cafe\u0301 don't \u00e9t\u00e9 \u017fo 'S \u0130stanbul"  # decomposed e+accent, long s, dotted I
    assert list(T.tokenize_with_spans(text)) == T.regex_tokenize_with_spans(text)
    assert T.tokenize(text) == ["caf\u00e9", "do", "n't", "\u00e9t\u00e9", "\u017fo", "'s", "i\u0307stanbul"]


def test_tokens_sequence_behaves_like_a_list_of_tokens():
    toks = T.tokenize_with_spans("It's <br /> fine...")
    assert isinstance(toks, T.Tokens)
    assert list(toks) == [T.Token("it", 0, 2), T.Token("'s", 2, 4), T.Token("fine", 12, 16), T.Token("...", 16, 19)]
    assert toks[1] == T.Token("'s", 2, 4) and toks[-1].end == 19 and len(toks[1:3]) == 2
    assert list(T.tokenize_with_spans("   ")) == [] and T.tokenize("") == []


def test_compiled_vocabulary_lookup_equals_the_python_one():
    """ids_of in C (the request path) against a dict lookup per word, on a shipped vocabulary: known words,
    unknown ones, the empty text."""
    import numpy as np

    from conftest import real_sentences
    from service import tokenizer as tk

    if tk._ids is None:
        pytest.skip("service._tokenscan not built")
    vocab = (Path(__file__).resolve().parent.parent / "models" / "sst2-skim" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    index = {w: i for i, w in enumerate(vocab) if w}
    texts = real_sentences("sst2", 300) + ["zzzunknownzzz qqq the the", ""]
    for text in texts:
        words = tk.tokenize(text)
        expected = np.array([index.get(w, 1) for w in words], dtype=np.int64)
        got = tk.ids_of(words, index, 1)
        assert got.dtype == np.int64 and got.tolist() == expected.tolist(), text


def test_vocabulary_scan_equals_tokens_then_dict_lookup():
    """Vocabulary.tokenize (text -> spans + ids in one C pass over the compact table) against the
    definition: the regex's tokens, then the dict; on every shipped model's vocabulary, real texts
    (ASCII and not), unknown words, and a vocabulary with a repeated word (the last id wins)."""
    import numpy as np

    from conftest import real_sentences

    models = Path(__file__).resolve().parent.parent / "models"
    texts = (real_sentences("sst2", 200) + real_sentences("imdb", 50) +
             ["zzzunknownzzz the THE The", "", "   ", "Caf\u00e9 \u00e9t\u00e9 na\u00efve don't \u017fo"])
    vocabularies = {d.name: (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
                    for d in sorted(models.iterdir()) if (d / "vocab.txt").exists()}
    vocabularies["repeated"] = ["<pad>", "<unk>", "the", "film", "the"]
    assert len(vocabularies) > 3
    for name, words in vocabularies.items():
        vocab = T.Vocabulary(words, "<unk>")
        for text in texts:
            toks = vocab.tokenize(text)
            expected = T.regex_tokenize_with_spans(text)
            assert list(toks) == expected, (name, text[:60])
            want = [vocab.index.get(t.text, vocab.unk_id) for t in expected]
            assert vocab.ids(toks).tolist() == want, (name, text[:60])
            assert vocab.ids([t.text for t in expected]).tolist() == want  # the dict path for word lists
    repeated = T.Vocabulary(vocabularies["repeated"], "<unk>")
    assert repeated.ids(repeated.tokenize("the film")).tolist() == [4, 3]  # the C table: the last id wins
    with pytest.raises(KeyError):
        T.Vocabulary(["<pad>", "the"], "<unk>")


def test_vocabulary_table_finds_long_words_and_words_sharing_a_head():
    """The table keeps each word's first 11 bytes in its entry: words longer than that, up to and past 255
    bytes, and words that share their first 11 bytes with others or with an unknown word, are each found as
    themselves (ids against the dict, one token at a time and all in one text)."""
    from service import tokenizer as tk

    if tk._scan_ids is None:
        pytest.skip("service._tokenscan not built")
    heads = ["abcdefghijk", "abcdefghij", "zz"]
    words = ["<pad>", "<unk>"] + [h + "x" * k for h in heads for k in (0, 1, 2, 5, 244, 245, 246, 300)]
    words += ["caf\u00e9" * 4, "\u00e9t\u00e9" * 6]  # multi-byte UTF-8 across the 11-byte head
    vocab = T.Vocabulary(words, "<unk>")
    unknown = ["abcdefghijkq", "abcdefghijkxxxy", "abcdefghij" + "x" * 301, "zzx" * 3]
    for word in words[2:] + unknown:
        assert vocab.ids(vocab.tokenize(word)).tolist() == [vocab.index.get(word, vocab.unk_id)], word[:20]
    text = " ".join(words[2:] + unknown)
    assert vocab.ids(vocab.tokenize(text)).tolist() == [vocab.index.get(w, vocab.unk_id) for w in words[2:] + unknown]


def test_gather_equals_fancy_indexing():
    import numpy as np

    rng = np.random.default_rng(0)
    table = rng.standard_normal((1000, 50)).astype(np.float32)
    for n in (0, 1, 7, 500):
        ids = rng.integers(0, 1000, n).astype(np.int64)
        out = T.embed_rows(table, ids)
        assert out.shape == (n, 50) and out.dtype == np.float32 and np.array_equal(out, table[ids])
    with pytest.raises(IndexError):
        T.embed_rows(table, np.array([1000], dtype=np.int64))
    with pytest.raises(IndexError):
        T.embed_rows(table, np.array([-1], dtype=np.int64))
