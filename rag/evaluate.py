"""Run a config's pipeline over an evaluation set and score it: what ``rag eval`` does.

Two kinds of set (:func:`evaluate_config` tells them apart by their files):

- a **BEIR folder** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``): document-level IR
  metrics (nDCG@10, MAP@100, MRR@10, Recall@10/100), chunks scored as their source document;
- a **chunk-excerpt folder** (``questions_df.csv`` + ``corpora/*.md``, Chroma's layout, see
  :mod:`evaluation.datasets`): token-level span metrics of the ``retrieval.top_k`` documents the
  pipeline returns for each question: recall, precision, IoU and Precision-Omega
  (:mod:`evaluation.spans`), mean and std over questions and per corpus. The bundle is built over the
  ``corpora/`` folder read as a folder of text files (document id ``chatlogs.md``, corpus id = file
  stem ``chatlogs``) with the config's chunking. Precision-Omega takes the chunks of the bundle.

**Provenance convention** (how a retrieved document maps to source text). A retrieved document stands
for the character spans of its sources that it holds:

- by default, the chunk span ``(meta["source_id"], meta["start"], meta["end"])``: half-open character
  offsets into the content of source document ``source_id``, written by
  :func:`rag.core.chunking.chunk_documents`;
- when ``meta["provenance"]`` is present it wins: a list of ``[source_id, start, end]`` spans, in the
  same terms, covering exactly the text the document now holds. A stage that rewrites text (a
  compressor keeping some sentences of a chunk) must set it, so that the evaluation measures how much
  gold evidence survives; an empty list means the document kept nothing of any source. Every span
  counts in |R| (the precision denominator), so overlapping provenance spans count each time, as
  overlapping chunks do.

The index bundle is cached under ``cache_dir`` by a key of the corpus (path, size and mtime of the file,
or of every file of a corpus folder) and the config sections that shape the index, so a second
evaluation of the same config reuses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline

from evaluation.datasets import ChunkEvalSet, load_beir, load_chunk_eval
from evaluation.ir import DEFAULT_METRICS, Run, evaluate
from evaluation.reports import METRICS as SPAN_METRICS
from evaluation.reports import group_summaries
from evaluation.spans import Span, evaluate_spans
from indexers import load_index
from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.core.tokenizers import DEFAULT_TOKENIZER
from rag.pipelines import build_bundle, build_pipeline, read_build_summary, retrieve

# Ranking depth of every evaluation: deep enough for MAP@100 and Recall@100.
EVAL_DEPTH = 100


@dataclass
class EvalResult:
    config: str
    dataset: str
    split: str
    queries: int
    metrics: dict[str, float]
    queries_per_second: float
    index_build_seconds: float
    index_reused: bool
    index_path: str
    run: Run = field(repr=False)
    # Chunk-excerpt sets only: the span-metric report (unit, overall and per-corpus mean/std, per query).
    spans: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {
            "config": self.config,
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.queries,
            "metrics": self.metrics,
            "queries_per_second": self.queries_per_second,
            "index_build_seconds": self.index_build_seconds,
            "index_reused": self.index_reused,
            "index_path": self.index_path,
        }
        if self.spans is not None:
            out["span_metrics"] = self.spans
        return out


def _corpus_stamp(corpus: Path) -> list[Any]:
    """Path, size and mtime of a corpus file, or of every file under a corpus folder (a folder's own
    mtime misses edits of the files in it)."""
    if corpus.is_dir():
        files = sorted(p for p in corpus.rglob("*") if p.is_file())
        return [
            str(corpus.resolve()),
            [[p.relative_to(corpus).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        ]
    stat = corpus.stat()
    return [str(corpus.resolve()), stat.st_size, stat.st_mtime_ns]


def index_cache_key(config: RagConfig, corpus: Path) -> str:
    shape = {
        "corpus": _corpus_stamp(corpus),
        "chunking": config.chunking,
        # The device changes where vectors are computed, not which: it must not split the cache.
        "encoder": _without(config.encoder.__dict__, "device") if config.needs_dense else None,
        "index": config.index.__dict__ if config.needs_dense else None,
        "bm25": config.bm25 if config.needs_bm25 else None,
        "mode": config.retrieval.mode,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _without(settings: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != key}


def ensure_bundle(
    config: RagConfig, corpus: Path, cache_dir: Path, progress: bool = True
) -> tuple[Path, float, bool]:
    """Build the config's bundle for ``corpus`` unless the cache has it.

    :returns: (bundle path, build seconds, reused).
    """
    path = cache_dir / f"{corpus.parent.name}-{config.name}-{index_cache_key(config, corpus)}"
    summary = read_build_summary(path)
    if summary is not None:
        return path, summary.seconds, True
    summary = build_bundle(config, corpus, path, progress=progress, embedding_cache=cache_dir / "embeddings")
    return path, summary.seconds, False


def source_id(doc: Any) -> str:
    """Chunks are scored as their source document (best chunk wins), as BEIR judges whole documents."""
    return str(doc.meta.get("source_id", doc.id))


def evaluate_config(
    config: RagConfig,
    dataset: str | Path,
    split: str = "test",
    cache_dir: str | Path = "runs/cache",
    progress: bool = True,
    on_query: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Build or reuse the index, run every query of ``split`` through the pipeline, score the run.

    A chunk-excerpt folder (see :func:`is_chunk_eval_folder`) is scored with span metrics in characters
    instead (:func:`evaluate_config_spans`; ``split`` does not apply to it).
    """
    if is_chunk_eval_folder(dataset):
        return evaluate_config_spans(config, dataset, cache_dir, progress=progress, on_query=on_query)
    data = load_beir(dataset, split=split)
    bundle, build_seconds, reused = ensure_bundle(
        config, data.corpus_path, Path(cache_dir), progress=progress
    )
    pipeline = warmed_pipeline(config, bundle)
    ranking: dict[str, dict[str, float]] = {}
    query_ids = sorted(data.queries)
    started = time.perf_counter()
    for done, qid in enumerate(_progress(query_ids, progress, f"{config.name}: queries"), start=1):
        scores: dict[str, float] = {}
        for doc in retrieve(pipeline, data.queries[qid], top_k=EVAL_DEPTH):
            sid = source_id(doc)
            scores[sid] = max(scores.get(sid, float("-inf")), float(doc.score or 0.0))
        ranking[qid] = scores
        if on_query is not None:
            on_query(done, len(query_ids))
    seconds = time.perf_counter() - started
    run = Run(ranking)
    return EvalResult(
        config=config.name,
        dataset=str(dataset),
        split=split,
        queries=len(query_ids),
        metrics=evaluate(data.qrels, run, DEFAULT_METRICS),
        queries_per_second=len(query_ids) / seconds if seconds > 0 else float("inf"),
        index_build_seconds=build_seconds,
        index_reused=reused,
        index_path=str(bundle),
        run=run,
    )


