"""SQuAD loader (our split files and the official format) and the official v1.1 EM/F1."""
import json
import os

import pytest

from training.data import data_dir
from training.squad import best_span, char_to_token_span, load_squad, span_text
from training.squad_metric import evaluate, f1_score, normalize_answer
from service.tokenizer import tokenize_with_spans

HAVE_DATA = (data_dir() / "squad" / "train.json").is_file()


@pytest.mark.skipif(not HAVE_DATA, reason="no ../shared/data/squad")
def test_split_counts_and_spans():
    counts = {s: len(load_squad(s)) for s in ("train", "dev", "test")}
    assert counts == {"train": 8179, "dev": 1311, "test": 1080}
    ex = load_squad("dev")
    assert all(e.span is not None for e in ex)
    aligned = sum(span_text(e.context, e.context_tokens, *e.span) == e.answers[0][0] for e in ex)
    assert aligned / len(ex) > 0.95


def test_official_format_loads_unchanged(tmp_path):
    ctx = "The Normans were in Normandy in the 10th and 11th centuries."
    doc = {"version": "1.1", "data": [{"title": "Normans", "paragraphs": [{"context": ctx, "qas": [
        {"id": "q1", "question": "When were the Normans in Normandy?",
         "answers": [{"text": "10th and 11th centuries", "answer_start": 35},
                     {"text": "in the 10th and 11th centuries", "answer_start": 28}]},
        {"id": "q2", "question": "Who?", "answers": [{"text": "orman", "answer_start": 5}]}]}]}]}
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    ex = load_squad(path)
    assert [e.id for e in ex] == ["q1", "q2"]
    assert ex[0].answers == [("10th and 11th centuries", 35), ("in the 10th and 11th centuries", 28)]
    assert span_text(ctx, ex[0].context_tokens, *ex[0].span) == "10th and 11th centuries"
    # not on token boundaries: the tokens overlapping the answer characters
    assert span_text(ctx, ex[1].context_tokens, *ex[1].span) == "Normans"


def test_char_to_token_span_partial_overlap():
    toks = tokenize_with_spans("in the mid-1990s, prices rose")
    i, j = char_to_token_span(toks, 11, 16)  # "1990s" inside "mid-1990s"
    assert toks[i].text == toks[j].text == "mid-1990s"
    assert char_to_token_span(toks, 100, 105) is None


def test_metric_hand_examples():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple a day") == "apple day"
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(2 * (2 / 2) * (2 / 3) / (2 / 2 + 2 / 3))
    r = evaluate({"a": "Denver Broncos", "b": "the 1990s", "c": "nothing"},
                 {"a": ["Denver Broncos", "Broncos"], "b": ["1990s", "in the 1990s"], "c": ["Paris"]})
    assert r["exact_match"] == pytest.approx(200 / 3)
    assert r["f1"] == pytest.approx(200 / 3)
    assert evaluate({}, {"x": ["a"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_best_span():
    s = [0.0, 5.0, 0.0, 0.0]
    e = [3.0, 0.0, 0.0, 4.0]
    assert best_span(s, e) == (1, 3)
    assert best_span(s, e, max_answer_tokens=2) == (1, 1)  # j < i + 2
    assert best_span([0.0, 5.0], [9.0, 0.0]) == (0, 0)      # j >= i: end 0 cannot follow start 1
