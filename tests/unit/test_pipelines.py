"""Pipelines end to end on a tiny corpus with a tiny random encoder (weights do not matter here)."""

from __future__ import annotations

import json

import pytest

from rag.core.config import RagConfig
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.pipelines import (
    add_to_bundle,
    build_bundle,
    build_pipeline,
    delete_from_bundle,
    load_pipeline,
    read_build_summary,
    retrieve,
    save_pipeline,
)

TEXTS = {
    "a": "Bread dough rises because yeast ferments sugar into carbon dioxide.",
    "b": "Tides come from the moon's gravity pulling on the oceans.",
    "c": "Honey bees swarm to find a new nest when the colony grows.",
    "d": "Solar panels turn sunlight into electricity with silicon cells.",
}


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"id": k, "text": v, "title": k.upper()}) for k, v in TEXTS.items()))
    return path


def config_for(mode: str, model: str, **chunking) -> RagConfig:
    return RagConfig.from_dict(
        {
            "name": mode,
            "encoder": {"model": model},
            "retrieval": {"mode": mode, "top_k": 3, "candidates": 4},
            "chunking": chunking or {"method": "none"},
        }
    )


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_build_query_and_yaml_round_trip(tmp_path, corpus, tiny_model_dir, mode):
    config = config_for(mode, str(tiny_model_dir))
    summary = build_bundle(config, corpus, tmp_path / "idx", progress=False)
    assert (summary.documents, summary.chunks) == (4, 4)
    assert read_build_summary(tmp_path / "idx") == summary
    pipe = build_pipeline(None, tmp_path / "idx")
    docs = retrieve(pipe, "yeast makes dough rise", top_k=2)
    # BM25 returns only documents sharing a term with the query; the others always fill top_k.
    assert len(docs) == (1 if mode == "bm25" else 2) and all(d.id in TEXTS for d in docs)
    assert all(a.score >= b.score for a, b in zip(docs, docs[1:], strict=False))
    if mode == "bm25":
        assert docs[0].id == "a"
    save_pipeline(pipe, tmp_path / "pipe.yaml")
    reloaded = load_pipeline(tmp_path / "pipe.yaml")
    assert [d.id for d in retrieve(reloaded, "yeast makes dough rise", top_k=2)] == [d.id for d in docs]


def test_bad_queries_are_clear_errors(tmp_path, corpus, tiny_model_dir):
    build_bundle(config_for("bm25", str(tiny_model_dir)), corpus, tmp_path / "idx", progress=False)
    pipe = build_pipeline(None, tmp_path / "idx")
    with pytest.raises(ConfigError, match="non-empty string"):
        retrieve(pipe, "   ")
    with pytest.raises(ConfigError, match="top_k must be a positive integer"):
        retrieve(pipe, "bees", top_k=0)


def test_query_encoder_must_match_index(tmp_path, corpus, tiny_model_dir):
    build_bundle(config_for("dense", str(tiny_model_dir)), corpus, tmp_path / "idx", progress=False)
    other = RagConfig.from_dict({"encoder": {"model": str(tiny_model_dir), "normalize": False}})
    pipe = build_pipeline(other, tmp_path / "idx")
    with pytest.raises(EncoderMismatchError, match="normalize: index has True, encoder has False"):
        pipe.warm_up()


def test_chunked_bundle_keeps_offsets(tmp_path, corpus, tiny_model_dir):
    config = config_for("bm25", str(tiny_model_dir), method="fixed", size=5, overlap=2, tokenizer="words")
    summary = build_bundle(config, corpus, tmp_path / "idx", progress=False)
    assert summary.chunks > summary.documents
    for doc in retrieve(build_pipeline(None, tmp_path / "idx"), "moon gravity oceans", top_k=3):
        source = TEXTS[doc.meta["source_id"]]
        assert source[doc.meta["start"] : doc.meta["end"]] == doc.content


@pytest.mark.parametrize("mode", ["hybrid"])
def test_add_and_delete_persist_in_every_index(tmp_path, corpus, tiny_model_dir, mode):
    build_bundle(config_for(mode, str(tiny_model_dir)), corpus, tmp_path / "idx", progress=False)
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "e", "text": "Volcanoes erupt when magma rises through the crust."}))
    add_to_bundle(tmp_path / "idx", extra, progress=False)
    assert read_build_summary(tmp_path / "idx").documents == 5
    with pytest.raises(ConfigError, match="already in"):
        add_to_bundle(tmp_path / "idx", extra, progress=False)
    found = retrieve(build_pipeline(None, tmp_path / "idx"), "magma volcanoes erupt", top_k=5)
    assert "e" in {d.id for d in found}

    deleted = delete_from_bundle(tmp_path / "idx", ["a", "e"])
    assert (deleted.documents, deleted.chunks, deleted.indexes) == (2, 2, ["dense", "bm25"])
    with pytest.raises(ConfigError, match="no document or chunk with id"):
        delete_from_bundle(tmp_path / "idx", ["a"])
    ids = {d.id for d in retrieve(build_pipeline(None, tmp_path / "idx"), "yeast dough magma", top_k=10)}
    assert ids == {"b", "c", "d"}
    assert read_build_summary(tmp_path / "idx").documents == 3


def test_truncation_by_the_encoder_is_reported(tmp_path, tiny_model_dir):
    path = tmp_path / "long.jsonl"
    path.write_text(
        json.dumps({"id": "long", "text": "word " * 400}) + "\n" + json.dumps({"id": "short", "text": "tiny"})
    )
    summary = build_bundle(config_for("dense", str(tiny_model_dir)), path, tmp_path / "idx", progress=False)
    assert any("1 of 2 chunks are longer than the encoder's 128-token limit" in w for w in summary.warnings)


def test_compress_and_generate_pipeline_saves_loads_and_raises_our_errors(tmp_path, corpus):
    from rag.core.errors import RagError
    from rag.pipelines import run_query

    stages = [
        {"kind": "compress", "name": "random", "ratio": 0.5, "tokenizer": "words"},
        {"kind": "prompt", "name": "chat"},
        # Nothing listens there: the call fails, and the error must be ours, not Haystack's wrapper.
        {
            "kind": "generate",
            "name": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "timeout": 2.0,
        },
    ]
    config = RagConfig.from_dict({"name": "g", "retrieval": {"mode": "bm25"}, "stages": stages})
    build_bundle(config, corpus, tmp_path / "idx", progress=False)
    pipe = build_pipeline(config, tmp_path / "idx")
    save_pipeline(pipe, tmp_path / "pipe.yaml")
    reloaded = load_pipeline(tmp_path / "pipe.yaml")
    assert set(dict(reloaded.walk())) == set(dict(pipe.walk()))
    with pytest.raises(RagError, match="127.0.0.1:9"):
        run_query(reloaded, "yeast dough", top_k=2)