def warmed_pipeline(config: RagConfig, bundle: Path) -> Pipeline:
    """A pipeline that has loaded its models and answered one query, so that queries per second measure
    steady-state latency, not model loading and the first forward pass."""
    pipeline = build_pipeline(config, bundle)
    pipeline.warm_up()
    retrieve(pipeline, "warm-up query", top_k=1)
    return pipeline


def is_chunk_eval_folder(dataset: str | Path) -> bool:
    """True for a chunk-excerpt folder: ``questions_df.csv`` and a ``corpora/`` folder."""
    root = Path(dataset)
    return (root / "questions_df.csv").is_file() and (root / "corpora").is_dir()


def document_spans(doc: Document, corpus_ids: Mapping[str, str] | None = None) -> list[Span]:
    """The source spans a retrieved document stands for (module docstring, "provenance convention").

    :param corpus_ids: maps source document ids to the corpus ids of the gold spans (``chatlogs.md`` ->
        ``chatlogs``); ``None`` keeps source ids as they are.
    :raises ConfigError: when the document has neither ``provenance`` nor ``source_id``/``start``/``end``,
        or names a source not in ``corpus_ids``.
    """
    meta = doc.meta or {}
    if "provenance" in meta:
        raw = meta["provenance"]
        if not isinstance(raw, list | tuple):
            raise ConfigError(
                f"document {doc.id!r}: meta['provenance'] must be a list of [source_id, start, end], "
                f"got {raw!r}"
            )
        entries = list(raw)
    elif all(key in meta for key in ("source_id", "start", "end")):
        entries = [(meta["source_id"], meta["start"], meta["end"])]
    else:
        raise ConfigError(
            f"document {doc.id!r} carries no source offsets: span metrics need meta source_id, start and end "
            "(set by chunking) or meta['provenance'] (set by compressors)"
        )
    spans = []
    for entry in entries:
        if not isinstance(entry, list | tuple) or len(entry) != 3:
            raise ConfigError(
                f"document {doc.id!r}: provenance entry {entry!r} is not [source_id, start, end]"
            )
        source, start, end = entry
        corpus = str(source)
        if corpus_ids is not None:
            if corpus not in corpus_ids:
                raise ConfigError(
                    f"document {doc.id!r} comes from {corpus!r}, which is not a corpus of the evaluation set"
                )
            corpus = corpus_ids[corpus]
        spans.append(Span(corpus, start, end))
    return spans


