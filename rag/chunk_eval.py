"""Evaluate chunkers on a chunk-excerpt set, the protocol of Chroma's "Evaluating Chunking Strategies for
Retrieval" (Smith and Troynikov, 2024).

For one chunker (:func:`evaluate_chunking`):

1. every corpus of the set is chunked (exact character offsets, :mod:`rag.core.chunking`);
2. the chunks of *all* corpora are embedded into one flat inner-product index (Chroma put every chunk
   in one collection, so a question can retrieve chunks of the wrong corpus, and they count in |R|);
3. every question is embedded and its ``retrieve`` nearest chunks are taken;
4. recall, precision, IoU and Precision-Omega are computed per question against its excerpts with
   :func:`evaluation.spans.evaluate_spans` (definitions there), in characters (Chroma) or tokens;
5. mean and (population) std are reported over all questions and per corpus, with the chunk count, the
   mean chunk size in ``cl100k_base`` tokens and the wall time.

Chunks are placed by their exact offsets. Chroma's framework located each chunk by searching its text in
the corpus, so a chunk whose text repeats elsewhere (a third of the recursive chunks of its finance
corpus) took the offsets of the first occurrence; here a retrieved duplicate at another position than
the excerpt is a miss. Duplicates also tie exactly in score; FAISS breaks those ties.

Chunk and question embeddings are cached in ``cache_dir/embeddings`` by :mod:`rag.encoders.cache`
(keyed by the encoder fingerprint, the document or query prefix and the texts; shared with index
builds), and chunk offsets in ``cache_dir/chunks`` as JSON keyed by the chunker
settings and the corpus text, so rerunning a grid only redoes the search and the metrics.

A semantic chunker config without ``model`` groups its pieces with the evaluation's own encoder (as
Chroma's ``ClusterSemanticChunker`` used the evaluation's embedding function).

:func:`run_grid` runs several chunkers; :func:`load_grid` reads a grid YAML (``configs/chunk_grid.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from haystack import Document

from evaluation.datasets import ChunkEvalSet
from evaluation.reports import group_summaries
from evaluation.spans import UNITS, Span, SpanReport, evaluate_spans
from indexers.build import encode_chunks
from indexers.dense import DenseIndex
from rag.core.chunking import Chunker, SemanticChunker, make_chunker
from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.tokenizers import DEFAULT_TOKENIZER, get_token_counter
from rag.encoders.cache import cached_embeddings
from rag.encoders.dense import DenseEncoder

__all__ = ["ChunkGrid", "ChunkingResult", "chunker_label", "evaluate_chunking", "load_grid", "run_grid"]

# Chroma reports chunk sizes in cl100k_base tokens whatever the chunker measures.
SIZE_TOKENIZER = DEFAULT_TOKENIZER
_CACHE_VERSION = 1


@dataclass(frozen=True)
class ChunkingResult:
    """Span metrics of one chunker on a chunk-excerpt set.

    ``report.per_query[i]`` belongs to ``dataset.questions[i]``, whose corpus is ``corpus_ids[i]``;
    ``per_corpus`` maps a corpus id to ``{"queries", "mean", "std"}``. ``mean_chunk_tokens`` counts
    ``cl100k_base`` tokens of the chunk texts. ``seconds`` is the wall time of the whole evaluation
    (chunking, embedding or cache reads, search, metrics); ``embeddings_cached`` tells whether the chunk
    embeddings came from the cache.
    """

    name: str
    chunker: dict[str, Any]
    retrieve: int
    unit: str
    tokenizer: str | None
    encoder: str
    chunks: int
    mean_chunk_tokens: float
    seconds: float
    report: SpanReport
    corpus_ids: list[str]
    per_corpus: dict[str, dict[str, Any]]
    embeddings_cached: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        return self.report.mean

    @property
    def std(self) -> dict[str, float]:
        return self.report.std

    def to_dict(self) -> dict[str, Any]:
        """The result record of :mod:`evaluation.reports` (JSON-able, per-question values included)."""
        return {
            "name": self.name,
            "chunker": dict(self.chunker),
            "retrieve": self.retrieve,
            "unit": self.unit,
            "tokenizer": self.tokenizer,
            "encoder": self.encoder,
            "chunks": self.chunks,
            "mean_chunk_tokens": self.mean_chunk_tokens,
            "seconds": self.seconds,
            "embeddings_cached": self.embeddings_cached,
            "timings": dict(self.timings),
            "overall": {"queries": len(self.report.per_query), "mean": self.mean, "std": self.std},
            "per_corpus": {cid: dict(summary) for cid, summary in self.per_corpus.items()},
            "per_query": [
                {"corpus_id": cid, **row}
                for cid, row in zip(self.corpus_ids, self.report.per_query, strict=True)
            ],
        }


@dataclass(frozen=True)
class ChunkGrid:
    """Chunker configs of a grid file, and its ``retrieve`` setting when it has one."""

    chunkers: list[dict[str, Any]]
    retrieve: int | None = None


def chunker_label(config: Mapping[str, Any]) -> str:
    """Short display name of a chunker config: ``"fixed 250/125"``, ``"recursive 200/0"``,
    ``"semantic 250"``; ``" chars"`` is appended when sizes count characters.

    >>> chunker_label({"method": "recursive", "size": 250, "overlap": 125})
    'recursive 250/125'
    """
    if "name" in config:
        return str(config["name"])
    method = str(config.get("method", "none"))
    if method == "none":
        return "none"
    label = f"{method} {config.get('size')}"
    if method != "semantic":
        label += f"/{config.get('overlap', 0)}"
    if config.get("unit") == "chars":
        label += " chars"
    return label


def evaluate_chunking(
    dataset: ChunkEvalSet,
    chunker_config: Mapping[str, Any],
    retrieve: int = 5,
    encoder: DenseEncoder | None = None,
    unit: str = "chars",
    tokenizer: str = DEFAULT_TOKENIZER,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ChunkingResult:
    """Chunk, embed, retrieve and score one chunker (see the module docstring).

    :param chunker_config: a :func:`~rag.core.chunking.make_chunker` mapping, plus an optional ``name``
        (display label; default :func:`chunker_label`).
    :param retrieve: chunks retrieved per question.
    :param encoder: embeds chunks and questions (default: the bundled all-MiniLM-L6-v2).
    :param unit: ``"chars"`` or ``"tokens"``, the unit of the span metrics.
    :param tokenizer: token counter for ``unit="tokens"``.
    :param cache_dir: folder for cached chunk offsets and embeddings; ``None`` disables the cache.
    :raises ConfigError: on a bad chunker config or ``retrieve``, an empty set, a question whose corpus is
        missing, or a chunker that yields no chunk.
    """
    started = time.perf_counter()
    _check_dataset(dataset)
    _check_unit(unit, tokenizer)
    retrieve = _check_retrieve(retrieve)
    encoder = encoder or DenseEncoder(DEFAULT_DENSE_MODEL)
    name, chunker = _prepare_chunker(chunker_config, encoder)
    cache = Path(cache_dir) if cache_dir is not None else None
    timings: dict[str, float] = {}

    mark = time.perf_counter()
    spans = _chunk_corpora(dataset.corpora, chunker, encoder, cache, progress)
    documents = [
        Document(
            id=f"{cid}#{k}",
            content=dataset.corpora[cid][start:end],
            meta={"source_id": cid, "start": start, "end": end},
        )
        for k, (cid, start, end) in enumerate(spans)
    ]
    if not documents:
        raise ConfigError(f"chunker {name!r} produced no chunk from the corpora (are they all whitespace?)")
    timings["chunking"] = time.perf_counter() - mark

    mark = time.perf_counter()
    fingerprint = encoder.fingerprint
    encoded: list[bool] = []  # set when the chunk vectors had to be computed (not in the cache)

    def encode_all() -> np.ndarray:
        encoded.append(True)
        return encode_chunks(encoder, documents, fingerprint, progress=progress)

    # Same texts and keys as encode_chunks(cache_dir=...) (no titles here), so vectors are shared with
    # index builds over identical chunks.
    chunk_vectors = cached_embeddings(
        cache / "embeddings" if cache else None, encoder, [doc.content or "" for doc in documents], encode_all
    )
    questions = [q.question for q in dataset.questions]
    query_vectors = cached_embeddings(
        cache / "embeddings" if cache else None,
        encoder,
        questions,
        lambda: encoder.encode_queries(questions, progress=False),
        prefix=encoder.query_prefix,
    )
    timings["embedding"] = time.perf_counter() - mark

    mark = time.perf_counter()
    index = DenseIndex.build(documents, chunk_vectors, fingerprint, "flat")
    by_id = {doc.id: span for doc, span in zip(documents, spans, strict=True)}
    hits = index.search(query_vectors, retrieve)
    retrieved = [[by_id[doc_id] for doc_id, _score in ranking] for ranking in hits]
    timings["search"] = time.perf_counter() - mark

    mark = time.perf_counter()
    report = evaluate_spans(
        dataset.questions, retrieved, spans, unit=unit, corpora=dataset.corpora, tokenizer=tokenizer
    )
    corpus_ids = [q.corpus_id for q in dataset.questions]
    per_corpus = group_summaries(corpus_ids, report.per_query)
    count = get_token_counter(SIZE_TOKENIZER).count
    mean_tokens = float(np.mean([count(doc.content or "") for doc in documents]))
    timings["metrics"] = time.perf_counter() - mark

    return ChunkingResult(
        name=name,
        chunker=chunker.config(),
        retrieve=retrieve,
        unit=unit,
        tokenizer=report.tokenizer,
        encoder=str(encoder.model_name),
        chunks=len(documents),
        mean_chunk_tokens=mean_tokens,
        seconds=time.perf_counter() - started,
        report=report,
        corpus_ids=corpus_ids,
        per_corpus=per_corpus,
        embeddings_cached=not encoded,
        timings=timings,
    )


def run_grid(
    dataset: ChunkEvalSet,
    grid: Sequence[Mapping[str, Any]],
    retrieve: int = 5,
    encoder: DenseEncoder | None = None,
    unit: str = "chars",
    tokenizer: str = DEFAULT_TOKENIZER,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[ChunkingResult]:
    """:func:`evaluate_chunking` for every chunker config of ``grid``, in order, sharing one encoder.

    Every config is checked (and the labels must be distinct) before any work starts, so a typo in the
    last entry does not cost the time of the others.
    """
    if isinstance(grid, Mapping) or not grid:
        raise ConfigError(
            "the grid must be a non-empty list of chunker configs, e.g. [{method: fixed, size: 250}]"
        )
    encoder = encoder or DenseEncoder(DEFAULT_DENSE_MODEL)
    names = [_prepare_chunker(config, encoder)[0] for config in grid]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"grid entries need distinct labels; repeated: {repeated}. Give each entry a 'name'"
        )
    _check_dataset(dataset)
    _check_unit(unit, tokenizer)
    _check_retrieve(retrieve)
    return [
        evaluate_chunking(dataset, config, retrieve, encoder, unit, tokenizer, cache_dir, progress)
        for config in grid
    ]


def load_grid(path: str | Path) -> ChunkGrid:
    """Read a grid YAML: ``chunkers`` (a list of chunker configs, each with an optional ``name``) and an
    optional ``retrieve``. See ``configs/chunk_grid.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist (example: configs/chunk_grid.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'chunkers' (and optionally 'retrieve')")
    unknown = sorted(set(data) - {"chunkers", "retrieve"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; allowed: chunkers, retrieve")
    chunkers = data.get("chunkers")
    if not isinstance(chunkers, list) or not chunkers or not all(isinstance(c, dict) for c in chunkers):
        raise ConfigError(
            f"{path}: 'chunkers' must be a non-empty list of mappings such as "
            "{method: recursive, size: 250, overlap: 125}"
        )
    retrieve = data.get("retrieve")
    if retrieve is not None:
        _check_retrieve(retrieve, source=str(path))
    return ChunkGrid(chunkers=[dict(c) for c in chunkers], retrieve=retrieve)


# --- helpers --------------------------------------------------------------------------------------------


def _check_retrieve(retrieve: object, source: str = "retrieve") -> int:
    if isinstance(retrieve, bool) or not isinstance(retrieve, int) or retrieve < 1:
        raise ConfigError(
            f"{source}: the number of chunks to retrieve must be a positive integer, got {retrieve!r}"
        )
    return retrieve


def _check_unit(unit: str, tokenizer: str) -> None:
    if unit not in UNITS:
        raise ConfigError(
            f"unit must be one of {', '.join(UNITS)} (the unit of the span metrics), got {unit!r}"
        )
    if unit == "tokens":
        get_token_counter(tokenizer)  # fails now, with its own message, rather than after the embedding


def _check_dataset(dataset: ChunkEvalSet) -> None:
    if not dataset.questions:
        raise ConfigError("the chunk-excerpt set has no questions to evaluate")
    missing = sorted({q.corpus_id for q in dataset.questions} - set(dataset.corpora))
    if missing:
        raise ConfigError(
            f"questions refer to corpora that are not in the set: {missing}; "
            f"add corpora/<id>.md for them (known: {sorted(dataset.corpora)})"
        )


def _prepare_chunker(config: Mapping[str, Any], encoder: DenseEncoder) -> tuple[str, Chunker]:
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"a chunker config must be a mapping such as {{method: fixed, size: 250}}, got {config!r}"
        )
    settings = {k: v for k, v in config.items() if k != "name"}
    chunker = make_chunker(settings)
    if chunker is None:
        raise ConfigError(
            "chunk evaluation needs a chunker (method fixed, recursive or semantic); got method 'none'"
        )
    if isinstance(chunker, SemanticChunker) and "model" not in settings:
        chunker = SemanticChunker(chunker.size, encoder, chunker.tokenizer, chunker.piece_size)
    return chunker_label(config), chunker


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab", "c") != ("a", "bc")
        digest.update(data)
    return digest.hexdigest()


def _encoder_key(encoder: DenseEncoder) -> str:
    return json.dumps(
        {
            "fingerprint": encoder.fingerprint.to_dict(),
            "query_prefix": encoder.query_prefix,
            "document_prefix": encoder.document_prefix,
        },
        sort_keys=True,
    )


def _chunk_corpora(
    corpora: Mapping[str, str],
    chunker: Chunker,
    encoder: DenseEncoder,
    cache: Path | None,
    progress: bool,
) -> list[Span]:
    """Chunk spans of every corpus (sorted by id), from the cache when the same chunking was done before."""
    from tqdm.auto import tqdm

    settings = json.dumps(chunker.config(), sort_keys=True)
    # A semantic chunking also depends on the encoder that embedded its pieces.
    depends = _encoder_key(encoder) if isinstance(chunker, SemanticChunker) else ""
    spans: list[Span] = []
    for corpus_id in tqdm(sorted(corpora), desc="chunking", unit="corpus", disable=not progress):
        text = corpora[corpus_id]
        path = None
        if cache is not None:
            key = _sha256(str(_CACHE_VERSION), settings, depends, text)
            path = cache / "chunks" / f"{key}.json"
            offsets = _read_offsets(path, len(text))
            if offsets is not None:
                spans.extend(Span(corpus_id, start, end) for start, end in offsets)
                continue
        pieces = chunker.chunk(text)
        spans.extend(Span(corpus_id, c.start, c.end) for c in pieces)
        if path is not None:
            _write_atomic(path, json.dumps([[c.start, c.end] for c in pieces]).encode("utf-8"))
    return spans


def _read_offsets(path: Path, length: int) -> list[tuple[int, int]] | None:
    """Cached offsets, or None when absent or unusable (then the corpus is chunked again)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int) for v in item)
            or not 0 <= item[0] <= item[1] <= length
        ):
            return None
        out.append((item[0], item[1]))
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
