"""One contract for every retriever component: what a user can rely on when swapping one for another."""

from __future__ import annotations

import json

import pytest
from haystack import Document
from haystack.core.serialization import component_from_dict, component_to_dict

from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.encoders.components import QueryEncoder
from rag.pipelines import build_bundle
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("conformance")
    corpus = folder / "c.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 3}"}) for i in range(12))
    )
    config = RagConfig.from_dict({"encoder": {"model": str(tiny_model_dir)}, "retrieval": {"mode": "hybrid"}})
    build_bundle(config, corpus, folder / "idx", progress=False)
    return folder / "idx", {"model": str(tiny_model_dir)}


def make(kind, bundle):
    path, encoder = bundle
    if kind == "dense":
        return DenseRetriever(str(path / "dense"), top_k=4, encoder=encoder)
    return BM25Retriever(str(path / "bm25"), top_k=4)


def call(retriever, bundle, **kwargs):
    query = "document about topic 1"
    embedding = QueryEncoder(model=bundle[1]["model"]).run(query)["embedding"]
    if isinstance(retriever, DenseRetriever):
        return retriever.run(query_embedding=embedding, **kwargs)
    return retriever.run(query=query, **kwargs)


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_retriever_contract(kind, bundle):
    retriever = make(kind, bundle)
    retriever.warm_up()
    retriever.warm_up()  # idempotent
    docs = call(retriever, bundle)["documents"]
    assert 0 < len(docs) <= 4 and all(isinstance(d, Document) and d.score is not None for d in docs)
    assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
    assert len(call(retriever, bundle, top_k=2)["documents"]) <= 2  # per-call override
    assert len(call(retriever, bundle)["documents"]) == len(docs)  # ... does not stick
    with pytest.raises(ConfigError, match="top_k"):
        call(retriever, bundle, top_k=0)
    data = component_to_dict(retriever, "r")
    clone = component_from_dict(type(retriever), data, "r")
    assert component_to_dict(clone, "r") == data
    assert [d.id for d in call(clone, bundle)["documents"]] == [d.id for d in docs]


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_bad_construction_fails_early(kind, bundle):
    path, encoder = bundle
    with pytest.raises(ConfigError, match="top_k"):
        if kind == "dense":
            DenseRetriever(str(path / "dense"), top_k=-1)
        else:
            BM25Retriever(str(path / "bm25"), top_k=0)


def test_retrievers_over_one_index_share_one_loaded_copy(bundle):
    path, encoder = bundle
    first = DenseRetriever(str(path / "dense"), top_k=2, encoder=encoder)
    second = DenseRetriever(str(path / "dense"), top_k=5)
    first.warm_up()
    second.warm_up()
    assert first.index is second.index
    assert BM25Retriever(str(path / "bm25")).index is BM25Retriever(str(path / "bm25"), top_k=3).index


def test_a_retriever_refuses_the_other_kind_of_index(bundle):
    path, encoder = bundle
    with pytest.raises(ConfigError, match=r"DenseRetriever cannot search .*'bm25' index.*DenseIndex"):
        DenseRetriever(str(path / "bm25"), encoder=encoder).warm_up()
    with pytest.raises(ConfigError, match=r"BM25Retriever cannot search .*'flat' index.*BM25Index"):
        BM25Retriever(str(path / "dense")).warm_up()


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_exact_ties_come_back_in_id_order(kind, tmp_path, tiny_model_dir):
    # Duplicate texts (as in chunked corpora) score exactly the same; their order must not depend on FAISS.
    twins = ["t5", "t2", "t9", "t0"]
    rows = [{"id": i, "text": "the very same sentence twice"} for i in twins]
    rows += [{"id": f"o{i}", "text": f"other words number {i}"} for i in range(4)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows))
    config = RagConfig.from_dict({"encoder": {"model": str(tiny_model_dir)}, "retrieval": {"mode": kind}})
    build_bundle(config, corpus, tmp_path / "idx", progress=False)
    query = "the very same sentence twice"
    if kind == "dense":
        retriever = DenseRetriever(str(tmp_path / "idx" / "dense"), top_k=2)
        embedding = QueryEncoder(model=str(tiny_model_dir)).run(query)["embedding"]
        docs = retriever.run(query_embedding=embedding)["documents"]
    else:
        docs = BM25Retriever(str(tmp_path / "idx" / "bm25"), top_k=2).run(query=query)["documents"]
    assert [d.id for d in docs] == ["t0", "t2"] and docs[0].score == docs[1].score
