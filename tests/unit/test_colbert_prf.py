"""ColBERT-PRF: each step against hand-computed values, the two modes as components, the bad inputs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from haystack import Document, Pipeline

from indexers.multivector import MultiVectorIndex
from rag.colbert.testing import FakeColBERTEncoder
from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.encoders.dense import EncoderFingerprint
from rag.pipelines import load_pipeline
from rag.retrievers.colbert import ColBERTRetriever
from rag.retrievers.prf import (
    EXPANSION_KEY,
    ColBERTPRF,
    check_prf_settings,
    expand_query,
    most_frequent_tokens,
    select_expansion,
)
from rag.stages import build_stages

TEXTS = {
    "tides": "The moon pulls the ocean and makes tides rise twice a day",
    "moon": "The moon orbits the earth; its gravity pulls on the ocean",
    "ocean": "Ocean tides follow the moon and the sun",
    "bees": "Honeybees dance to show other bees where flowers are",
    "flowers": "Flowers make nectar that bees collect",
    "volcano": "A volcano erupts when magma rises through the crust",
    "crust": "The crust of the earth floats on the mantle",
    "rain": "Rain falls when water droplets in clouds grow heavy",
}


# ------------------------------------------------------------------------------------------ steps


def test_most_frequent_token_skips_special_and_breaks_ties_nearest_first() -> None:
    special = {101, 102}
    neighbours = np.array(
        [
            [101, 101, 101, 7, 8, 8, 7, -1, 101, 102],  # 7 and 8 twice each: 7 is met first
            [101, 102, 101, 102, 101, 102, 101, 102, 101, 102],  # only special tokens: dropped
            [9, 5, 5, 5, 9, 101, 101, 101, 101, 101],  # 5 three times
        ]
    )
    assert most_frequent_tokens(neighbours, lambda t: t in special) == [7, None, 5]


def test_expansion_is_ranked_by_idf_and_weighted_beta_idf() -> None:
    centroids = np.arange(10, dtype=np.float32).reshape(5, 2)
    tokens: list[int | None] = [11, 12, None, 14, 15]
    # N = 9 documents; df 8, 0, -, 2, 2  ->  IDF ln(10/9), ln(10), -, ln(10/3), ln(10/3)
    idf = np.log(10 / (np.array([8, 0, 0, 2, 2]) + 1.0))
    vectors, ids, weights = select_expansion(centroids, tokens, idf, fb_embs=3, beta=0.5)
    assert ids == [12, 14, 15]  # the IDF tie (14, 15) keeps k-means order; the None centroid is gone
    np.testing.assert_allclose(weights, 0.5 * np.log([10.0, 10 / 3, 10 / 3]))
    np.testing.assert_array_equal(vectors, centroids[[1, 3, 4]])
    _, ids_all, _ = select_expansion(centroids, tokens, idf, fb_embs=10, beta=1.0)
    assert ids_all == [12, 14, 15, 11]  # fewer centroids with a token than fb_embs: all of them


def test_settings_are_checked() -> None:
    assert check_prf_settings(24, 10, 3, 1) == (24, 10, 3, 1.0)
    with pytest.raises(ConfigError, match=r"k=10 <= fb_embs=10"):
        check_prf_settings(10, 10, 3, 1.0)
    with pytest.raises(ConfigError, match="fb_docs"):
        check_prf_settings(24, 10, 0, 1.0)
    with pytest.raises(ConfigError, match="beta"):
        check_prf_settings(24, 10, 3, -1)
    with pytest.raises(ConfigError, match="mode must be one of"):
        ColBERTPRF(mode="expand")


# ------------------------------------------------------------------------------------------ index + fake


@pytest.fixture(scope="module")
def encoder() -> FakeColBERTEncoder:
    return FakeColBERTEncoder("prf-fake", dim=32, query_maxlen=12)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, encoder: FakeColBERTEncoder) -> Path:
    docs = [Document(id=k, content=v) for k, v in TEXTS.items()]
    vectors = encoder.encode_documents(list(TEXTS.values()))
    fp = EncoderFingerprint.from_dict(encoder.fingerprint())
    index = MultiVectorIndex.build(
        docs, embeddings=vectors, params={"codec": "fp16", "exhaustive": True}, fingerprint=fp
    )
    folder = tmp_path_factory.mktemp("prf") / "multivector"
    index.save(folder)
    return folder


def retriever(index_dir: Path, encoder: FakeColBERTEncoder, top_k: int = 8) -> ColBERTRetriever:
    r = ColBERTRetriever(
        str(index_dir), colbert={"model": "prf-fake", "dim": 32, "exhaustive": True}, top_k=top_k
    )
    r.encoder = encoder  # the stand-in instead of a checkpoint
    return r


def run_prf(
    index_dir: Path, encoder: FakeColBERTEncoder, query: str, **settings: Any
) -> tuple[list[Document], list[Document]]:
    first = retriever(index_dir, encoder).run(query)
    prf = ColBERTPRF(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = prf.run(first["documents"], first["first_pass"], top_k=settings.get("top_k", 8))
    return first["documents"], out["documents"]


def test_expansion_tokens_come_from_the_feedback_documents(
    index_dir: Path, encoder: FakeColBERTEncoder
) -> None:
    first, docs = run_prf(index_dir, encoder, "why do tides rise", fb_docs=2, k=6, fb_embs=3)
    expansion = docs[0].meta[EXPANSION_KEY]
    assert all(doc.meta[EXPANSION_KEY] == expansion for doc in docs)
    assert 1 <= len(expansion) <= 3
    corpus_words = set(" ".join(TEXTS.values()).lower().replace(";", " ").split())
    assert {e["token"] for e in expansion} <= corpus_words
    # Weight beta * IDF = ln((N + 1) / (df + 1)) with N = 8 documents, df counted in TEXTS.
    for entry in expansion:
        df = sum(entry["token"] in text.lower().replace(";", " ").split() for text in TEXTS.values())
        assert entry["weight"] == pytest.approx(np.log(9 / (df + 1)), abs=1e-4)
    weights = [e["weight"] for e in expansion]
    assert weights == sorted(weights, reverse=True)


def test_expand_query_picks_the_centroid_tokens(index_dir: Path, encoder: FakeColBERTEncoder) -> None:
    index = MultiVectorIndex.load(index_dir)
    # Feedback = one document's vectors; k = its token count, so every centroid is one of its tokens.
    [vectors] = index.token_vectors(["bees"])
    [ids] = index.token_ids(["bees"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expansion = expand_query(index, [vectors], encoder.tokenizer, k=len(vectors), fb_embs=4, beta=2.0)
    # Each centroid's token is the most frequent among its 10 nearest stored tokens, in any document
    # (a word repeated across the corpus can outvote the centroid's own): never a special token.
    corpus_words = set(" ".join(TEXTS.values()).lower().replace(";", " ").split())
    assert expansion.tokens and set(expansion.tokens) <= corpus_words
    assert len(ids) >= len(vectors)
    np.testing.assert_allclose(expansion.weights, 2.0 * index.idf(np.array(expansion.token_ids)), rtol=1e-6)
    # Ranked by IDF: document frequencies ascending.
    dfs = index.document_frequency(np.array(expansion.token_ids))
    assert list(dfs) == sorted(dfs)


def test_beta_zero_keeps_the_first_pass_ranking(index_dir: Path, encoder: FakeColBERTEncoder) -> None:
    for mode in ("ranker", "reranker"):
        first, docs = run_prf(
            index_dir, encoder, "moon gravity ocean", mode=mode, fb_docs=3, k=8, fb_embs=4, beta=0.0
        )
        assert [(d.id, round(d.score or 0, 4)) for d in docs] == [
            (d.id, round(d.score or 0, 4)) for d in first
        ]


def test_reranker_rescores_only_the_first_pass_documents(
    index_dir: Path, encoder: FakeColBERTEncoder
) -> None:
    r = retriever(index_dir, encoder, top_k=4)
    first = r.run("bees and flowers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ColBERTPRF(mode="reranker", fb_docs=2, k=8, fb_embs=3).run(
            first["documents"], first["first_pass"], top_k=4
        )
    assert {d.id for d in out["documents"]} == {d.id for d in first["documents"]}
    # Ranker over the whole index, with the same expansion, scores them identically.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = ColBERTPRF(mode="ranker", fb_docs=2, k=8, fb_embs=3).run(
            first["documents"], first["first_pass"], top_k=8
        )
    scores = {d.id: d.score for d in ranked["documents"]}
    for doc in out["documents"]:
        assert doc.score == pytest.approx(scores[doc.id], rel=1e-5)


def test_fb_docs_larger_than_the_candidates_is_an_error(index_dir: Path, encoder: FakeColBERTEncoder) -> None:
    first = retriever(index_dir, encoder, top_k=2).run("volcano")
    with pytest.raises(ConfigError, match="fb_docs=3 is larger than the 2 first-pass candidates"):
        ColBERTPRF(fb_docs=3, k=8, fb_embs=2).run(first["documents"], first["first_pass"])


def test_prf_stage_in_a_config_pipeline(index_dir: Path, encoder: FakeColBERTEncoder) -> None:
    bundle = index_dir.parent
    config = RagConfig.from_dict(
        {
            "retrieval": {"mode": "colbert", "top_k": 3},
            "colbert": {"model": "prf-fake", "dim": 32, "exhaustive": True},
            "stages": [
                {"kind": "prf", "name": "colbert", "mode": "reranker", "fb_docs": 2, "k": 6, "fb_embs": 2}
            ],
        }
    )
    pipe = build_stages(config, bundle)
    pipe.get_component("colbert_retriever").encoder = encoder
    plan = pipe.metadata["rag"]
    assert plan["output"] == "prf" and plan["candidates"] == {"colbert_retriever": 1000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pipe.run({"colbert_retriever": {"query": "earth crust mantle"}, "prf": {"top_k": 3}})
    docs = result["prf"]["documents"]
    assert len(docs) == 3 and docs[0].id == "crust" and EXPANSION_KEY in docs[0].meta
    # Saved and loaded like any Haystack pipeline.
    assert isinstance(load_pipeline(pipe.dumps()), Pipeline)
    with pytest.raises(ConfigError, match="unknown setting"):
        build_stages(
            RagConfig.from_dict(
                {**config.to_dict(), "stages": [{"kind": "prf", "name": "colbert", "fbdocs": 2}]}
            ),
            bundle,
        )
    with pytest.raises(ConfigError, match="needs ColBERT first-pass retrieval"):
        build_stages(
            RagConfig.from_dict(
                {"retrieval": {"mode": "bm25"}, "stages": [{"kind": "prf", "name": "colbert"}]}
            ),
            bundle,
        )


def test_token_vectors_are_cached_between_builds(tmp_path: Path, encoder: FakeColBERTEncoder) -> None:
    from rag.retrievers.colbert import encode_chunks

    calls = []

    class Counting(FakeColBERTEncoder):
        def encode_documents(self, texts: Any, progress: bool = False) -> Any:
            calls.append(len(texts))
            return super().encode_documents(texts, progress)

    counting = Counting("prf-fake", dim=32, query_maxlen=12)
    chunks = [Document(id=k, content=v, meta={"title": k}) for k, v in TEXTS.items()]
    first = encode_chunks(counting, chunks, progress=False, cache_dir=tmp_path)
    again = encode_chunks(counting, chunks, progress=False, cache_dir=tmp_path)
    assert calls == [len(chunks)]  # the second call read the cache
    for a, b in zip(first[0] + first[1], again[0] + again[1], strict=True):
        np.testing.assert_array_equal(a, b)
    # The title rule: "title text" is what is encoded.
    np.testing.assert_array_equal(first[1][0], encoder.encode_documents([f"tides {TEXTS['tides']}"])[1][0])
    encode_chunks(counting, chunks[:2], progress=False, cache_dir=tmp_path)
    assert calls == [len(chunks), 2]  # other texts: another entry
