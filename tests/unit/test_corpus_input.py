"""Corpus input that used to crash or lose data: lone surrogates, pipes, user metadata, chunk ids, and
input errors raised without importing haystack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from haystack import Document

from rag.core.chunking import RecursiveChunker, chunk_documents
from rag.core.errors import ConfigError, InputFormatError
from rag.core.readers import RESERVED_META_KEYS, read_corpus


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------ lone surrogates (item 7a)


def test_lone_surrogates_anywhere_are_replaced_and_reported(tmp_path: Path) -> None:
    # json.dumps escapes a lone surrogate as \udXXX, exactly what a broken exporter writes.
    path = write_lines(
        tmp_path / "docs.jsonl",
        [
            json.dumps({"id": "fine", "text": "nothing odd", "emoji": "\U0001f600"}),
            json.dumps({"id": "a\ud800", "text": "x\udfffy", "title": "T\ud801"}),
            '{"id": "pair", "text": "\\ud83d\\ude00 ok"}',
            json.dumps({"id": "m", "text": "t", "metadata": {"k\udc00": ["v\ud9ff"]}, "note": "n\udbff"}),
        ],
    )
    report = read_corpus(path)
    docs = {d.id: d for d in report.documents}
    assert sorted(docs) == ["a\ufffd", "fine", "m", "pair"]
    assert docs["a\ufffd"].content == "x\ufffdy" and docs["a\ufffd"].meta == {"title": "T\ufffd"}
    assert docs["pair"].content == "\U0001f600 ok"  # a complete escaped pair is one character, kept
    assert docs["fine"].meta == {"emoji": "\U0001f600"}
    assert docs["m"].meta == {"k\ufffd": ["v\ufffd"], "note": "n\ufffd"}
    # Everything can now be written as UTF-8 (this raised UnicodeEncodeError before).
    json.dumps([(d.id, d.content, d.meta) for d in report.documents], ensure_ascii=False).encode("utf-8")
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert str(path) in warning and "U+FFFD" in warning and "2 line(s): 2, 4" in warning


def test_lone_surrogates_that_make_two_keys_equal_are_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "docs.jsonl", ['{"id": "a", "text": "t", "k\\ud800": 1, "k\\ud801": 2}'])
    with pytest.raises(InputFormatError, match=r"docs\.jsonl:1: key 'k\ufffd' appears twice"):
        read_corpus(path)


def test_ids_that_differ_only_in_lone_surrogates_are_duplicates(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "docs.jsonl", ['{"id": "a\\ud800", "text": "1"}', '{"id": "a\\ud801", "text": "2"}']
    )
    with pytest.raises(InputFormatError, match=r"duplicate document id 'a\ufffd' \(first on line 1"):
        read_corpus(path)


# ------------------------------------------------------------------ pipes and odd paths (item 7c)


def _feed_fifo(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as handle:  # blocks until the reader opens the other end
            handle.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_fifo_is_read_as_jsonl(tmp_path: Path) -> None:
    fifo = tmp_path / "corpus"  # no .jsonl suffix, like <(cat x.jsonl) or /dev/stdin
    os.mkfifo(fifo)
    rows = [{"id": "a", "text": "alpha", "title": "A"}, {"id": "b", "text": "beta", "lang": "en"}]
    writer = _feed_fifo(fifo, "".join(json.dumps(r) + "\n" for r in rows).encode())
    report = read_corpus(fifo)
    writer.join(timeout=5)
    assert report.layout == "jsonl"
    assert [(d.id, d.content, d.meta) for d in report.documents] == [
        ("a", "alpha", {"title": "A"}),
        ("b", "beta", {"lang": "en"}),
    ]


def test_a_fifo_gets_the_jsonl_rules_and_is_named_as_given(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, b'{"id": "a", "text": "ok"}\n{"id": "b", "text": \n')
    with pytest.raises(InputFormatError, match="malformed JSON") as info:
        read_corpus(fifo)
    writer.join(timeout=5)
    assert str(info.value).startswith(f"{fifo}:2: ")


def test_a_redirected_regular_file_under_dev_fd_is_read_as_jsonl(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "docs.data", [json.dumps({"id": "a", "text": "alpha"})])
    fd = os.open(path, os.O_RDONLY)
    try:
        report = read_corpus(f"/dev/fd/{fd}")  # what `--corpus /dev/stdin < docs.data` resolves to
    finally:
        os.close(fd)
    assert [d.id for d in report.documents] == ["a"]


def test_missing_path_and_socket_are_refused_with_the_accepted_layouts(tmp_path: Path) -> None:
    layouts = r"BEIR folder containing corpus\.jsonl.*\.jsonl file.*pipe such as /dev/stdin.*\.txt / \.md"
    with pytest.raises(InputFormatError, match=r"does not exist; expected a " + layouts):
        read_corpus(tmp_path / "nothing.jsonl")
    with pytest.raises(InputFormatError, match=r"does not exist"):
        read_corpus(tmp_path / "nothing.jsonl" / "below")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(InputFormatError, match=r"sock: corpus path is a socket.*" + layouts):
            read_corpus(tmp_path / "sock")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_an_unreadable_file_is_refused_clearly(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "docs.jsonl", [json.dumps({"id": "a", "text": "alpha"})])
    path.chmod(0)
    try:
        with pytest.raises(InputFormatError, match=r"cannot read .*docs\.jsonl \(Permission denied\)"):
            read_corpus(path)
    finally:
        path.chmod(0o600)


# ------------------------------------------------------------------ user metadata never lost (item 9)


def test_id_and_underscore_id_must_agree(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "docs.jsonl", ['{"id": "a", "_id": "b", "text": "t"}'])
    with pytest.raises(
        InputFormatError, match=r"docs\.jsonl:1: fields 'id' \('a'\) and '_id' \('b'\) disagree"
    ):
        read_corpus(path)
    same = write_lines(tmp_path / "same.jsonl", ['{"id": 7, "_id": "7", "text": "t", "x": 1}'])
    assert [(d.id, d.meta) for d in read_corpus(same).documents] == [("7", {"x": 1})]


@pytest.mark.parametrize("key", RESERVED_META_KEYS)
def test_reserved_field_names_are_refused_at_read_time(tmp_path: Path, key: str) -> None:
    top = write_lines(
        tmp_path / "top.jsonl", ['{"id": "a", "text": "t"}', json.dumps({"id": "b", "text": "t", key: 1})]
    )
    with pytest.raises(InputFormatError, match=rf"top\.jsonl:2: field '{key}', a name reserved.*user_{key}"):
        read_corpus(top)
    nested = tmp_path / "beir"
    nested.mkdir()
    write_lines(nested / "corpus.jsonl", [json.dumps({"_id": "a", "text": "t", "metadata": {key: 1}})])
    with pytest.raises(InputFormatError, match=rf"corpus\.jsonl:1: field 'metadata' holds '{key}'"):
        read_corpus(nested)


def test_metadata_keys_clashing_with_top_level_fields(tmp_path: Path) -> None:
    clash = write_lines(
        tmp_path / "clash.jsonl", ['{"id": "a", "text": "t", "src": "x", "metadata": {"src": "y"}}']
    )
    with pytest.raises(
        InputFormatError, match=r"clash\.jsonl:1: field 'src' is both a top-level field \('x'\)"
    ):
        read_corpus(clash)
    agree = write_lines(
        tmp_path / "agree.jsonl", ['{"id": "a", "text": "t", "src": "x", "metadata": {"src": "x"}}']
    )
    assert read_corpus(agree).documents[0].meta == {"src": "x"}


def test_a_repeated_key_in_one_object_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "docs.jsonl", ['{"id": "a", "text": "t", "tag": 1, "tag": 2}'])
    with pytest.raises(InputFormatError, match=r"docs\.jsonl:1: key 'tag' appears twice"):
        read_corpus(path)


def test_user_fields_survive_chunking(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "docs.jsonl",
        [
            json.dumps(
                {"id": "d1", "text": "alpha beta gamma delta", "user_start": 5, "metadata": {"page": 3}}
            )
        ],
    )
    chunks = chunk_documents(read_corpus(path).documents, RecursiveChunker(12, length="chars"))
    assert [c.meta for c in chunks] == [
        {"user_start": 5, "page": 3, "source_id": "d1", "start": 0, "end": 10, "chunk_index": 0},
        {"user_start": 5, "page": 3, "source_id": "d1", "start": 11, "end": 22, "chunk_index": 1},
    ]
    assert set(chunks[0].meta) - {"user_start", "page"} == set(RESERVED_META_KEYS)


def test_chunk_documents_never_overwrites_a_different_bookkeeping_value() -> None:
    doc = Document(id="d1", content="alpha beta gamma delta", meta={"start": 5})
    with pytest.raises(ConfigError, match=r"'d1': meta\['start'\] = 5 would be overwritten.*'user_start'"):
        chunk_documents([doc], RecursiveChunker(12, length="chars"))
    with pytest.raises(ConfigError, match=r"meta\['source_id'\] = 'other'"):
        chunk_documents([Document(id="d2", content="x", meta={"source_id": "other"})], None)
    # The same values chunking would write are not a loss: an unchunked document read back re-indexes.
    again = Document(id="d3", content="xyz", meta={"source_id": "d3", "start": 0, "end": 3, "chunk_index": 0})
    assert chunk_documents([again], None)[0].meta == again.meta


# ------------------------------------------------------------------ unambiguous chunk ids (item 12)


def test_a_document_id_of_the_chunk_id_form_is_refused_when_chunking() -> None:
    docs = [Document(id="d03", content="alpha beta gamma"), Document(id="d03#0", content="other text")]
    with pytest.raises(ConfigError) as info:
        chunk_documents(docs, RecursiveChunker(12, length="chars"))
    message = str(info.value)
    assert (
        "'d03#0'" in message and "chunk 0 of document 'd03', also in this corpus, gets the same id" in message
    )
    assert "'d03_0'" in message and "method: none" in message
    # Alone it is refused too: `rag add` of d03 later would make the same clash.
    with pytest.raises(ConfigError, match=r"'x#12'.*chunk 12 of a document 'x', added now or later"):
        chunk_documents([Document(id="x#12", content="text")], RecursiveChunker(12, length="chars"))
    # Without chunking no id is generated, so both ids are fine.
    assert [c.id for c in chunk_documents(docs, None)] == ["d03", "d03#0"]


def test_chunk_ids_never_equal_document_ids_or_each_other() -> None:
    ids = ["a", "a#", "a#b", "#", "a#0x", "a#b#c", "1", "a b"]
    docs = [Document(id=i, content="one two three four five six seven") for i in ids]
    chunks = chunk_documents(docs, RecursiveChunker(8, length="chars"))
    chunk_ids = [c.id for c in chunks]
    assert len(chunk_ids) > 2 * len(ids)
    assert len(set(chunk_ids)) == len(chunk_ids)
    assert not set(chunk_ids) & set(ids)


def test_duplicate_document_ids_are_refused_by_chunk_documents() -> None:
    docs = [Document(id="a", content="x"), Document(id="a", content="y")]
    for chunker in (None, RecursiveChunker(8, length="chars")):
        with pytest.raises(ConfigError, match=r"document id 'a' appears twice"):
            chunk_documents(docs, chunker)


# ------------------------------------------------------------------ no heavy import on input errors (item 11)

_PROBE = """
import json, sys
import rag.core.chunking  # chunk_documents imports haystack only when it runs
from rag.core.errors import InputFormatError
from rag.core.readers import read_corpus
out = []
for path in sys.argv[1:]:
    try:
        read_corpus(path)
        out.append(["read", path, "haystack" in sys.modules])
    except InputFormatError as error:
        out.append([str(error), path, "haystack" in sys.modules])
print(json.dumps(out))
"""


def test_input_errors_are_raised_without_importing_haystack(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "text": "fine"})
    bad = {
        "malformed": [good, '{"id": "b", "text": '],
        "missing": [good, '{"id": "b"}'],
        "duplicate": [good, good],
        "reserved": [good, '{"id": "b", "text": "t", "start": 3}'],
        "ids": ['{"id": "a", "_id": "b", "text": "t"}'],
    }
    paths = [str(write_lines(tmp_path / f"{name}.jsonl", lines)) for name, lines in bad.items()]
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *paths, "-"],  # "-" does not exist: the layouts error
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(result.stdout)
    assert [row[1] for row in rows] == [*paths, "-"]
    for message, path, imported in rows:
        assert message.startswith(f"{path}:"), message
        assert imported is False, f"haystack was imported before the error for {path}"
    # Through a real pipe on stdin, named as given.
    piped = subprocess.run(
        [sys.executable, "-c", _PROBE, "/dev/stdin"],
        input=f"{good}\n{good}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [[message, _, imported]] = json.loads(piped.stdout)
    assert message.startswith("/dev/stdin:2: duplicate document id 'a'") and imported is False
