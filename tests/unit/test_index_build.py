"""build_index end to end with the tiny encoder, and load_index dispatch."""

from __future__ import annotations

import pytest
from haystack import Document

from indexers.bm25 import BM25Index
from indexers.build import build_index, directory_size, load_index
from indexers.dense import DenseIndex
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.encoders.dense import DenseEncoder

CHUNKS = [
    Document(id="c1", content="The mitochondria is the powerhouse of the cell.", meta={"title": "Biology"}),
    Document(id="c2", content="Paris is the capital of France.", meta={"title": "Geography"}),
    Document(id="c3", content="   ", meta={"title": "Blank"}),
    Document(id="c4", content="Water boils at one hundred degrees Celsius.", meta={}),
]


def test_build_dense_index_with_tiny_encoder(tiny_model_dir, tmp_path):
    encoder = DenseEncoder(str(tiny_model_dir))
    out = tmp_path / "dense"
    summary = build_index(CHUNKS, out, "flat", encoder=encoder, progress=False, documents=3)
    assert (summary.documents, summary.chunks, summary.index_type) == (3, 3, "flat")
    assert summary.skipped == {"empty": 1}
    assert summary.bytes_on_disk == directory_size(out) > 0 and summary.path == str(out)

    index = load_index(out, encoder.fingerprint)
    assert isinstance(index, DenseIndex) and index.ids == ["c1", "c2", "c4"]
    # The stored vectors are those of join_title(title, content): querying with that text ranks it first.
    query = encoder.encode_queries(["Geography Paris is the capital of France."])
    hit_id, score = index.search(query, top_k=1)[0][0]
    assert hit_id == "c2" and score == pytest.approx(1.0, abs=1e-4)

    other = DenseEncoder(str(tiny_model_dir), max_length=64)
    with pytest.raises(EncoderMismatchError, match="max_length"):
        load_index(out, other.fingerprint)


def test_build_bm25_needs_no_encoder(tmp_path):
    summary = build_index(CHUNKS, tmp_path / "bm25", "BM25", progress=False)
    assert summary.index_type == "bm25" and summary.chunks == 3 and summary.documents == 3
    index = load_index(tmp_path / "bm25")
    assert isinstance(index, BM25Index)
    assert index.search(["capital of France"], 2)[0][0][0] == "c2"


def test_build_errors_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="needs an encoder"):
        build_index(CHUNKS, tmp_path / "x", "hnsw")
    with pytest.raises(ConfigError, match="index_type"):
        build_index(CHUNKS, tmp_path / "x", "lucene")
    with pytest.raises(ConfigError, match="'c1'"):
        build_index([*CHUNKS, CHUNKS[0]], tmp_path / "x", "bm25")
    assert not (tmp_path / "x").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an index"):
        build_index(CHUNKS, tmp_path / "notes", "bm25")
