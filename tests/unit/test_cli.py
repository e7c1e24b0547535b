from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

from typer.testing import CliRunner

import configs
from indexers.bundle import BundleNotFoundError
from rag.cli import app, describe_deletion, shorten
from rag.core.config import load_config

runner = CliRunner()


def write_beir(folder, tiny=True):
    folder.mkdir()
    docs = {
        "d1": ("Yeast", "Yeast ferments sugar and the dough rises."),
        "d2": ("Tides", "The moon pulls the ocean and makes tides."),
        "d3": ("Bees", "Bees dance to tell the hive where flowers are."),
    }
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}) for k, (t, x) in docs.items())
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in [("q1", "dough yeast"), ("q2", "moon ocean")])
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def write_config(path, model, mode="bm25", name=None):
    path.write_text(
        json.dumps({"name": name or mode, "encoder": {"model": str(model)}, "retrieval": {"mode": mode}})
    )
    return path


def test_index_query_eval(tmp_path, tiny_model_dir):
    data = write_beir(tmp_path / "beir")
    bm25 = write_config(tmp_path / "bm25.yaml", tiny_model_dir)
    dense = write_config(tmp_path / "dense.yaml", tiny_model_dir, mode="dense")
    result = runner.invoke(
        app,
        [
            "index",
            "--config",
            str(bm25),
            "--corpus",
            str(data),
            "--out",
            str(tmp_path / "idx"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "documents" in result.output and "3" in result.output
    result = runner.invoke(app, ["query", "--index", str(tmp_path / "idx"), "--top-k", "1", "yeast dough"])
    assert result.exit_code == 0, result.output
    assert "d1" in result.output
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "d9", "text": "Volcanoes erupt molten rock."}))
    result = runner.invoke(
        app, ["add", "--index", str(tmp_path / "idx"), "--corpus", str(more), "--no-progress"]
    )
    assert result.exit_code == 0 and "added 1 documents" in result.output, result.output
    result = runner.invoke(app, ["delete", "--index", str(tmp_path / "idx"), "d9"])
    assert result.exit_code == 0 and "deleted 1 document from the bm25 index" in result.output, result.output
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "eval",
            "--config",
            str(bm25),
            "--config",
            str(dense),
            "--dataset",
            str(data),
            "--output",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [r["config"] for r in report["results"]] == ["bm25", "dense"]
    assert report["results"][0]["metrics"]["nDCG@10"] == 1.0
    assert (out / "bm25.trec").read_text().startswith("q1 Q0 d1 1 ")
    # a second evaluation reuses the cached index
    result = runner.invoke(
        app,
        [
            "eval",
            "--config",
            str(bm25),
            "--dataset",
            str(data),
            "--output",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ],
    )
    assert "cached" in result.output


def test_errors_are_one_line_not_tracebacks(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    config = write_config(tmp_path / "c.yaml", tiny_model_dir)
    result = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(bad), "--out", str(tmp_path / "i")]
    )
    assert result.exit_code == 2
    assert "bad.jsonl:2" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["query", "--index", str(tmp_path / "missing"), "x"])
    # The exit status is the error's own (rag.core.errors): a bundle that is not there is a NotFoundError.
    assert result.exit_code == BundleNotFoundError.exit_code == 2
    assert "missing does not exist" in result.output


# ---------------------------------------------------------------------------------- output a user trips over


def bm25_bundle(tmp_path, tiny_model_dir):
    """A three-document BM25 bundle (no model is loaded for BM25)."""
    data = write_beir(tmp_path / "beir")
    config = write_config(tmp_path / "bm25.yaml", tiny_model_dir)
    out = tmp_path / "idx"
    result = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(data), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_long_query_is_shortened_to_one_title_line(tmp_path, tiny_model_dir):
    index = bm25_bundle(tmp_path, tiny_model_dir)
    query = " ".join(["yeast"] * 10_000)
    result = runner.invoke(app, ["query", "--index", str(index), "--top-k", "1", query])
    assert result.exit_code == 0, result.output
    assert "d1" in result.output
    assert len(result.output.splitlines()) < 15  # the full query was 600+ lines
    title = next(line for line in result.output.splitlines() if "yeast" in line)
    assert "…" in title and title.count("yeast") <= 14


def test_shorten():
    assert shorten("what   causes\n tides") == "what causes tides"
    long = "word " * 100
    assert shorten(long) == long[:80].rstrip() + "…"
    assert len(shorten(long)) <= 81


def test_empty_result_says_why(tmp_path, tiny_model_dir):
    index = bm25_bundle(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["query", "--index", str(index), "zebra xylophone"])
    assert result.exit_code == 0, result.output
    assert "no passage matched" in result.output
    assert "vocabulary" in result.output
    assert "┏" not in result.output  # no empty table


