"""ColBERT training on a tiny random BERT: markers reach the trainer, the loss falls, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.colbert.testing import build_tiny_bert

TOPICS = [
    ("moon", "the moon pulls the sea and makes tides"),
    ("bees", "honey bees dance to show where flowers are"),
    ("volcano", "lava flows from a volcano when it erupts"),
    ("piano", "a piano has keys that strike strings"),
    ("coffee", "coffee beans are roasted before brewing"),
    ("glacier", "a glacier is a river of slow ice"),
    ("rocket", "a rocket burns fuel to climb into orbit"),
    ("tomato", "tomato plants need sun and warm soil"),
]


def write_beir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w") as f:
        for i, (title, text) in enumerate(TOPICS):
            f.write(json.dumps({"_id": f"d{i}", "title": title, "text": text + ", a science fact"}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for i, (title, _) in enumerate(TOPICS):
            f.write(json.dumps({"_id": f"q{i}", "text": f"science fact about {title}?"}) + "\n")
    rows = "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("colbert-train")
    return build_tiny_bert(root / "bert"), write_beir(root / "beir")


def settings(**overrides: object) -> object:
    from rag.training.colbert import ColBERTSettings

    base: dict[str, object] = dict(
        steps=30, batch_size=4, lr=1e-2, dim=16, query_maxlen=8, doc_maxlen=24, negatives="bm25", seed=0
    )
    base.update(overrides)
    return ColBERTSettings(**base)  # type: ignore[arg-type]


def test_markers_reach_the_training_batches(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """sentence-transformers' collator applies prompts per column: ours must put [Q] / [D] there."""
    from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

    from rag.training.colbert import build_or_load

    bert, _ = tiny
    model = build_or_load(str(bert), settings())
    args = MultiVectorEncoderTrainingArguments(
        output_dir=str(tmp_path),
        prompts={"query": "[Q] ", "positive": "[D] "},
        use_cpu=True,
        report_to="none",
    )
    from datasets import Dataset

    data = Dataset.from_dict({"query": ["moon?"], "positive": ["the moon, tides."]})
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=data)
    batch = trainer.data_collator([data[0]])
    tok = model.tokenizer
    query = tok.convert_ids_to_tokens(batch["query_input_ids"][0].tolist())
    doc = tok.convert_ids_to_tokens(batch["positive_input_ids"][0].tolist())
    assert query[:2] == ["[CLS]", "[Q] "] and query[-1] == "[MASK]" and len(query) == 8
    assert doc[:2] == ["[CLS]", "[D] "] and "," in doc


def test_loss_decreases_and_model_loads(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from rag.colbert.encoder import ColBERTEncoder
    from rag.training.colbert import train_colbert
    from rag.training.common import read_loss_log

    bert, beir = tiny
    out = tmp_path / "model"
    # One batch holds the whole set, so every step sees the same rows and the loss can only fall by learning.
    info = train_colbert(
        f"beir:{beir}",
        str(bert),
        out,
        settings(batch_size=8, save_steps=30),
        progress=False,
        log=lambda _: None,
    )
    losses = [r["loss"] for r in read_loss_log(out)]
    assert info["steps"] == 30 and len(losses) >= 20
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert info["columns"] == ["query", "positive", "negative_1"]
    summary = json.loads((out / "training.json").read_text())
    assert summary["loss_start"] == losses[0] and summary["loss_end"] == losses[-1]
    # The trained model ranks each query's own document first.
    enc = ColBERTEncoder(out, query_maxlen=8, doc_maxlen=24)
    queries = enc.encode_queries([f"science fact about {t}?" for t, _ in TOPICS])
    docs, _ = enc.encode_documents([f"{t} {x}, a science fact" for t, x in TOPICS])
    scores = np.array([[float((q @ d.T).max(axis=1).sum()) for d in docs] for q in queries])
    assert (scores.argmax(axis=1) == np.arange(len(TOPICS))).mean() >= 0.75


def test_distillation_and_resume(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from rag.core.errors import ConfigError
    from rag.training.colbert import ColBERTSettings, train_colbert

    with pytest.raises(ConfigError, match="needs --negatives"):
        ColBERTSettings(distill="dense", negatives="none")
    bert, beir = tiny
    out = tmp_path / "model"
    # The teacher is the tiny model itself (a sentence-transformers folder; weights do not matter here).
    first = train_colbert(
        f"beir:{beir}",
        str(bert),
        out,
        settings(steps=4, save_steps=2, distill=str(bert), negatives_per_query=2),
        progress=False,
        log=lambda _: None,
    )
    assert first["loss"] == "MultiVectorDistillKLDivLoss" and first["columns"][-1] == "negative_2"
    assert (out / "checkpoint-4").is_dir()
    # Resumed through the command line, which must reach the same trainer.
    from typer.testing import CliRunner

    from rag.cli import app

    args = [
        "train",
        "colbert",
        "--out",
        str(out),
        "--pairs",
        f"beir:{beir}",
        "--base",
        str(bert),
        "--steps",
        "6",
    ]
    args += ["--save-steps", "2", "--distill", str(bert), "--negatives-per-query", "2", "--batch-size", "4"]
    args += ["--lr", "1e-2", "--dim", "16", "--query-maxlen", "8", "--doc-maxlen", "24", "--seed", "0"]
    refused = CliRunner().invoke(app, args + ["--no-progress"])
    assert refused.exit_code == 2 and "pass --resume" in refused.output
    result = CliRunner().invoke(app, args + ["--resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "training.json").read_text())
    assert again["steps"] == 6 and again["resumed_from"].endswith("checkpoint-4")
    from rag.training.common import read_loss_log

    steps = [r["step"] for r in read_loss_log(out)]
    assert steps[-2:] == [5, 6]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs", "foo:bar"], "beir:DIR"),
        (["--pairs", "beir:x", "--distill", "dense", "--negatives", "none"], "needs --negatives"),
        (["--pairs", "beir:x", "--negatives", "sparse"], "negatives"),
        (["--pairs", "beir:x", "--steps", "0"], "steps"),
    ],
)
def test_cli_refuses_bad_arguments(tmp_path: Path, extra: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    result = CliRunner().invoke(app, ["train", "colbert", "--out", str(tmp_path / "m"), *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "m").exists()
