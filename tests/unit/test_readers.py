"""Corpus readers: every layout, metadata, and every documented refusal or skip."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from haystack import Document

from rag.core.errors import ConfigError, InputFormatError
from rag.core.readers import ReadReport, iter_jsonl, read_corpus


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def by_id(report: ReadReport) -> dict[str, Document]:
    return {doc.id: doc for doc in report.documents}


def test_beir_folder_keeps_title_in_meta_and_merges_metadata(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {
                "_id": "d1",
                "title": "Cats",
                "text": "Cats purr.",
                "metadata": {"year": 2020},
                "source": "wiki",
            },
            {"_id": "d2", "title": "", "text": "Dogs bark."},
        ],
    )
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "cats?"}])
    report = read_corpus(tmp_path)
    docs = by_id(report)
    assert report.layout == "beir"
    assert list(docs) == ["d1", "d2"]
    assert docs["d1"].content == "Cats purr."
    assert docs["d1"].meta == {"title": "Cats", "year": 2020, "source": "wiki"}
    assert docs["d2"].meta == {"title": ""}
    assert report.skipped == {} and report.warnings == []


def test_jsonl_file_keeps_other_fields_and_integer_ids(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": 7, "text": "seven", "title": "Seven", "tags": ["a", "b"]},
            {"id": "x", "text": "ex", "title": None, "lang": "en"},
        ],
    )
    report = read_corpus(path)
    docs = by_id(report)
    assert report.layout == "jsonl"
    assert docs["7"].content == "seven"
    assert docs["7"].meta == {"title": "Seven", "tags": ["a", "b"]}
    assert docs["x"].meta == {"lang": "en"}


def test_text_folder_ids_titles_newlines_and_skipped_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"line one\r\nline two\rthree")
    (tmp_path / "sub" / "Notes.md").write_text("# Notes\n\nbody", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("secret", encoding="utf-8")
    report = read_corpus(tmp_path)
    docs = by_id(report)
    assert report.layout == "text_folder"
    assert sorted(docs) == ["a.txt", "sub/Notes.md"]
    assert docs["a.txt"].content == "line one\nline two\nthree"  # as Python's text mode reads it
    assert docs["sub/Notes.md"].meta == {"title": "Notes"}
    assert report.skipped == {"unsupported_file": 1, "hidden": 1}
    assert any("image.png" in w for w in report.warnings)
    assert any(".hidden" in w for w in report.warnings)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(InputFormatError) as info:
        read_corpus(path)
    assert f"{path}:3:" in str(info.value)
    assert info.value.line == 3 and info.value.path == str(path)
    assert "malformed JSON" in str(info.value)


def test_non_object_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"docs\.jsonl:2: expected a JSON object.*an array"):
        list(iter_jsonl(path))


def test_iter_jsonl_skips_blank_lines_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n   \n\n{"id": "b"}\n')
    assert list(iter_jsonl(path)) == [(1, {"id": "a"}), (4, {"id": "b"})]


def test_duplicate_ids_name_the_id_and_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"id": "a", "text": "3"}],
    )
    with pytest.raises(
        InputFormatError, match=r"duplicate document id 'a' \(first on line 1, again on line 3\)"
    ):
        read_corpus(path)


def test_empty_documents_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [{"id": "a", "text": "kept"}, {"id": "b", "text": ""}, {"id": "c", "text": " \n\t", "title": "T"}],
    )
    report = read_corpus(path)
    assert [d.id for d in report.documents] == ["a"]
    assert report.skipped == {"empty": 2}
    assert any("b, c" in w for w in report.warnings)


def test_empty_document_still_counts_for_duplicate_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": ""}, {"id": "a", "text": "x"}])
    with pytest.raises(InputFormatError, match="duplicate"):
        read_corpus(path)


def test_invalid_utf8_is_replaced_and_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\xe9 ok"}\n')
    report = read_corpus(path)
    assert by_id(report)["b"].content == "caf\ufffd ok"
    assert len(report.warnings) == 1
    assert str(path) in report.warnings[0] and "1 line(s): 2" in report.warnings[0]


def test_invalid_utf8_in_text_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"na\xefve")
    report = read_corpus(tmp_path)
    assert report.documents[0].content == "na\ufffdve"
    assert any("bad.txt" in w and "U+FFFD" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ({"text": "no id"}, r":1: field 'id' \(or '_id'\) is missing \(fields present: text\)"),
        ({"id": "a", "contents": "x"}, r":1: field 'text' missing \(fields present: contents, id\)"),
        ({"id": "a", "text": None}, r"field 'text' must be a string, got null"),
        ({"id": ["a"], "text": "x"}, r"field 'id' must be a string or an integer, got an array"),
        ({"id": "  ", "text": "x"}, r"field 'id' is empty"),
        ({"id": "a", "text": "x", "title": 3}, r"field 'title' must be a string or null, got a number"),
    ],
)
def test_missing_or_bad_fields_are_named(tmp_path: Path, row: dict, pattern: str) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [row])
    with pytest.raises(InputFormatError, match=pattern):
        read_corpus(path)


def test_too_long_documents_are_refused_with_advice(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "x" * 11}])
    with pytest.raises(
        InputFormatError, match=r"'a' has 11 characters, more than max_chars=10.*raise the limit"
    ):
        read_corpus(path, max_chars=10)
    assert len(read_corpus(path, max_chars=None).documents) == 1
    with pytest.raises(ConfigError, match="max_chars"):
        read_corpus(path, max_chars=0)


def test_unknown_layouts_list_what_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,text\n", encoding="utf-8")
    for bad in (tmp_path, tmp_path / "data.csv", tmp_path / "missing"):
        with pytest.raises(
            InputFormatError, match=r"BEIR folder containing corpus\.jsonl.*\.jsonl file.*\.txt / \.md"
        ):
            read_corpus(bad)


def test_gzipped_beir_corpus_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl.gz").write_bytes(b"")
    with pytest.raises(InputFormatError, match="gunzip"):
        read_corpus(tmp_path)


def test_scifact_reads_completely(shared_data: Path) -> None:
    report = read_corpus(shared_data / "beir" / "scifact")
    assert len(report.documents) == 5183
    assert report.skipped == {}
    assert all("title" in doc.meta for doc in report.documents)


def test_chunking_eval_offsets_match_the_reference_spans(shared_data: Path) -> None:
    folder = shared_data / "chunking_eval"
    report = read_corpus(folder / "corpora")
    texts = {Path(doc.id).stem: doc.content or "" for doc in report.documents}
    with open(folder / "questions_df.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for ref in json.loads(row["references"]):
            assert texts[row["corpus_id"]][ref["start_index"] : ref["end_index"]] == ref["content"]
