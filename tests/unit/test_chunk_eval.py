"""Chunker evaluation (rag.chunk_eval over rag.evaluate), `rag eval-chunks`, span metrics in `rag eval`,
reports and plots."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from typer.testing import CliRunner

from evaluation.datasets import ChunkEvalSet, Excerpt, ExcerptQuestion, save_chunk_eval
from evaluation.plots import plot_chunking_results
from evaluation.reports import build_report, corpus_rows, format_mean_std, mean_std, summary_rows
from evaluation.spans import Span, evaluate_spans
from rag.chunk_eval import chunker_label, grid_configs, load_grid, run_grid
from rag.cli import app
from rag.core.chunking import make_chunker
from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.evaluate import EvalResult, document_spans, evaluate_config, is_chunk_eval_folder

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"

ALPHA = (
    "Zorblax engines hum quietly in the harbor.\n\n"
    "Quibbleton farms grow purple wheat.\n\n"
    "Marmoset clocks tick backwards at noon."
)
BETA = "Vexilla rivers flow uphill every spring.\n\nGlimmerwood trees shed silver leaves."
KEYWORDS = ("zorblax", "quibbleton", "marmoset", "vexilla", "glimmerwood")
# Every paragraph is one chunk of this chunker (paragraphs have 35-42 characters; two never fit).
PARAGRAPHS = {"method": "recursive", "size": 45, "overlap": 0, "unit": "chars"}


def excerpt(corpus: str, text: str) -> Excerpt:
    start = corpus.index(text)
    return Excerpt(text, start, start + len(text))


def make_set() -> ChunkEvalSet:
    questions = [
        ExcerptQuestion(
            "Where do zorblax engines hum?",
            "alpha",
            [excerpt(ALPHA, "Zorblax engines hum quietly in the harbor.")],
        ),
        ExcerptQuestion(
            "What do quibbleton farms grow?", "alpha", [excerpt(ALPHA, "Quibbleton farms grow purple wheat.")]
        ),
        ExcerptQuestion(
            "Which way do vexilla rivers flow?",
            "beta",
            [excerpt(BETA, "Vexilla rivers flow uphill every spring.")],
        ),
        # two excerpts in two chunks: one retrieved chunk can hold only one of them
        ExcerptQuestion(
            "Marmoset clocks and quibbleton wheat?",
            "alpha",
            [excerpt(ALPHA, "Marmoset clocks tick backwards"), excerpt(ALPHA, "purple wheat")],
        ),
    ]
    return ChunkEvalSet(corpora={"alpha": ALPHA, "beta": BETA}, questions=questions)


SPAN_COLUMNS = {"recall", "precision", "iou", "precision_omega"}


@pytest.fixture()
def excerpt_folder(tmp_path: Path) -> Path:
    return save_chunk_eval(make_set(), tmp_path / "set")


def grid(
    folder: Path,
    chunkers: list[dict],
    retrieve: int,
    cache: Path,
    mode: str = "bm25",
    model: str | None = None,
) -> list[EvalResult]:
    """The chunkers through the engine; BM25 finds each question's paragraph by its rare keyword."""
    configs = grid_configs(chunkers, model=model, retrieve=retrieve, mode=mode)
    return run_grid(folder, configs, cache_dir=cache, progress=False)


def rows(result: EvalResult) -> list[dict[str, float]]:
    return [{k: row[k] for k in SPAN_COLUMNS} for row in result.per_query]


# --- chunkers through the engine ---------------------------------------------------------------------


def test_chunk_equal_to_excerpt_retrieved_gives_iou_one(tmp_path: Path, excerpt_folder: Path) -> None:
    [result] = grid(excerpt_folder, [PARAGRAPHS], 1, tmp_path / "cache")
    assert result.chunks == 5  # every paragraph is a chunk, one index over both corpora
    for row in rows(result)[:3]:
        assert row == {"recall": 1.0, "precision": 1.0, "iou": 1.0, "precision_omega": 1.0}
    # Two excerpts in two chunks, one chunk retrieved: at most one excerpt found.
    last = rows(result)[3]
    assert last["recall"] < 1.0 and last["precision_omega"] == pytest.approx(42 / (39 + 35))
    assert result.per_group["beta"]["mean"]["iou"] == 1.0
    assert result.per_group["alpha"]["queries"] == 3 and result.per_group["beta"]["queries"] == 1
    assert [row["corpus_id"] for row in result.per_query] == ["alpha", "alpha", "beta", "alpha"]
    assert all(
        str(doc).startswith(("alpha.md#", "beta.md#")) for ranking in result.run.values() for doc in ranking
    )


