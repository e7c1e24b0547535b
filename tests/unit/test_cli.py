from __future__ import annotations

import json

from typer.testing import CliRunner

from rag.cli import app

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
    assert result.exit_code == 0 and "deleted 1 chunks" in result.output, result.output
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
    assert result.exit_code == 2 and "missing does not exist" in result.output