def test_markup_in_query_and_passage_is_printed_as_typed(tmp_path, tiny_model_dir):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "m1", "title": "[b]Brackets", "text": "a closing [/] tag in text"}))
    config = write_config(tmp_path / "bm25.yaml", tiny_model_dir)
    out = tmp_path / "idx"
    result = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(corpus), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["query", "--index", str(out), "closing tag [/]"])
    assert result.exit_code == 0, result.output
    assert "[/]" in result.output and "[b]Brackets" in result.output


def test_negative_snippet_and_zero_top_k_are_refused(tmp_path, tiny_model_dir):
    index = bm25_bundle(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["query", "--index", str(index), "--snippet", "-5", "yeast"])
    assert result.exit_code == 2
    assert "--snippet" in result.output and "greater than or equal to 0" in result.output
    result = runner.invoke(app, ["query", "--index", str(index), "--top-k", "0", "yeast"])
    assert result.exit_code == 2
    assert "--top-k" in result.output
    result = runner.invoke(app, ["query", "--index", str(index), "--snippet", "0", "yeast"])
    assert result.exit_code == 0, result.output


def test_a_file_given_as_index_is_named_a_file(tmp_path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("hello")
    for args in (["query", "x"], ["delete", "d1"], ["add", "--corpus", str(not_a_folder)]):
        result = runner.invoke(app, [*args, "--index", str(not_a_folder)])
        assert result.exit_code == 2, result.output
        assert "is a file" in result.output and "does not exist" not in result.output
        assert "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["query", "x", "--index", str(empty)])
    assert result.exit_code == 2 and "not an index bundle" in result.output, result.output


def test_missing_corpus_is_refused_before_indexing(tmp_path, tiny_model_dir):
    config = write_config(tmp_path / "bm25.yaml", tiny_model_dir)
    missing = tmp_path / "nowhere.jsonl"
    result = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(missing), "--out", str(tmp_path / "i")]
    )
    assert result.exit_code == 2
    assert "nowhere.jsonl" in result.output and "does not exist" in result.output
    assert not (tmp_path / "i").exists()


@dataclasses.dataclass
class FakeDeleteSummary:
    """The shape of ``rag.pipelines.DeleteSummary``."""

    documents: int
    chunks: int
    chunked: bool
    indexes: list[str]


def test_delete_wording():
    # Without chunking a chunk is a document: no word of chunks.
    line = describe_deletion(
        FakeDeleteSummary(documents=2, chunks=2, chunked=False, indexes=["dense", "bm25"])
    )
    assert line == "deleted 2 documents from the dense and bm25 indexes"
    line = describe_deletion(FakeDeleteSummary(documents=1, chunks=5, chunked=True, indexes=["bm25"]))
    assert line == "deleted 1 document (5 chunks) from the bm25 index"
    assert describe_deletion(3) == "deleted 3 chunks"  # the count older versions return


def test_delete_reports_documents_and_every_side(tmp_path, tiny_model_dir, monkeypatch):
    import rag.pipelines

    index = bm25_bundle(tmp_path, tiny_model_dir)
    seen = {}

    def fake_delete(index_dir, ids, *args, **kwargs):
        seen["call"] = (Path(index_dir), list(ids))
        return FakeDeleteSummary(documents=1, chunks=1, chunked=False, indexes=["dense", "bm25"])

    monkeypatch.setattr(rag.pipelines, "delete_from_bundle", fake_delete)
    result = runner.invoke(app, ["delete", "--index", str(index), "d1"])
    assert result.exit_code == 0, result.output
    assert seen["call"] == (index, ["d1"])
    assert "deleted 1 document from the dense and bm25 indexes" in result.output


# ------------------------------------------------------------------------------------ configs by name


