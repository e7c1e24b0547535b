"""The supervised fine-tune: triples from BEIR pairs and mined negatives, MNRL through the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rag.cli import app
from rag.core.errors import ConfigError
from rag.training.finetune import FinetuneSettings, check_out_dir, finetune, triplet_columns
from rag.training.pairs import TrainingPair

TOPICS = {
    "d1": ("Yeast", "yeast ferments sugar and the dough rises in a warm kitchen"),
    "d2": ("Tides", "the moon pulls the ocean and makes the tides rise and fall"),
    "d3": ("Bees", "bees dance to tell the hive where the flowers are"),
    "d4": ("Lava", "volcanoes erupt when magma pushes up through the crust"),
    "d5": ("Ice", "glaciers carve valleys as they slide down the mountains"),
    "d6": ("Heart", "the heart pumps blood through arteries and veins"),
}
QUERIES = {
    "q1": "why does bread dough rise",
    "q2": "what causes ocean tides",
    "q3": "how do bees find flowers",
    "q4": "why do volcanoes erupt",
    "q5": "how are mountain valleys formed",
    "q6": "what does the heart pump",
}


def write_beir(folder):
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}) for k, (t, x) in TOPICS.items())
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in QUERIES.items())
    )
    (folder / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(1, 7)] + ["q1\td3\t1"]
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_triplet_columns_keep_full_columns():
    pairs = [TrainingPair("q", "p", ("n",)), TrainingPair("q2", "p2")]
    assert triplet_columns(pairs) == {"anchor": ["q"], "positive": ["p"], "negative": ["n"]}
    assert triplet_columns([TrainingPair("q2", "p2")]) == {"anchor": ["q2"], "positive": ["p2"]}


def test_settings_and_out_dir_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="negatives"):
        FinetuneSettings(negatives="sparse")
    with pytest.raises(ConfigError, match="steps"):
        FinetuneSettings(steps=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        check_out_dir(tmp_path / "used", resume=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        check_out_dir(tmp_path / "used", resume=True)
    check_out_dir(tmp_path / "new", resume=False)


def test_finetune_mines_negatives_trains_and_saves_a_model(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    beir = write_beir(tmp_path / "beir")
    out = tmp_path / "ft"
    lines = []
    config = FinetuneSettings(steps=4, batch_size=3, lr=1e-3, save_steps=2, negatives="bm25")
    info = finetune(f"beir:{beir}", str(tiny_model_dir), out, config, progress=False, log=lines.append)
    assert info["steps"] == 4 and not info["stopped_by_time"]
    assert "7 training rows (anchor, positive, negative)" in lines[0]
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    trained = SentenceTransformer(str(out), device="cpu").encode(["tides"])
    base = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(["tides"])
    assert not np.allclose(trained, base)
    np.testing.assert_array_equal(trained, SentenceTransformer(str(out), device="cpu").encode(["tides"]))
    # The folder is an encoder.model for rag index and rag query.
    config = tmp_path / "trained.yaml"
    config.write_text(
        json.dumps({"name": "trained", "encoder": {"model": str(out)}, "retrieval": {"mode": "dense"}})
    )
    runner = CliRunner()
    built = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(beir), "--out", str(tmp_path / "i")]
    )
    assert built.exit_code == 0, built.output
    found = runner.invoke(app, ["query", "--index", str(tmp_path / "i"), "ocean tides", "--top-k", "2"])
    assert found.exit_code == 0 and any(f"d{i}" in found.output for i in range(1, 7)), found.output
    # Resume goes on from the last checkpoint to the new step count.
    longer = FinetuneSettings(steps=6, batch_size=3, lr=1e-3, save_steps=2, negatives="bm25")
    info = finetune(
        f"beir:{beir}", str(tiny_model_dir), out, longer, resume=True, progress=False, log=lines.append
    )
    assert info["steps"] == 6 and info["resumed_from"].endswith("checkpoint-4")


def test_a_query_s_other_positive_is_never_its_negative():
    from rag.training.finetune import _one_negative

    pairs = [
        TrainingPair("q1", "yeast", ("bees", "tides")),
        TrainingPair("q1", "bees", ("yeast", "lava")),
        TrainingPair("q2", "lava", ()),
        TrainingPair("q1", "tides", ("yeast", "bees")),
    ]
    kept = _one_negative(pairs, ["yeast", "bees", "tides", "lava", "ice"], seed=1)
    # q1's positives are yeast, bees and tides: the first pair's mined negatives are both struck out.
    assert kept[0].negatives[0] in {"lava", "ice"}
    assert kept[1].negatives == ("lava",)
    assert kept[2].negatives and kept[2].negatives[0] != "lava"  # filled from the corpus
    assert kept[3].negatives and kept[3].negatives[0] not in {"yeast", "bees", "tides"}


def test_cli_refuses_bad_arguments_before_training(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "finetune", "--pairs", "beir:x", "--out", str(tmp_path / "o"), "--steps", "0"]
    )
    assert result.exit_code == 2 and "steps" in result.output
    result = runner.invoke(
        app, ["train", "contrastive", "--corpus", "x", "--out", str(tmp_path / "o"), "--crop-min", "0.7"]
    )
    assert result.exit_code == 2 and "crop_min" in result.output
    assert runner.invoke(app, ["train", "contrastive", "--help"]).exit_code == 0
