"""The retrieval stages that ship with the package: dense, bm25 and hybrid (registered in rag.stages).

Hybrid is built in the pipeline, as Haystack's own hybrid examples do: a dense and a BM25 retriever,
each fetching ``retrieval.candidates`` documents (or ``top_k`` if more), Haystack's ``DocumentJoiner``
with reciprocal-rank fusion (k = 61), then :class:`RankCutoff` for the deterministic order and top-k.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack.components.joiners import DocumentJoiner

from rag.core.errors import ConfigError
from rag.encoders.components import QueryEncoder
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever
from rag.retrievers.ranking import RankCutoff
from rag.stages import RETRIEVAL, PipelineDraft, register_stage


def _no_settings(mode: str, settings: dict[str, Any]) -> None:
    if settings:
        raise ConfigError(f"retrieval {mode!r} takes its settings from the retrieval section, not {settings}")


def _add_dense(draft: PipelineDraft, top_k: int) -> str:
    encoder = dataclasses.asdict(draft.config.encoder)
    embed = draft.add(
        "query_encoder",
        QueryEncoder(
            model=encoder["model"],
            batch_size=encoder["batch_size"],
            max_length=encoder["max_length"],
            normalize=encoder["normalize"],
            prefix=encoder["query_prefix"],
            device=encoder["device"],
            tempscale=encoder["tempscale"],
            representation=encoder["representation"],
            ot_dims=encoder["ot_dims"],
        ),
    )
    retriever = DenseRetriever(str(draft.index_dir / "dense"), top_k=top_k, encoder=encoder)
    search = draft.add("dense_retriever", retriever)
    draft.connect(f"{embed}.embedding", f"{search}.query_embedding")
    return search


def _add_bm25(draft: PipelineDraft, top_k: int) -> str:
    return draft.add("bm25_retriever", BM25Retriever(str(draft.index_dir / "bm25"), top_k=top_k))


@register_stage(RETRIEVAL, "dense")
def dense(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _no_settings("dense", settings)
    draft.set_documents(_add_dense(draft, draft.config.retrieval.top_k))


@register_stage(RETRIEVAL, "bm25")
def bm25(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _no_settings("bm25", settings)
    draft.set_documents(_add_bm25(draft, draft.config.retrieval.top_k))


@register_stage(RETRIEVAL, "hybrid")
def hybrid(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _no_settings("hybrid", settings)
    depth = max(draft.config.retrieval.candidates, draft.config.retrieval.top_k)
    sides = [_add_dense(draft, depth), _add_bm25(draft, depth)]
    join = draft.add("fusion", DocumentJoiner(join_mode="reciprocal_rank_fusion"))
    for side in sides:
        draft.connect(f"{side}.documents", f"{join}.documents")
        draft.add_candidates(side, depth)
    cut = draft.add("ranking", RankCutoff(top_k=draft.config.retrieval.top_k))
    draft.connect(f"{join}.documents", f"{cut}.documents")
    draft.set_documents(cut)