def evaluate_config_spans(
    config: RagConfig,
    dataset: str | Path,
    cache_dir: str | Path = "runs/cache",
    progress: bool = True,
    on_query: Callable[[int, int], None] | None = None,
    unit: str = "chars",
    tokenizer: str = DEFAULT_TOKENIZER,
) -> EvalResult:
    """Span metrics of a config's pipeline on a chunk-excerpt folder (module docstring).

    Every question goes through the pipeline with ``top_k = config.retrieval.top_k``; the spans of the
    returned documents (:func:`document_spans`) are scored against the question's excerpts. ``metrics``
    holds the means of recall, precision, Precision-Omega and IoU; ``spans`` the full report.
    """
    data = load_chunk_eval(dataset)
    corpus_dir = Path(dataset) / "corpora"
    bundle, build_seconds, reused = ensure_bundle(config, corpus_dir, Path(cache_dir), progress=progress)
    chunks = _bundle_chunks(bundle)
    corpus_ids = _corpus_id_map(chunks, data)
    all_chunks = [span for doc in chunks for span in document_spans(doc, corpus_ids)]
    pipeline = warmed_pipeline(config, bundle)
    top_k = config.retrieval.top_k
    ranking: dict[str, dict[str, float]] = {}
    retrieved: list[list[Span]] = []
    started = time.perf_counter()
    numbers = list(range(len(data.questions)))
    for done, i in enumerate(_progress(numbers, progress, f"{config.name}: questions"), start=1):
        documents = retrieve(pipeline, data.questions[i].question, top_k=top_k)
        retrieved.append([span for doc in documents for span in document_spans(doc, corpus_ids)])
        ranking[f"q{i}"] = {str(doc.id): float(doc.score or 0.0) for doc in documents}
        if on_query is not None:
            on_query(done, len(numbers))
    seconds = time.perf_counter() - started
    report = evaluate_spans(
        data.questions, retrieved, all_chunks, unit=unit, corpora=data.corpora, tokenizer=tokenizer
    )
    questions_corpus = [q.corpus_id for q in data.questions]
    spans = {
        "unit": report.unit,
        "tokenizer": report.tokenizer,
        "top_k": top_k,
        "chunks": len(chunks),
        "overall": {"queries": len(report.per_query), "mean": report.mean, "std": report.std},
        "per_corpus": group_summaries(questions_corpus, report.per_query),
        "per_query": [
            {"corpus_id": cid, **row} for cid, row in zip(questions_corpus, report.per_query, strict=True)
        ],
        "mismatches": list(data.mismatches),
    }
    return EvalResult(
        config=config.name,
        dataset=str(dataset),
        split="all",
        queries=len(data.questions),
        metrics={name: report.mean[name] for name in SPAN_METRICS},
        queries_per_second=len(numbers) / seconds if seconds > 0 else float("inf"),
        index_build_seconds=build_seconds,
        index_reused=reused,
        index_path=str(bundle),
        run=Run(ranking),
        spans=spans,
    )


def _bundle_chunks(bundle: Path) -> list[Document]:
    """Every chunk a bundle indexed (from its dense index, else its BM25 index)."""
    for side in ("dense", "bm25"):
        if (bundle / side).is_dir():
            index = load_index(bundle / side)
            return index.get(index.ids)
    raise ConfigError(f"{bundle} holds neither a dense/ nor a bm25/ index; rebuild it with `rag index`")


def _corpus_id_map(chunks: Sequence[Document], data: ChunkEvalSet) -> dict[str, str]:
    """Source document id -> corpus id (file stem), checking that the bundle's texts are the set's
    corpora: every chunk's offsets must select its own text in the corpus the questions refer to."""
    mapping: dict[str, str] = {}
    for doc in chunks:
        source = str((doc.meta or {}).get("source_id", doc.id))
        if source not in mapping:
            stem = Path(source).stem
            if Path(source).name != source or Path(source).suffix != ".md" or stem not in data.corpora:
                raise ConfigError(
                    f"the index holds document {source!r}, which is not a corpus of the set "
                    f"({', '.join(sorted(data.corpora))}); corpora/ must hold only <corpus_id>.md files"
                )
            mapping[source] = stem
        start, end = doc.meta.get("start"), doc.meta.get("end")
        text = data.corpora[mapping[source]]
        if not isinstance(start, int) or not isinstance(end, int) or text[start:end] != doc.content:
            raise ConfigError(
                f"chunk {doc.id!r} does not match {mapping[source]}[{start}:{end}] of the evaluation set; "
                "the corpus was read differently (byte-order mark? newlines?) - offsets would be wrong"
            )
    return mapping


def _progress(items: list[Any], enabled: bool, label: str) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="query")
