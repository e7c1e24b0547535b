"""BEIR and chunk-excerpt loaders: tmp folders, clear errors, and the real shared data sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.datasets import (
    ChunkEvalSet,
    Excerpt,
    ExcerptQuestion,
    load_beir,
    load_chunk_eval,
    save_chunk_eval,
)
from rag.core.errors import ConfigError, InputFormatError


def _write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": "q1", "text": "first?"}, {"_id": "q2", "text": "second?"}, {"_id": "q3", "text": "x"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq2\td1\t0\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\t1\n")
    return root


def test_load_beir_keeps_only_judged_queries(tmp_path: Path) -> None:
    data = load_beir(_write_beir(tmp_path / "beir"))
    assert data.queries == {"q1": "first?", "q2": "second?"}
    assert data.qrels.to_dict() == {"q1": {"d1": 1}, "q2": {"d2": 1, "d1": 0}}
    assert data.corpus_path == tmp_path / "beir" / "corpus.jsonl"
    assert load_beir(tmp_path / "beir", split="train").queries == {"q3": "x"}


def test_load_beir_errors_name_missing_files_and_splits(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "beir")
    with pytest.raises(ConfigError, match=r"missing qrels/dev.tsv \(splits found: test, train\)"):
        load_beir(root, split="dev")
    (root / "queries.jsonl").unlink()
    (root / "corpus.jsonl").unlink()
    with pytest.raises(ConfigError, match="missing corpus.jsonl, queries.jsonl"):
        load_beir(root)
    with pytest.raises(ConfigError, match="not found"):
        load_beir(tmp_path / "nowhere")


def test_load_beir_judged_query_without_text(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "beir")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "first?"}) + "\n")
    with pytest.raises(InputFormatError, match="not in queries.jsonl.*q2"):
        load_beir(root)


def test_load_beir_scifact(shared_data: Path) -> None:
    test = load_beir(shared_data / "beir" / "scifact")
    assert len(test.queries) == 300
    assert sum(len(docs) for docs in test.qrels.values()) == 339
    train = load_beir(shared_data / "beir" / "scifact", split="train")
    assert (len(train.queries), sum(len(d) for d in train.qrels.values())) == (809, 919)


def test_load_chunk_eval_real_set(shared_data: Path) -> None:
    data = load_chunk_eval(shared_data / "chunking_eval")
    assert len(data.questions) == 472
    assert data.reference_count == 790
    assert data.mismatches == []
    assert sorted(data.corpora) == ["chatlogs", "finance", "pubmed", "state_of_the_union", "wikitexts"]
    first = data.questions[0]
    assert first.corpus_id == "state_of_the_union"
    assert first.spans()[0] == ("state_of_the_union", 27346, 27425)


def _write_chunk_set(
    root: Path, text: bytes, references: list[dict[str, object]], corpus_id: str = "doc"
) -> Path:
    (root / "corpora").mkdir(parents=True)
    (root / "corpora" / "doc.md").write_bytes(text)
    cell = json.dumps(references).replace('"', '""')
    (root / "questions_df.csv").write_text(f'question,references,corpus_id\nWhy?,"{cell}",{corpus_id}\n')
    return root


def test_chunk_eval_offsets_use_default_newline_handling(tmp_path: Path) -> None:
    # "\r\n" is read as "\n", so "b" sits at offset 2.
    root = _write_chunk_set(
        tmp_path / "set", b"a\r\nb c", [{"content": "b", "start_index": 2, "end_index": 3}]
    )
    data = load_chunk_eval(root)
    assert data.corpora["doc"] == "a\nb c"
    assert data.mismatches == []


def test_chunk_eval_reports_mismatches_without_crashing(tmp_path: Path) -> None:
    refs = [
        {"content": "b", "start_index": 0, "end_index": 1},
        {"content": "a", "start_index": 0, "end_index": 1},
    ]
    data = load_chunk_eval(_write_chunk_set(tmp_path / "one", b"a b", refs))
    assert len(data.questions) == 1
    assert len(data.mismatches) == 1
    assert "reference 0" in data.mismatches[0]
    data = load_chunk_eval(_write_chunk_set(tmp_path / "two", b"a b", refs, corpus_id="other"))
    assert len(data.mismatches) == 1
    assert "'other'" in data.mismatches[0]


def test_chunk_eval_format_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing corpora/, questions_df.csv"):
        load_chunk_eval(tmp_path)
    root = _write_chunk_set(tmp_path / "set", b"abc", [{"content": "a"}])
    with pytest.raises(InputFormatError, match="start_index"):
        load_chunk_eval(root)


def test_save_and_load_round_trip(tmp_path: Path, shared_data: Path) -> None:
    data = load_chunk_eval(shared_data / "chunking_eval")
    subset = ChunkEvalSet(
        corpora={"state_of_the_union": data.corpora["state_of_the_union"]},
        questions=[q for q in data.questions if q.corpus_id == "state_of_the_union"],
    )
    save_chunk_eval(subset, tmp_path / "copy")
    again = load_chunk_eval(tmp_path / "copy")
    assert again.corpora == subset.corpora
    assert again.questions == subset.questions
    assert again.mismatches == []


def test_save_refuses_carriage_returns_and_unknown_corpus(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="normalize newlines"):
        save_chunk_eval(ChunkEvalSet(corpora={"d": "a\r\nb"}, questions=[]), tmp_path / "x")
    question = ExcerptQuestion("q", "missing", [Excerpt("a", 0, 1)])
    with pytest.raises(ConfigError, match="'missing'"):
        save_chunk_eval(ChunkEvalSet(corpora={"d": "ab"}, questions=[question]), tmp_path / "y")
