"""ColBERT-PRF: pseudo-relevance feedback on token vectors (Wang, Macdonald, Tonellotto, Ounis, ICTIR
2021), as the paper and its reference implementation (pyterrier_colbert's ``ColbertPRF``) do it:

1. first-pass ColBERT retrieval (:class:`rag.retrievers.colbert.ColBERTRetriever`);
2. the token vectors of the top ``fb_docs`` documents (default 3), pooled and clustered by k-means into
   ``k`` centroids (default 24; FAISS k-means, Euclidean like the reference's scikit-learn KMeans);
3. each centroid mapped to the most frequent token id among its 10 nearest stored token vectors (a FAISS
   search over the index's codes), special tokens ([CLS], [SEP], [MASK], markers, [unused*]) skipped as
   the reference skips them; a centroid whose neighbours are all special is dropped;
4. centroids ranked by that token's IDF ``ln((N + 1) / (df + 1))`` (ties keep k-means order);
5. the top ``fb_embs`` (default 10) centroids appended to the query, each weighted ``beta * IDF``
   (``beta`` default 1); the original query tokens keep weight 1;
6. weighted MaxSim: **ranker** mode retrieves anew with the expanded query (candidate generation uses
   the expansion vectors too); **reranker** mode rescores the first-pass documents.

The first pass's decoded candidates are reused: the feedback documents and, in reranker mode, every
rescored document come from them, and the ranker decodes only candidates the first pass did not.
Every returned document carries the expansion in ``meta["prf_expansion"]``: ``[{token, weight}]``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from haystack import Document, component

from indexers.base import ranked
from rag.core.errors import ConfigError
from rag.core.validation import check_top_k, positive_int
from rag.retrievers.colbert import ColBERTRetriever, FirstPass
from rag.stages import PipelineDraft, register_stage

if TYPE_CHECKING:
    from indexers.multivector import MultiVectorIndex

MODES = ("ranker", "reranker")
NEIGHBOURS = 10  # nearest stored tokens per centroid (the reference's k=10)
KMEANS_ITERATIONS = 20
EXPANSION_KEY = "prf_expansion"
# How many first-pass documents the reranker rescores (the reference reranks ColBERT E2E's top 1000).
RERANK_DEPTH = 1000


@dataclass
class Expansion:
    """The expansion of one query: centroid vectors, their tokens (ids and text) and weights."""

    vectors: np.ndarray  # (n, dim)
    token_ids: list[int]
    tokens: list[str]
    weights: list[float]  # beta * IDF

    def as_meta(self) -> list[dict[str, Any]]:
        return [{"token": t, "weight": round(w, 4)} for t, w in zip(self.tokens, self.weights, strict=True)]


def check_prf_settings(k: Any, fb_embs: Any, fb_docs: Any, beta: Any) -> tuple[int, int, int, float]:
    """The four ColBERT-PRF settings, checked: ``k > fb_embs`` (the reference's rule), all positive."""
    k = positive_int(k, "ColBERT-PRF k (clusters)")
    fb_embs = positive_int(fb_embs, "ColBERT-PRF fb_embs (expansion embeddings)")
    fb_docs = positive_int(fb_docs, "ColBERT-PRF fb_docs (feedback documents)")
    if k <= fb_embs:
        raise ConfigError(
            f"ColBERT-PRF needs more clusters than expansion embeddings: k={k} <= fb_embs={fb_embs}; "
            f"raise k (the paper uses k=24 with fb_embs=10) or lower fb_embs"
        )
    if isinstance(beta, bool) or not isinstance(beta, int | float) or beta < 0:
        raise ConfigError(f"ColBERT-PRF beta must be a number >= 0, got {beta!r}; the paper uses 1.0")
    return k, fb_embs, fb_docs, float(beta)


def kmeans_centroids(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` k-means centroids of ``points`` (FAISS, Euclidean, seeded); fewer points than ``k`` gives
    one centroid per point, with a warning."""
    import faiss

    points = np.ascontiguousarray(points, dtype=np.float32)
    if len(points) < k:
        warnings.warn(
            f"ColBERT-PRF: the feedback documents hold {len(points)} token vectors, fewer than k={k} "
            f"clusters; using k={len(points)}",
            UserWarning,
            stacklevel=3,
        )
        k = len(points)
    kmeans = faiss.Kmeans(points.shape[1], k, niter=KMEANS_ITERATIONS, seed=seed, min_points_per_centroid=1)
    kmeans.train(points)
    return np.asarray(kmeans.centroids, dtype=np.float32)


def most_frequent_tokens(neighbour_ids: np.ndarray, skip: Any) -> list[int | None]:
    """Per row, the most frequent token id not skipped (``skip(id) -> bool``); ties go to the one met
    first, nearest first (the reference's stable sort by frequency); None when all are skipped."""
    out: list[int | None] = []
    for row in neighbour_ids:
        counts: dict[int, int] = {}
        for token_id in row:
            tid = int(token_id)
            if tid < 0 or skip(tid):
                continue
            counts[tid] = counts.get(tid, 0) + 1
        out.append(max(counts, key=lambda t: counts[t]) if counts else None)
    return out


def select_expansion(
    centroids: np.ndarray, token_ids: list[int | None], idf: np.ndarray, fb_embs: int, beta: float
) -> tuple[np.ndarray, list[int], list[float]]:
    """Steps 4-5: centroids with a token, ranked by that token's IDF (descending, stable), the top
    ``fb_embs`` with weights ``beta * IDF``."""
    kept = [
        (c, tid, float(score))
        for c, tid, score in zip(range(len(centroids)), token_ids, idf, strict=True)
        if tid is not None
    ]
    kept.sort(key=lambda entry: -entry[2])
    chosen = kept[:fb_embs]
    rows = [c for c, _, _ in chosen]
    vectors = centroids[rows] if rows else np.zeros((0, centroids.shape[1]), np.float32)
    return vectors, [int(t) for _, t, _ in chosen if t is not None], [beta * s for _, _, s in chosen]


def expand_query(
    index: MultiVectorIndex,
    feedback: list[np.ndarray],
    tokenizer: Any,
    k: int = 24,
    fb_embs: int = 10,
    beta: float = 1.0,
    seed: int = 42,
) -> Expansion:
    """Steps 2-5 over the token vectors of the feedback documents."""
    centroids = kmeans_centroids(np.concatenate(feedback), k, seed)
    neighbours = index.nearest_token_ids(centroids, NEIGHBOURS)
    skip = _special_token_test(tokenizer)
    tokens = most_frequent_tokens(neighbours, skip)
    idf = index.idf(np.array([t if t is not None else -1 for t in tokens], dtype=np.int64))
    vectors, token_ids, weights = select_expansion(centroids, tokens, idf, fb_embs, beta)
    texts = [str(tokenizer.decode([t])).strip() for t in token_ids]
    return Expansion(vectors, token_ids, texts, weights)


def _special_token_test(tokenizer: Any) -> Any:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    cache: dict[int, bool] = {}

    def skip(token_id: int) -> bool:
        if token_id not in cache:
            text = str(tokenizer.decode([token_id])).strip()
            kept = str(tokenizer.decode([token_id], skip_special_tokens=True)).strip()
            cache[token_id] = token_id in special or not kept or "[unused" in text
        return cache[token_id]

    return skip


class PRFOutput(TypedDict):
    documents: list[Document]


@component
class ColBERTPRF:
    """ColBERT-PRF as a pipeline stage after :class:`ColBERTRetriever` (its ``documents`` and
    ``first_pass`` outputs connected here). ``mode``: ``ranker`` (retrieve anew with the expanded query)
    or ``reranker`` (rescore the first-pass documents). See the module docstring for the steps."""

    def __init__(
        self,
        mode: str = "ranker",
        fb_docs: int = 3,
        k: int = 24,
        fb_embs: int = 10,
        beta: float = 1.0,
        seed: int = 42,
        top_k: int = 10,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"ColBERT-PRF mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        self.k, self.fb_embs, self.fb_docs, self.beta = check_prf_settings(k, fb_embs, fb_docs, beta)
        self.seed = int(seed)
        self.top_k = check_top_k(top_k)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document], first_pass: FirstPass, top_k: int | None = None) -> PRFOutput:
        k = self.top_k if top_k is None else check_top_k(top_k)
        index = first_pass.index
        if len(documents) < self.fb_docs:
            raise ConfigError(
                f"ColBERT-PRF fb_docs={self.fb_docs} is larger than the {len(documents)} first-pass "
                f"candidates; lower fb_docs or let the first pass return more documents"
            )
        candidates = first_pass.result.candidates
        feedback_rows = index.rows_of([doc.id for doc in documents[: self.fb_docs]])
        feedback = index.decode(feedback_rows, reuse=candidates)
        expansion = expand_query(
            index,
            [feedback.of(j) for j in range(len(feedback.rows))],
            first_pass.tokenizer,
            self.k,
            self.fb_embs,
            self.beta,
            self.seed,
        )
        # Weighted MaxSim adds up over query tokens: every document the first pass scored keeps that
        # score and gets only the expansion tokens' part (no second decode, a quarter of the products).
        if self.mode == "ranker":
            hits = index.search_extended(
                first_pass.result, expansion.vectors, np.asarray(expansion.weights), k, **first_pass.settings
            )
            by_id = {doc.id: doc for doc in documents}
            missing = [doc_id for doc_id, _ in hits if doc_id not in by_id]
            by_id.update({doc.id: doc for doc in index.get(missing)})
        else:
            rows = index.rows_of([doc.id for doc in documents])
            scores = index.extended_scores(
                first_pass.result,
                rows,
                expansion.vectors,
                np.asarray(expansion.weights),
                keep=first_pass.settings["keep_decoded"],
            )
            hits = ranked(((doc.id, float(s)) for doc, s in zip(documents, scores, strict=True)), k)
            by_id = {doc.id: doc for doc in documents}
        meta = expansion.as_meta()
        return {
            "documents": [
                dataclasses.replace(
                    by_id[doc_id], score=score, meta={**by_id[doc_id].meta, EXPANSION_KEY: meta}
                )
                for doc_id, score in hits
            ]
        }


@register_stage("prf", "colbert")
def colbert_prf(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    """``{kind: prf, name: colbert, mode: ranker | reranker, fb_docs, k, fb_embs, beta, seed}`` after
    ``retrieval.mode: colbert``."""
    upstream = draft.documents.split(".")[0] if draft.documents else ""
    retriever = draft.pipeline.get_component(upstream) if upstream else None
    if not isinstance(retriever, ColBERTRetriever):
        raise ConfigError(
            "the prf stage 'colbert' needs ColBERT first-pass retrieval right before it: set "
            "retrieval.mode: colbert and list the prf stage first"
        )
    allowed = {"mode", "fb_docs", "k", "fb_embs", "beta", "seed"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(f"prf stage 'colbert' got unknown setting(s) {unknown}; it takes {sorted(allowed)}")
    prf = ColBERTPRF(**settings, top_k=draft.config.retrieval.top_k)
    name = draft.add_documents_stage("prf", prf)
    draft.connect(f"{upstream}.first_pass", f"{name}.first_pass")
    # The ranker needs only the feedback documents from the first pass; the reranker rescores its top
    # RERANK_DEPTH, as the reference does.
    draft.add_candidates(upstream, RERANK_DEPTH if prf.mode == "reranker" else prf.fb_docs)
