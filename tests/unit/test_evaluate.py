"""The evaluation engine (rag.evaluate): one path for BEIR and chunk-excerpt sets, the metric table, the
title rule, cost columns, run depth and the cache keys (rag.core.cache)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_chunk_eval import make_set
from test_cli import write_beir
from typer.testing import CliRunner

from evaluation.datasets import save_chunk_eval
from indexers import load_index
from rag.cli import app
from rag.core.cache import cache_key
from rag.core.config import RagConfig
from rag.core.errors import ConfigError, RagError
from rag.core.tokenizers import get_token_counter
from rag.evaluate import (
    METRIC_FUNCTIONS,
    RunContext,
    evaluate_config,
    index_cache_key,
    register_metric,
)

runner = CliRunner()
SPAN_COLUMNS = ("recall", "precision", "iou", "precision_omega")
CHUNKER = {"method": "recursive", "size": 12, "overlap": 4}


@pytest.fixture()
def excerpt_folder(tmp_path: Path) -> Path:
    return save_chunk_eval(make_set(), tmp_path / "set")


def dense_config(model: Path, name: str = "dense", **retrieval: object) -> RagConfig:
    return RagConfig.from_dict(
        {
            "name": name,
            "chunking": CHUNKER,
            "encoder": {"model": str(model)},
            "retrieval": {"mode": "dense", "top_k": 2, **retrieval},
        }
    )


def test_rag_eval_and_eval_chunks_give_the_same_numbers(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    # Separate caches: each command builds its own bundle, so equal numbers are not one cached result.
    config = tmp_path / "recursive.yaml"
    config.write_text(json.dumps(dataclasses.asdict(dense_config(tiny_model_dir))))
    common = ["--dataset", str(excerpt_folder), "--no-progress"]
    result = runner.invoke(
        app,
        ["eval", "--config", str(config), *common, "--output", str(tmp_path / "a")]
        + ["--cache-dir", str(tmp_path / "cache-a")],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["eval-chunks", *common, "--chunker", "recursive", "--size", "12", "--overlap", "4"]
        + ["--retrieve", "2", "--model", str(tiny_model_dir), "--tokenizer", "cl100k_base"]
        + ["--output", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "cache-b")],
    )
    assert result.exit_code == 0, result.output
    [a] = json.loads((tmp_path / "a" / "report.json").read_text())["results"]
    [b] = json.loads((tmp_path / "b" / "report.json").read_text())["results"]
    assert not a["index_reused"] and not b["index_reused"]
    assert a["chunks"] == b["chunks"]
    for column in SPAN_COLUMNS:
        assert a["metrics"][column] == b["metrics"][column]
        assert [row[column] for row in a["per_query"]] == [row[column] for row in b["per_query"]]
    # One chunk id scheme: the run files name the same chunks.
    runs = [(tmp_path / "a" / "dense.trec"), (tmp_path / "b" / "recursive-12-4.trec")]
    first, second = ([line.split()[:3] for line in run.read_text().splitlines()] for run in runs)
    assert first == second


def test_a_report_column_is_one_function_and_one_registration(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METRIC_FUNCTIONS, "spans", list(METRIC_FUNCTIONS["spans"]))

    def returned(context: RunContext) -> list[dict[str, float]]:
        return [{"returned": float(len(outcome.documents))} for outcome in context.outcomes]

    register_metric("spans", returned)
    result = evaluate_config(dense_config(tiny_model_dir), excerpt_folder, cache_dir=tmp_path, progress=False)
    assert result.metrics["returned"] == 2.0 and all(row["returned"] == 2.0 for row in result.per_query)
    assert result.per_group["beta"]["mean"]["returned"] == 2.0
    with pytest.raises(ConfigError, match="unknown metric kind"):
        register_metric("colbert", returned)


def test_cost_columns_count_llm_tokens_and_time_every_stage(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    result = evaluate_config(dense_config(tiny_model_dir), excerpt_folder, cache_dir=tmp_path, progress=False)
    count = get_token_counter("cl100k_base").count
    data = make_set()
    chunk_tokens = {}
    bundle = Path(result.index_path)
    index = load_index(bundle / "dense")
    for doc in index.get(index.ids):
        chunk_tokens[doc.id] = count(doc.content or "")
    expected = [sum(chunk_tokens[doc] for doc in result.run[qid]) for qid in sorted(result.run)]
    assert len(expected) == len(data.questions)
    assert [row["llm_tokens"] for row in result.per_query] == expected
    assert result.metrics["llm_tokens"] == pytest.approx(sum(expected) / len(expected))
    # Every stage of the pipeline is timed: the query encoder and the retriever.
    assert len(result.stage_seconds) >= 2 and all(s > 0 for s in result.stage_seconds.values())
    record = result.to_json()
    assert record["llm_tokens"] == result.metrics["llm_tokens"] and record["llm_tokenizer"] == "cl100k_base"
    with pytest.raises(RagError, match="unknown tokenizer 'nope'"):  # before any build
        evaluate_config(dense_config(tiny_model_dir), excerpt_folder, llm_tokenizer="nope")


def test_run_depth_and_map_at_1000(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_beir(tmp_path / "beir")
    config = RagConfig.from_dict({"name": "d", "encoder": {"model": str(tiny_model_dir)}})
    deep = evaluate_config(config, data, cache_dir=tmp_path / "cache", progress=False)
    assert deep.depth == 1000 and all(len(deep.run[q]) == 3 for q in deep.run)  # the whole corpus
    assert {"MAP@100", "MAP@1000", "nDCG@10", "MRR@10", "Recall@10", "Recall@100"} <= set(deep.metrics)
    shallow = evaluate_config(config, data, cache_dir=tmp_path / "cache", depth=1, progress=False)
    assert shallow.index_reused and all(len(shallow.run[q]) == 1 for q in shallow.run)
    assert shallow.metrics["MAP@1000"] <= deep.metrics["MAP@1000"]
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        evaluate_config(config, data, cache_dir=tmp_path / "cache", depth=0)
    result = runner.invoke(
        app,
        ["eval", "--config", "bm25", "--dataset", str(data), "--depth", "2", "--no-progress"]
        + ["--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
    )
    assert result.exit_code == 0, result.output
    assert "MAP@1000" in result.output and "LLM tokens" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["depth"] == 2 and report["results"][0]["depth"] == 2


def test_title_rule_beir_keeps_titles_chunk_sets_drop_them(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    config = RagConfig.from_dict({"name": "b", "retrieval": {"mode": "bm25"}})
    beir = evaluate_config(config, write_beir(tmp_path / "beir"), cache_dir=tmp_path, progress=False)
    chunks = evaluate_config(config, excerpt_folder, cache_dir=tmp_path, progress=False)
    assert beir.settings["title"] == "auto" and chunks.settings["title"] == "none"
    titles = {}
    for result in (beir, chunks):
        index = load_index(Path(result.index_path) / "bm25")
        titles[result.kind] = {doc.meta.get("title") for doc in index.get(index.ids)}
    assert titles["ir"] == {"Yeast", "Tides", "Bees"}  # BEIR: title + " " + text
    assert titles["spans"] == {None}  # chunk-excerpt sets: the chunk alone, not "alpha <chunk>"


def test_cache_keys() -> None:
    assert cache_key("embeddings", 1, a=1, b=2) == cache_key("embeddings", 1, b=2, a=1)
    assert cache_key("embeddings", 1, a=1) != cache_key("bundles", 1, a=1)
    assert cache_key("embeddings", 1, a=1) != cache_key("embeddings", 2, a=1)
    corpus = Path(__file__)
    base = RagConfig.from_dict({"name": "d"})
    key = index_cache_key(base, corpus)
    # Query-time settings and the device do not change the index; chunking and the title rule do.
    assert index_cache_key(RagConfig.from_dict({"retrieval": {"top_k": 3}}), corpus) == key
    assert index_cache_key(RagConfig.from_dict({"encoder": {"device": "cuda"}}), corpus) == key
    assert index_cache_key(base, corpus, title="none") != key
    assert index_cache_key(RagConfig.from_dict({"chunking": CHUNKER}), corpus) != key
