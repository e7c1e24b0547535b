"""Pipelines as graphs of registered stages: registry, hybrid in the graph, the query plan, timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from haystack import Document, Pipeline, component

from rag.core.config import RETRIEVAL_SIDES, RagConfig
from rag.core.errors import ConfigError
from rag.pipelines import build_bundle, build_pipeline, load_pipeline, retrieve, run_query
from rag.retrievers.ranking import RankCutoff, ranked
from rag.stages import PipelineDraft, register_stage, registered_stages

TEXTS = {
    "a": "Bread dough rises because yeast ferments sugar into carbon dioxide.",
    "b": "Tides come from the moon's gravity pulling on the oceans.",
    "c": "Honey bees swarm to find a new nest when the colony grows.",
    "d": "Solar panels turn sunlight into electricity with silicon cells.",
    "e": "Yeast is a fungus; bakers use it to leaven bread.",
}


@pytest.fixture()
def hybrid_bundle(tmp_path: Path, tiny_model_dir: Path) -> tuple[RagConfig, Path]:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": k, "text": v}) for k, v in TEXTS.items()))
    config = RagConfig.from_dict(
        {"name": "h", "encoder": {"model": str(tiny_model_dir)}, "retrieval": {"mode": "hybrid", "top_k": 2}}
    )
    build_bundle(config, corpus, tmp_path / "idx", progress=False)
    return config, tmp_path / "idx"


# A toy stage, registered the way a new stage kind is: one component and one registration.
@component
class ReverseReranker:
    def __init__(self, keep: int = 10) -> None:
        self.keep = keep

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document]) -> dict[str, Any]:
        return {"documents": list(reversed(documents))[: self.keep]}


@register_stage("rerank", "reverse-for-test")
def reverse_stage(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    draft.add_documents_stage("rerank", ReverseReranker(**settings), takes_top_k=False)


def test_every_retrieval_mode_has_a_registered_stage() -> None:
    assert set(registered_stages()["retrieval"]) == set(RETRIEVAL_SIDES)


def test_hybrid_is_two_retrievers_a_joiner_and_a_cutoff(hybrid_bundle: tuple[RagConfig, Path]) -> None:
    config, bundle = hybrid_bundle
    pipe = build_pipeline(config, bundle)
    kinds = {name: type(pipe.get_component(name)).__name__ for name in pipe.graph.nodes}
    assert kinds == {
        "query_encoder": "QueryEncoder",
        "dense_retriever": "DenseRetriever",
        "bm25_retriever": "BM25Retriever",
        "fusion": "DocumentJoiner",
        "ranking": "RankCutoff",
    }
    assert pipe.metadata["rag"] == {
        "output": "ranking",
        "top_k": ["ranking"],
        "candidates": {"dense_retriever": 100, "bm25_retriever": 100},
    }


def test_top_k_reaches_the_result_stage_and_candidates_fetch_at_least_their_depth(
    hybrid_bundle: tuple[RagConfig, Path],
) -> None:
    config, bundle = hybrid_bundle
    pipe = build_pipeline(config, bundle)
    pipe.warm_up()
    result = run_query(pipe, "yeast bread", top_k=3)
    assert len(result.documents) == 3
    assert [d.score for d in result.documents] == sorted((d.score for d in result.documents), reverse=True)
    assert set(result.stage_seconds) == set(pipe.graph.nodes)
    assert all(seconds >= 0 for seconds in result.stage_seconds.values())
    assert len(retrieve(pipe, "yeast bread")) == 2  # the config's own top_k


def test_a_registered_stage_is_one_config_entry_and_its_output_is_the_result(
    hybrid_bundle: tuple[RagConfig, Path],
) -> None:
    config, bundle = hybrid_bundle
    staged = RagConfig.from_dict(
        {**config.to_dict(), "stages": [{"kind": "rerank", "name": "reverse-for-test", "keep": 4}]}
    )
    plain = retrieve(build_pipeline(config, bundle), "yeast bread", top_k=4)
    reranked = run_query(build_pipeline(staged, bundle), "yeast bread", top_k=4)
    assert [d.id for d in reranked.documents] == [d.id for d in reversed(plain)]
    assert "rerank" in reranked.stage_seconds


def test_unknown_stage_name_lists_the_registered_ones(hybrid_bundle: tuple[RagConfig, Path]) -> None:
    config, bundle = hybrid_bundle
    staged = RagConfig.from_dict({**config.to_dict(), "stages": [{"kind": "rerank", "name": "nope"}]})
    with pytest.raises(ConfigError, match=r"no rerank stage named 'nope'; registered: .*reverse-for-test"):
        build_pipeline(staged, bundle)


def test_hybrid_pipeline_round_trips_through_yaml_with_its_plan(
    hybrid_bundle: tuple[RagConfig, Path],
) -> None:
    config, bundle = hybrid_bundle
    pipe = build_pipeline(config, bundle)
    again = load_pipeline(pipe.dumps())
    assert again.metadata == pipe.metadata
    assert [d.id for d in retrieve(again, "moon tides", top_k=3)] == [
        d.id for d in retrieve(pipe, "moon tides", top_k=3)
    ]


def test_a_users_own_pipeline_without_a_plan_is_read_at_its_last_documents_stage(
    hybrid_bundle: tuple[RagConfig, Path], tiny_model_dir: Path
) -> None:
    _, bundle = hybrid_bundle
    from rag import BM25Retriever

    mine = Pipeline()
    mine.add_component("search", BM25Retriever(str(bundle / "bm25"), top_k=5))
    mine.add_component("cut", RankCutoff(top_k=5))
    mine.connect("search.documents", "cut.documents")
    documents = retrieve(mine, "yeast bread", top_k=1)
    assert len(documents) == 1


def test_ties_are_broken_by_id() -> None:
    docs = [Document(id=i, content=i, score=s) for i, s in [("c", 0.5), ("b", 1.0), ("a", 0.5), ("d", 1.0)]]
    assert [d.id for d in ranked(docs)] == ["b", "d", "a", "c"]
    assert [d.id for d in RankCutoff(top_k=3).run(documents=docs)["documents"]] == ["b", "d", "a"]