def test_retrieving_every_chunk_finds_every_excerpt(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    # Dense retrieval always returns top_k chunks: with all 5, every excerpt is found, and precision is the
    # share of the excerpts' characters in all the text (every chunk of both corpora counts in |R|).
    [result] = grid(excerpt_folder, [PARAGRAPHS], 5, tmp_path / "cache", "dense", str(tiny_model_dir))
    chunk_chars = sum(len(p) for text in (ALPHA, BETA) for p in text.split("\n\n"))
    first = rows(result)[0]
    assert first["recall"] == 1.0
    assert first["precision"] == pytest.approx(
        len("Zorblax engines hum quietly in the harbor.") / chunk_chars
    )
    assert first["iou"] == pytest.approx(first["precision"])
    assert result.metrics["recall"] == 1.0


def test_bundles_and_embeddings_are_cached_and_damage_is_recomputed(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    config = {"method": "fixed", "size": 8, "overlap": 2}
    cache = tmp_path / "cache"
    [result] = grid(excerpt_folder, [config], 2, cache, "dense", str(tiny_model_dir))
    assert result.name == "fixed 8/2" and result.settings["chunker"]["method"] == "fixed"
    chunker = make_chunker(config)
    assert chunker is not None
    assert result.chunks == len(chunker.chunk(ALPHA)) + len(chunker.chunk(BETA))
    assert result.mean_chunk_tokens is not None and 0 < result.mean_chunk_tokens <= 8
    assert len(result.per_query) == 4 and not result.index_reused
    for row in rows(result):
        assert all(0.0 <= v <= 1.0 for v in row.values())
        assert row["iou"] <= min(row["recall"], row["precision"]) + 1e-12
    assert set(result.per_group) == {"alpha", "beta"}
    for key in SPAN_COLUMNS:
        assert result.metrics[key] == pytest.approx(np.mean([row[key] for row in result.per_query]))
    record = json.loads(json.dumps(result.to_json()))  # JSON-able
    assert record["overall"]["queries"] == 4 and len(record["per_query"]) == 4

    assert list((cache / "embeddings").glob("*.npy")) and list((cache / "bundles").iterdir())
    [again] = grid(excerpt_folder, [config], 2, cache, "dense", str(tiny_model_dir))
    assert again.index_reused and rows(again) == rows(result)

    for bundle in (cache / "bundles").glob("[!.]*"):  # a new build reads the cached vectors ...
        shutil.rmtree(bundle)
    for path in (cache / "embeddings").glob("*.npy"):  # ... unless they are damaged: then recomputed
        path.write_bytes(b"not numpy")
    [third] = grid(excerpt_folder, [config], 2, cache, "dense", str(tiny_model_dir))
    assert not third.index_reused and rows(third) == rows(result) and third.chunks == result.chunks


def test_token_unit(tmp_path: Path, excerpt_folder: Path) -> None:
    configs = grid_configs([PARAGRAPHS], retrieve=1, mode="bm25")
    [result] = run_grid(excerpt_folder, configs, unit="tokens", cache_dir=tmp_path / "c", progress=False)
    assert result.settings["unit"] == "tokens" and result.settings["tokenizer"] == "cl100k_base"
    assert result.per_query[0]["iou"] == 1.0


def test_grid_checks_everything_before_work_and_semantic_uses_the_encoder(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    with pytest.raises(ConfigError, match="distinct labels"):
        grid_configs([PARAGRAPHS, dict(PARAGRAPHS)])
    with pytest.raises(ConfigError, match="unknown chunking key"):
        grid_configs([PARAGRAPHS, {"method": "fixed", "size": 5, "colour": 1}])
    with pytest.raises(ConfigError, match="positive integer"):
        grid_configs([PARAGRAPHS], retrieve=0)
    with pytest.raises(ConfigError, match="method 'none'"):
        grid_configs([{"method": "none"}])
    with pytest.raises(ConfigError, match="mode must be one of"):
        grid_configs([PARAGRAPHS], mode="sparse")
    with pytest.raises(ConfigError, match="unit must be one of"):
        run_grid(excerpt_folder, grid_configs([PARAGRAPHS]), unit="words", progress=False)
    with pytest.raises(ConfigError, match="not a chunk-excerpt set"):
        run_grid(tmp_path, grid_configs([PARAGRAPHS]), progress=False)
    orphan = tmp_path / "orphan"
    save_chunk_eval(make_set(), orphan)
    (orphan / "corpora" / "beta.md").unlink()
    with pytest.raises(ConfigError, match="beta"):
        grid(orphan, [PARAGRAPHS], 1, tmp_path / "cache")

    chunkers = [{**PARAGRAPHS, "name": "paragraphs"}, {"method": "semantic", "size": 20, "piece_size": 5}]
    configs = grid_configs(chunkers, model=str(tiny_model_dir), retrieve=1, mode="dense")
    assert [c.name for c in configs] == ["paragraphs", "semantic 20"]
    assert configs[1].chunking["model"] == str(tiny_model_dir)  # not the default MiniLM
    assert {c.encoder.model for c in configs} == {str(tiny_model_dir)}
    # A base config gives every setting the grid does not: here hybrid retrieval and its candidates.
    base = RagConfig.from_dict({"name": "b", "retrieval": {"mode": "hybrid", "candidates": 7}})
    [hybrid] = grid_configs([PARAGRAPHS], base=base, retrieve=3)
    assert (hybrid.retrieval.mode, hybrid.retrieval.top_k, hybrid.retrieval.candidates) == ("hybrid", 3, 7)
    results = run_grid(excerpt_folder, configs, cache_dir=tmp_path / "cache", progress=False)
    assert [r.name for r in results] == ["paragraphs", "semantic 20"]


def test_chunker_labels_and_the_shipped_grid() -> None:
    assert chunker_label({"method": "fixed", "size": 250, "overlap": 125}) == "fixed 250/125"
    assert chunker_label({"method": "semantic", "size": 200}) == "semantic 200"
    assert chunker_label({"method": "recursive", "size": 400, "unit": "chars"}) == "recursive 400/0 chars"
    grid = load_grid(ROOT / "configs" / "chunk_grid.yaml")
    assert grid.retrieve == 5
    assert [chunker_label(c) for c in grid.chunkers] == [
        "fixed 250/125",
        "fixed 250/0",
        "fixed 200/0",
        "recursive 250/125",
        "recursive 250/0",
        "recursive 200/0",
        "semantic 250",
        "semantic 200",
    ]
    for config in grid.chunkers:
        chunker = make_chunker(config)
        assert chunker is not None and chunker.config().get("tokenizer") == "cl100k_base"


def test_load_grid_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunkers: []\n")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_grid(bad)
    bad.write_text("chunkers: [{method: fixed, size: 4}]\nretreive: 3\n")
    with pytest.raises(ConfigError, match="retreive"):
        load_grid(bad)


# --- rag eval-chunks --------------------------------------------------------------------------------------


def test_cli_single_chunker_and_grid(tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    common = [
        "--dataset",
        str(excerpt_folder),
        "--model",
        str(tiny_model_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    result = runner.invoke(
        app,
        [
            "eval-chunks",
            *common,
            "--chunker",
            "recursive",
            "--size",
            "12",
            "--overlap",
            "4",
            "--retrieve",
            "2",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["retrieve"] == 2 and report["settings"]["questions"] == 4
    [record] = report["results"]
    assert record["name"] == "recursive 12/4" and set(record["per_corpus"]) == {"alpha", "beta"}
    assert set(record["overall"]["mean"]) == SPAN_COLUMNS | {"llm_tokens"}
    assert record["mode"] == "dense" and record["encoder"] == str(tiny_model_dir)
    for name in ("recall_vs_iou.png", "per_query_distribution.png"):
        assert (out / name).read_bytes().startswith(PNG)
    assert "Precision-Ω" in result.output and "recursive 12/4" in result.output

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "retrieve: 1\nchunkers:\n  - {method: fixed, size: 10, overlap: 0}\n"
        "  - {method: recursive, size: 45, unit: chars}\n"
    )
    out2 = tmp_path / "out2"
    result = runner.invoke(app, ["eval-chunks", *common, "--grid", str(grid), "--output", str(out2)])
    assert result.exit_code == 0, result.output
    report = json.loads((out2 / "report.json").read_text())
    assert [r["name"] for r in report["results"]] == ["fixed 10/0", "recursive 45/0 chars"]
    assert all(r["retrieve"] == 1 for r in report["results"])


def test_cli_errors_are_one_line(tmp_path: Path, excerpt_folder: Path) -> None:
    base = ["eval-chunks", "--dataset", str(excerpt_folder), "--output", str(tmp_path / "o")]
    for extra, message in [
        ([], "--chunker"),
        (["--chunker", "fixed", "--grid", str(ROOT / "configs" / "chunk_grid.yaml")], "not both"),
        (["--chunker", "sliding"], "must be one of"),
        (["--chunker", "semantic", "--overlap", "10"], "no overlap"),
    ]:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["eval-chunks", "--dataset", str(tmp_path), "--chunker", "fixed"])
    assert result.exit_code == 2 and "not a chunk-excerpt set" in result.output


# --- span metrics in rag eval ------------------------------------------------------------------------------


def test_rag_eval_on_a_chunk_excerpt_folder(
    tmp_path: Path, excerpt_folder: Path, tiny_model_dir: Path
) -> None:
    assert is_chunk_eval_folder(excerpt_folder) and not is_chunk_eval_folder(tmp_path)
    config = tmp_path / "bm25.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "bm25-paragraphs",
                "chunking": PARAGRAPHS,
                "encoder": {"model": str(tiny_model_dir)},
                "retrieval": {"mode": "bm25", "top_k": 1},
            }
        )
    )
    out = tmp_path / "report"
    args = [
        "eval",
        "--config",
        str(config),
        "--dataset",
        str(excerpt_folder),
        "--output",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [record] = json.loads((out / "report.json").read_text())["results"]
    assert record["top_k"] == 1 and record["chunks"] == 5 and record["unit"] == "chars"
    # BM25 finds each question's paragraph by its rare keyword; the paragraph is the excerpt.
    assert [row["iou"] for row in record["per_query"][:3]] == [1.0, 1.0, 1.0]
    assert set(record["per_corpus"]) == {"alpha", "beta"}
    assert record["metrics"]["iou"] == pytest.approx(record["overall"]["mean"]["iou"])
    assert (out / "bm25-paragraphs.trec").read_text().startswith("q0 Q0 alpha.md#0 1 ")
    result = runner.invoke(app, args)  # the bundle over corpora/ is reused
    assert result.exit_code == 0 and "cached" in result.output

    dense = RagConfig.from_dict(
        {
            "name": "dense",
            "chunking": {"method": "fixed", "size": 6, "overlap": 2},
            "encoder": {"model": str(tiny_model_dir)},
            "retrieval": {"mode": "dense", "top_k": 3},
        }
    )
    evaluated = evaluate_config(dense, excerpt_folder, cache_dir=tmp_path / "cache", progress=False)
    assert evaluated.kind == "spans" and evaluated.queries == 4
    assert all(0.0 <= evaluated.metrics[m] <= 1.0 for m in SPAN_COLUMNS)
    assert len(evaluated.run) == 4 and all(len(evaluated.run[qid]) == 3 for qid in evaluated.run)


def test_rag_eval_refuses_an_index_over_other_texts(tmp_path: Path, excerpt_folder: Path) -> None:
    (excerpt_folder / "corpora" / "notes.txt").write_text("An extra file the questions do not know.")
    config = RagConfig.from_dict({"name": "b", "retrieval": {"mode": "bm25"}})
    with pytest.raises(ConfigError, match="notes.txt"):
        evaluate_config(config, excerpt_folder, cache_dir=tmp_path / "cache", progress=False)


def test_provenance_spans_replace_the_chunk_span() -> None:
    ids = {"alpha.md": "alpha"}
    meta = {"source_id": "alpha.md", "start": 0, "end": 10}
    chunk = Document(id="alpha.md#0", content=ALPHA[0:10], meta=meta)
    assert document_spans(chunk, ids) == [Span("alpha", 0, 10)]
    compressed = Document(
        id="alpha.md#0",
        content=ALPHA[5:10] + ALPHA[20:25],
        meta={
            "source_id": "alpha.md",
            "start": 0,
            "end": 30,
            "provenance": [["alpha.md", 5, 10], ["alpha.md", 20, 25]],
        },
    )
    spans = document_spans(compressed, ids)
    assert spans == [Span("alpha", 5, 10), Span("alpha", 20, 25)]
    # gold [0, 10): 5 characters kept of 10 retrieved; IoU = 5 / (10 retrieved + 5 missed)
    report = evaluate_spans([[("alpha", 0, 10)]], [spans])
    assert report.per_query[0] == pytest.approx({"recall": 0.5, "precision": 0.5, "iou": 1 / 3})
    nothing = Document(id="x", content="", meta={**meta, "provenance": []})
    assert document_spans(nothing, ids) == []
    with pytest.raises(ConfigError, match="no source offsets"):
        document_spans(Document(id="bare", content="text"), ids)
    with pytest.raises(ConfigError, match="not a corpus"):
        document_spans(Document(id="y", content="t", meta={"provenance": [["other.md", 0, 1]]}), ids)
    with pytest.raises(ConfigError, match="source_id, start, end"):
        document_spans(Document(id="z", content="t", meta={"provenance": [["alpha.md", 0]]}), ids)


# --- reports and plots --------------------------------------------------------------------------------------


def test_reports_and_plots(tmp_path: Path) -> None:
    mean, std = mean_std([{"iou": 0.2, "recall": 1.0}, {"iou": 0.4, "recall": 0.0}])
    assert mean == pytest.approx({"iou": 0.3, "recall": 0.5}) and std["recall"] == pytest.approx(0.5)
    assert math.isclose(std["iou"], 0.1)
    assert format_mean_std(0.787, 0.392) == "78.7 ± 39.2"
    records = [
        {
            "name": name,
            "retrieve": 5,
            "unit": "chars",
            "chunks": 10,
            "mean_chunk_tokens": 12.5,
            "overall": {
                "queries": 2,
                "mean": {"recall": r, "precision": 0.1, "precision_omega": 0.3, "iou": 0.05},
                "std": {"recall": 0.1},
            },
            "per_corpus": {"a": {"queries": 2, "mean": {"recall": r}, "std": {"recall": 0.0}}},
            "per_query": [{"recall": r, "iou": 0.05}, {"recall": r, "iou": 0.05}],
        }
        for name, r in [("fixed 10/0", 0.5), ("recursive 10/0", 0.7)]
    ]
    header, rows = summary_rows(records)
    assert header[:5] == ["chunker", "Recall", "Precision", "Precision-Ω", "IoU"]
    assert rows[1][:2] == ["recursive 10/0", "70.0 ± 10.0"] and rows[1][5:7] == ["12.5", "10"]
    assert rows[0][-1] == "-"  # no seconds in the record
    _, groups = corpus_rows(records)
    assert [row[1] for row in groups[0]] == ["a", "all"] and groups[0][0][4] == "-"
    assert build_report(records, retrieve=5)["settings"] == {"retrieve": 5}
    paths = plot_chunking_results(records, tmp_path / "plots")
    assert [p.name for p in paths] == ["recall_vs_iou.png", "per_query_distribution.png"]
    assert all(p.read_bytes().startswith(PNG) for p in paths)
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_chunking_results([], tmp_path)