def test_config_by_name(tmp_path):
    data = write_beir(tmp_path / "beir")
    out = tmp_path / "idx"
    result = runner.invoke(app, ["index", "--config", "bm25", "--corpus", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["query", "--index", str(out), "--config", "bm25", "--top-k", "1", "moon"])
    assert result.exit_code == 0 and "d2" in result.output, result.output


def test_unknown_config_name_lists_the_shipped_ones(tmp_path):
    data = write_beir(tmp_path / "beir")
    result = runner.invoke(
        app, ["index", "--config", "dence", "--corpus", str(data), "--out", str(tmp_path / "i")]
    )
    assert result.exit_code == 2
    assert "'dence'" in result.output and ", ".join(configs.available()) in result.output
    # A value that looks like a path stays a path: the loader names the missing file.
    result = runner.invoke(
        app, ["index", "--config", "nope/dense.yaml", "--corpus", str(data), "--out", str(tmp_path / "i")]
    )
    assert result.exit_code == 2
    assert "nope/dense.yaml" in result.output and "does not exist" in result.output


def test_a_file_named_like_a_config_wins_over_the_shipped_one(tmp_path, tiny_model_dir, monkeypatch):
    write_config(tmp_path / "dense", tiny_model_dir, mode="bm25", name="mine")
    monkeypatch.chdir(tmp_path)
    assert configs.resolve("dense") == Path("dense")
    assert configs.resolve("hybrid") == configs.CONFIG_DIR / "hybrid.yaml"


def test_shipped_configs():
    names = configs.available()
    assert {"dense", "bm25", "hybrid", "chunk_grid"} <= set(names)
    for name in ("dense", "bm25", "hybrid"):
        config = load_config(configs.config_path(name))
        assert config.name == name
        assert configs.description(name)
    assert configs.description("dense").startswith("Dense retrieval")


def test_configs_ship_with_the_package():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    tool = pyproject["tool"]
    assert "configs*" in tool["setuptools"]["packages"]["find"]["include"]
    assert tool["setuptools"]["package-data"]["configs"] == ["*.yaml"]
    assert "configs" in tool["mypy"]["packages"]


def test_rag_configs_lists_names_and_descriptions():
    result = runner.invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    for name in configs.available():
        assert name in result.output
    assert "BM25 through bm25s" in result.output
    assert "eval-chunks --grid" in result.output  # the grid is not a pipeline config


# ------------------------------------------------------------------------------- loading bars stay quiet


def test_loading_weights_bars_only_with_progress(tiny_model_dir, capsys):
    from transformers.utils import logging as transformers_logging

    from rag.encoders.dense import DenseEncoder, load_sentence_transformer

    before = transformers_logging.is_progress_bar_enabled()
    load_sentence_transformer.cache_clear()  # a cached model would load nothing, and print nothing
    _ = DenseEncoder(str(tiny_model_dir), progress=False).model
    assert "Loading weights" not in capsys.readouterr().err
    assert transformers_logging.is_progress_bar_enabled() == before  # the setting is restored
    load_sentence_transformer.cache_clear()
    _ = DenseEncoder(str(tiny_model_dir), progress=True).model
    assert "Loading weights" in capsys.readouterr().err  # the bars this test hides do exist


def test_quiet_model_loading_restores_a_disabled_setting():
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    from rag.core.models import quiet_model_loading

    transformers_logging.disable_progress_bar()
    try:
        with quiet_model_loading():
            assert not transformers_logging.is_progress_bar_enabled()
        assert not transformers_logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled()
    finally:
        transformers_logging.enable_progress_bar()
    with quiet_model_loading():
        assert hub_utils.are_progress_bars_disabled()
    assert transformers_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()


def test_dense_query_prints_no_loading_bars(tmp_path, tiny_model_dir):
    from rag.encoders.dense import load_sentence_transformer

    data = write_beir(tmp_path / "beir")
    config = write_config(tmp_path / "dense.yaml", tiny_model_dir, mode="dense")
    out = tmp_path / "idx"
    result = runner.invoke(app, ["index", "--config", str(config), "--corpus", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    load_sentence_transformer.cache_clear()
    result = runner.invoke(app, ["query", "--index", str(out), "--top-k", "1", "moon ocean"])
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output


def test_error_quoting_markup_is_one_line_not_a_traceback(tmp_path, tiny_model_dir):
    index = bm25_bundle(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["delete", "--index", str(index), "[/]"])
    assert result.exit_code == 2, result.output
    assert "[/]" in result.output and "Traceback" not in result.output


def test_eval_chunks_passes_the_recursive_preset_and_refuses_it_elsewhere(tmp_path):
    from rag.cli.evaluation import _chunker_configs

    chunkers, _ = _chunker_configs("recursive", 200, 0, None, "cl100k_base", {"preset": "chroma"})
    assert chunkers == [
        {"method": "recursive", "size": 200, "tokenizer": "cl100k_base", "overlap": 0, "preset": "chroma"}
    ]
    result = runner.invoke(
        app, ["eval-chunks", "--dataset", str(tmp_path), "--chunker", "fixed", "--preset", "chroma"]
    )
    assert result.exit_code == 2 and "--preset apply to --chunker recursive only" in result.output


def test_the_command_line_turns_haystack_telemetry_off_unless_the_user_set_it():
    import os
    import subprocess
    import sys

    show = "import os, rag.cli; print(os.environ['HAYSTACK_TELEMETRY_ENABLED'])"
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"}
    unset = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True)
    assert unset.stdout.strip() == "False"
    chosen = subprocess.run(
        [sys.executable, "-c", show],
        env={**env, "HAYSTACK_TELEMETRY_ENABLED": "True"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert chosen.stdout.strip() == "True"
