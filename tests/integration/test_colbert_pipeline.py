"""Train -> index -> query -> PRF on a tiny corpus with a tiny model: the whole ColBERT path."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from indexers.multivector import MultiVectorIndex
from rag.core.config import RagConfig
from rag.pipelines import add_to_bundle, build_bundle, build_pipeline, delete_from_bundle, run_query

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
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i, (title, text) in enumerate(TOPICS):
            f.write(json.dumps({"_id": f"d{i}", "title": title, "text": text + ", a science fact"}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for i, (title, _) in enumerate(TOPICS):
            f.write(json.dumps({"_id": f"q{i}", "text": f"science fact about {title}?"}) + "\n")
    rows = "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def tiny_bert_builder() -> Any:
    """``build_tiny_bert`` of the ColBERT model tests: a tiny random BERT with MiniLM's tokenizer (the
    conftest tiny model's tokenizer makes every word [UNK] under transformers 5)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_colbert_model.py"
    spec = importlib.util.spec_from_file_location("colbert_model_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_bert


@pytest.mark.integration
def test_train_index_query_prf_add_delete(tmp_path: Path) -> None:
    from rag.training.colbert import ColBERTSettings, train_colbert

    base = tiny_bert_builder()(tmp_path / "bert")
    beir = write_beir(tmp_path / "beir")
    model = tmp_path / "colbert"
    settings = ColBERTSettings(
        steps=30, batch_size=8, lr=1e-2, dim=16, query_maxlen=8, doc_maxlen=24, negatives="bm25", seed=0
    )
    train_colbert(f"beir:{beir}", str(base), model, settings, progress=False, log=lambda _: None)

    colbert = {"model": str(model), "dim": 16, "query_maxlen": 8, "doc_maxlen": 24, "index": "ivfsq"}
    prf = {"kind": "prf", "name": "colbert", "mode": "ranker", "fb_docs": 2, "k": 6, "fb_embs": 3}
    config = RagConfig.from_dict(
        {
            "name": "colbert_prf",
            "retrieval": {"mode": "colbert", "top_k": 3},
            "colbert": colbert,
            "stages": [prf],
        }
    )
    bundle = tmp_path / "bundle"
    summary = build_bundle(config, beir, bundle, progress=False, notify=lambda _: None)
    assert summary.indexes == ["multivector"] and summary.chunks == len(TOPICS)
    manifest = json.loads((bundle / "multivector" / "manifest.json").read_text())
    assert manifest["index_type"] == "multivector" and manifest["counts"]["documents"] == len(TOPICS)

    pipe = build_pipeline(None, bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 feedback documents hold fewer token vectors than ... (tiny)
        result = run_query(pipe, "science fact about bees?", top_k=3)
    assert len(result.documents) == 3 and set(result.stage_seconds) >= {"colbert_retriever", "prf"}
    expansion = result.documents[0].meta["prf_expansion"]
    weights = [e["weight"] for e in expansion]
    # beta * IDF, ranked: a word in every document ("a") has IDF ln(9/9) = 0.
    assert 1 <= len(expansion) <= 3 and weights == sorted(weights, reverse=True) and min(weights) >= 0
    # The trained model finds most topics' own document first (end to end, through the token index).
    e2e = RagConfig.from_dict({**config.to_dict(), "stages": []})
    plain = build_pipeline(e2e, bundle)
    firsts = [run_query(plain, f"science fact about {t}?", top_k=1).documents[0].id for t, _ in TOPICS]
    assert sum(f == f"d{i}" for i, f in enumerate(firsts)) >= 5, firsts

    # rag add / rag delete rewrite the token index like any side.
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"id": "d9", "title": "comet", "text": "a comet is a ball of ice and dust"}) + "\n"
    )
    add_to_bundle(bundle, more, progress=False, notify=lambda _: None)
    index = MultiVectorIndex.load(bundle / "multivector")
    assert len(index) == len(TOPICS) + 1 and index.token_ids(["d9"])[0].size > 3
    delete_from_bundle(bundle, ["d0", "d9"], notify=lambda _: None)
    assert "d0" not in MultiVectorIndex.load(bundle / "multivector").ids
    again = build_pipeline(None, bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "d0" not in [d.id for d in run_query(again, "science fact about moon?", top_k=5).documents]

    # rag query shows what PRF added.
    from rag.cli import app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = CliRunner().invoke(
            app, ["query", "science fact about bees?", "--index", str(bundle), "--top-k", "2"]
        )
    assert out.exit_code == 0, out.output
    assert "PRF expansion" in out.output
