"""From a YAML config to a ready Haystack pipeline, and the index bundle that pipeline reads.

An *index bundle* is what ``rag index`` writes: a folder holding ``config.yaml`` (the config it was built
with) and one sub-index per retrieval side, ``dense/`` and/or ``bm25/`` (each an :mod:`indexers` folder
with its own manifest). ``rag query --index DIR`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline, tracing
from haystack.core.errors import PipelineRuntimeError

from indexers import build_index, directory_size, load_index
from indexers.base import Index
from indexers.build import encode_chunks
from indexers.bundle import (
    BUILD_SUMMARY,
    BUNDLE_CONFIG,
    Notify,
    bundle_write,
    check_bundle_target,
    is_bundle,
    read_bundle_manifest,
)
from indexers.docstore import format_ids, id_list
from rag.core.chunking import chunk_documents, make_chunker
from rag.core.config import RagConfig, load_config
from rag.core.errors import ConfigError, IndexCorruptError, RagError
from rag.core.files import write_file_atomically
from rag.core.readers import ReadReport, read_corpus
from rag.core.validation import check_query, check_top_k
from rag.encoders.dense import DenseEncoder, join_title

# The side a ColBERT bundle keeps its token index in (rag.retrievers.colbert; the index type of the
# same name is a built-in of indexers.base).
MULTIVECTOR = "multivector"


@dataclass
class BundleSummary:
    """What ``rag index`` prints: counts, time and size, and everything skipped or warned about."""

    path: str
    documents: int
    chunks: int
    seconds: float
    bytes_on_disk: int
    indexes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteSummary:
    """What ``rag delete`` removed: source documents and chunks, from which indexes of the bundle."""

    documents: int
    chunks: int
    chunked: bool
    indexes: list[str]


def encoder_settings(config: RagConfig) -> dict[str, Any]:
    """The config's encoder section as ``DenseEncoder`` keyword arguments."""
    return dataclasses.asdict(config.encoder)


def build_bundle(
    config: RagConfig,
    corpus: str | Path,
    out: str | Path,
    progress: bool = True,
    embedding_cache: str | Path | None = None,
    notify: Notify | None = None,
    lock_timeout: float | None = None,
    report: ReadReport | None = None,
) -> BundleSummary:
    """Read ``corpus``, chunk it as configured, build every index the retrieval mode needs into ``out``.

    ``out`` must be new, an empty folder or a bundle (which is replaced); anything else is refused before
    any work (:func:`indexers.bundle.check_bundle_target`). The bundle is assembled in a hidden sibling
    folder under the bundle's writer lock and swapped into place whole (:mod:`indexers.bundle`), so an
    interrupted build never leaves half a bundle. ``embedding_cache``: a folder that keeps document
    vectors between builds (see :mod:`rag.encoders.cache`). ``notify`` receives messages about waiting
    for another writer and cleaning up (default: standard error). ``report``: the corpus already read
    with :func:`rag.core.readers.read_corpus` (a pipe can be read only once).
    """
    started = time.perf_counter()
    out = Path(out)
    check_bundle_target(out, corpus)
    report = report or read_corpus(corpus)
    if not report.documents:
        raise ConfigError(f"{corpus}: no documents to index (skipped: {report.skipped or 'none'})")
    chunks = chunk_documents(report.documents, make_chunker(config.chunking))
    with bundle_write(out, notify, lock_timeout) as write:
        check_bundle_target(out, corpus)  # again under the lock: another process may have written there
        staging = write.staging
        built = []
        warnings = list(report.warnings)
        if config.needs_dense:
            encoder = DenseEncoder(**encoder_settings(config))
            # Rule: text beyond the encoder's max length is truncated for embedding (MTEB / BEIR convention),
            # never silently: the summary says how many chunks were cut, and how to keep all text.
            cut = encoder.count_truncated([join_title(c.meta.get("title"), c.content or "") for c in chunks])
            if cut:
                limit = encoder.fingerprint.max_length
                warnings.append(
                    f"{cut} of {len(chunks)} chunks are longer than the encoder's {limit}-token limit "
                    "and were truncated for the dense index; set chunking (e.g. method: recursive, "
                    "size: 200) to embed all of their text"
                )
            build_index(
                chunks,
                staging / "dense",
                config.index.type,
                dict(config.index.params),
                encoder=encoder,
                progress=progress,
                documents=len(report.documents),
                embedding_cache=embedding_cache,
            )
            built.append("dense")
        if config.needs_bm25:
            build_index(
                chunks,
                staging / "bm25",
                "bm25",
                dict(config.bm25),
                progress=progress,
                documents=len(report.documents),
            )
            built.append("bm25")
        if MULTIVECTOR in config.sides:
            from rag.retrievers.colbert import build_side

            build_side(
                config,
                chunks,
                staging / MULTIVECTOR,
                progress,
                documents=len(report.documents),
                embedding_cache=embedding_cache,
            )
            built.append(MULTIVECTOR)
        (staging / BUNDLE_CONFIG).write_text(config.to_yaml(), encoding="utf-8")
        summary = BundleSummary(
            path=str(out),
            documents=len(report.documents),
            chunks=len(chunks),
            seconds=time.perf_counter() - started,
            bytes_on_disk=directory_size(staging),
            indexes=built,
            skipped=dict(report.skipped),
            warnings=warnings,
        )
        _write_build_summary(staging, summary)
        write.commit()
    return summary


def read_build_summary(index_dir: str | Path) -> BundleSummary | None:
    """The summary stored in a bundle, or None when ``index_dir`` is not a complete bundle."""
    path = Path(index_dir) / BUILD_SUMMARY
    if not is_bundle(index_dir) or not path.is_file():
        return None
    return BundleSummary(**json.loads(path.read_text(encoding="utf-8")))


def _write_build_summary(folder: Path, summary: BundleSummary) -> None:
    (folder / BUILD_SUMMARY).write_text(json.dumps(dataclasses.asdict(summary), indent=2), encoding="utf-8")


def _load_sides(index_dir: Path, config: RagConfig) -> tuple[dict[str, Index], DenseEncoder | None]:
    """Every index of a bundle, checked to hold the same chunks (a bundle written before bundle.json
    existed could have sides from different writes), and the encoder of the sides that need one."""
    encoder = DenseEncoder(**encoder_settings(config)) if config.needs_dense else None
    fingerprint = encoder.fingerprint if encoder is not None else None
    # The multi-vector side checks its ColBERT encoder when it is searched or added to (vectors_for).
    sides = {
        side: load_index(index_dir / side, None if side == MULTIVECTOR else fingerprint)
        for side in config.sides
    }
    id_sets = {side: set(index.ids) for side, index in sides.items()}
    if len({frozenset(ids) for ids in id_sets.values()}) > 1:
        counts = ", ".join(f"{side} {len(ids)}" for side, ids in id_sets.items())
        raise IndexCorruptError(
            f"the indexes of bundle {index_dir} hold different chunks ({counts}): an earlier write was "
            "interrupted. Rebuild the bundle with `rag index`"
        )
    return sides, encoder


def _finish_update(index_dir: Path, staging: Path, sides: dict[str, Index], documents: int) -> int:
    """Save the updated sides and the bundle's own files into ``staging``; returns the chunk count."""
    for side, index in sides.items():
        index.save(staging / side)
    shutil.copyfile(index_dir / BUNDLE_CONFIG, staging / BUNDLE_CONFIG)
    chunks = len(next(iter(sides.values()))) if sides else 0
    previous = read_build_summary(index_dir)
    summary = previous or BundleSummary(str(index_dir), 0, 0, 0.0, 0, list(sides))
    summary.documents, summary.chunks = documents, chunks
    summary.bytes_on_disk = directory_size(staging)
    _write_build_summary(staging, summary)
    return chunks


def _source_ids(documents: Sequence[Document]) -> set[str]:
    return {str(d.meta.get("source_id", d.id)) for d in documents}


def add_to_bundle(
    index_dir: str | Path,
    corpus: str | Path,
    progress: bool = True,
    notify: Notify | None = None,
    lock_timeout: float | None = None,
    report: ReadReport | None = None,
) -> BundleSummary:
    """Add the documents of ``corpus`` to an existing bundle, chunked and encoded as the bundle was built.

    Ids already in the bundle are refused (delete them first) before anything is encoded. The whole
    bundle is rewritten as one unit under the writer lock (see :func:`build_bundle`); an error means that
    nothing changed.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    load_bundle_config(index_dir, notify)  # fail fast, before reading the corpus
    report = report or read_corpus(corpus)
    if not report.documents:
        raise ConfigError(
            f"{corpus}: no documents to add (skipped: {report.skipped or 'none'}); nothing was changed"
        )
    with bundle_write(index_dir, notify, lock_timeout, must_exist=True) as write:
        config = load_bundle_config(index_dir)
        chunks = chunk_documents(report.documents, make_chunker(config.chunking))
        sides, encoder = _load_sides(index_dir, config)
        first = next(iter(sides.values()))
        stored = first.get(first.ids)
        known = set(first.ids)
        clash = [c.id for c in chunks if c.id in known] + sorted(
            _source_ids(report.documents) & _source_ids(stored)
        )
        if clash:
            raise ConfigError(
                f"{len(set(clash))} id(s) of {corpus} are already in {index_dir}: "
                f"{format_ids(list(dict.fromkeys(clash)))}. Delete them first (`rag delete`) or give new "
                "ids; nothing was changed"
            )
        vectors = encode_chunks(encoder, chunks, progress=progress) if encoder is not None else None
        for side, index in sides.items():
            if side == MULTIVECTOR:  # token vectors, from the bundle's ColBERT encoder
                from rag.retrievers.colbert import vectors_for

                index.add(chunks, vectors_for(config, chunks, index, progress))  # type: ignore[arg-type]
                continue
            index.add(chunks, vectors if index.needs_encoder else None)
        documents = len(_source_ids(stored)) + len(report.documents)
        _finish_update(index_dir, write.staging, sides, documents)
        write.commit()
    return BundleSummary(
        path=str(index_dir),
        documents=len(report.documents),
        chunks=len(chunks),
        seconds=time.perf_counter() - started,
        bytes_on_disk=directory_size(index_dir),
        indexes=list(sides),
        skipped=dict(report.skipped),
        warnings=list(report.warnings),
    )


def delete_from_bundle(
    index_dir: str | Path,
    ids: Sequence[str],
    notify: Notify | None = None,
    lock_timeout: float | None = None,
) -> DeleteSummary:
    """Delete documents by id from every index of a bundle, as one unit.

    An id names a source document (all of its chunks go) or, failing that, a single chunk; chunk ids
    never equal a document id (:func:`rag.core.chunking.chunk_documents`), so no id means both. Unknown
    ids are refused, naming them, and then nothing is deleted.
    """
    index_dir = Path(index_dir)
    wanted = id_list(ids)
    if not wanted:
        raise ConfigError("give at least one document or chunk id to delete")
    with bundle_write(index_dir, notify, lock_timeout, must_exist=True) as write:
        config = load_bundle_config(index_dir)
        sides, _ = _load_sides(index_dir, config)
        first = next(iter(sides.values()))
        stored = first.get(first.ids)
        sources = _source_ids(stored)
        chunk_ids = {d.id for d in stored}
        unknown = [i for i in wanted if i not in sources and i not in chunk_ids]
        if unknown:
            raise ConfigError(
                f"{index_dir}: no document or chunk with id(s) {format_ids(unknown)}; nothing was deleted"
            )
        doomed_sources = {i for i in wanted if i in sources}
        doomed_chunks = {i for i in wanted if i not in sources}
        doomed = [
            d.id
            for d in stored
            if str(d.meta.get("source_id", d.id)) in doomed_sources or d.id in doomed_chunks
        ]
        for index in sides.values():
            index.delete(doomed)
        remaining = first.get(first.ids)
        documents_left = len(_source_ids(remaining))
        _finish_update(index_dir, write.staging, sides, documents_left)
        write.commit()
    return DeleteSummary(
        documents=len(sources) - documents_left,
        chunks=len(doomed),
        chunked=(config.chunking or {}).get("method", "none") != "none",
        indexes=list(sides),
    )


def load_bundle_config(index_dir: str | Path, notify: Notify | None = None) -> RagConfig:
    """The config a bundle was built with, after checking that the bundle is whole (its files match
    ``bundle.json``)."""
    read_bundle_manifest(index_dir, notify)
    return load_config(Path(index_dir) / BUNDLE_CONFIG)


def build_pipeline(config: RagConfig | str | Path | None, index_dir: str | Path) -> Pipeline:
    """A ready pipeline over the bundle in ``index_dir``: the config's retrieval stage, then its
    ``stages``, each made by the builder registered for it (:mod:`rag.stages`).

    ``config`` defaults to the bundle's own ``config.yaml``; a different config may change query-time
    settings (``top_k``, ``candidates``, later stages) but must use the encoder the bundle was built
    with: the dense retriever checks the index manifest when the pipeline warms up. Run it with
    :func:`retrieve` or :func:`run_query`.
    """
    from rag.stages import build_stages

    index_dir = Path(index_dir)
    if config is None:
        config = load_bundle_config(index_dir)
    elif not isinstance(config, RagConfig):
        config = load_config(config)
    present = read_bundle_manifest(index_dir)["sides"]
    missing = [side for side in config.sides if side not in present]
    if missing:
        raise ConfigError(
            f"config {config.name!r} (retrieval.mode {config.retrieval.mode}) needs the {', '.join(missing)} "
            f"index, but bundle {index_dir} holds only {', '.join(present) or 'none'}; query it with its own "
            "config, or build a bundle for this one with `rag index`"
        )
    return build_stages(config, index_dir)


@dataclass
class QueryResult:
    """What one query through a pipeline gave: the ranked documents of the last stage that produces
    documents, the replies of a generator if the pipeline has one, the seconds each stage took, and the
    ``metrics`` output of the last stage that has one (a compressor's token accounting), else None."""

    documents: list[Document]
    replies: list[Any] | None
    stage_seconds: dict[str, float]
    metrics: dict[str, Any] | None = None


def run_query(
    pipeline: Pipeline,
    query: str,
    top_k: int | None = None,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> QueryResult:
    """Run one query through a pipeline, ours (built by :func:`build_pipeline`) or a user's own.

    The query goes to every component with an unconnected ``query`` input. ``top_k`` goes where the
    pipeline's query plan says (:mod:`rag.stages`: the result stage takes it, candidate stages fetch
    ``max(top_k, depth)``); a pipeline without a plan gives it to every unconnected ``top_k`` input.
    ``inputs`` adds per-call values for other unconnected inputs, ``{component: {input: value}}`` (the
    HTTP service's per-call overrides); they win over ``query`` and ``top_k`` for the inputs they name.
    The result is read from the last component, in graph order, that outputs ``documents``.
    """
    query = check_query(query)
    k = check_top_k(top_k) if top_k is not None else None
    free = pipeline.inputs()
    plan = pipeline.metadata.get("rag") if isinstance(pipeline.metadata, dict) else None
    data: dict[str, dict[str, Any]] = {
        name: {"query": query} for name, sockets in free.items() if "query" in sockets
    }
    if k is not None:
        if plan:
            takers = {name: k for name in plan["top_k"]}
            takers.update({name: max(k, depth) for name, depth in plan["candidates"].items()})
        else:
            takers = {name: k for name, sockets in free.items() if "top_k" in sockets}
        for name, depth in takers.items():
            data.setdefault(name, {})["top_k"] = depth
    for name, values in (inputs or {}).items():
        data.setdefault(name, {}).update(values)
    documents_from = str(plan["output"]) if plan else str(_last_producer(pipeline, "documents"))
    replies_from = _last_producer(pipeline, "replies", required=False)
    metrics_from = _last_producer(pipeline, "metrics", required=False)
    wanted = {n for n in (documents_from, replies_from, metrics_from) if n is not None}
    with stage_timer() as seconds:
        try:
            result = pipeline.run(data, include_outputs_from=wanted)
        except PipelineRuntimeError as error:
            # Haystack wraps what a component raised; ours (an endpoint down, a bad input) say the fix.
            if isinstance(error.__cause__, RagError):
                raise error.__cause__ from None
            raise
    replies = result.get(replies_from, {}).get("replies") if replies_from else None
    metrics = result.get(metrics_from, {}).get("metrics") if metrics_from else None
    return QueryResult(list(result[documents_from]["documents"]), replies, dict(seconds), metrics)


def retrieve(pipeline: Pipeline, query: str, top_k: int | None = None) -> list[Document]:
    """The ranked documents of one query (:func:`run_query`)."""
    return run_query(pipeline, query, top_k).documents


def _last_producer(pipeline: Pipeline, output: str, required: bool = True) -> str | None:
    import networkx as nx  # haystack's own graph library

    sockets = pipeline.outputs(include_components_with_connected_outputs=True)
    producers = [name for name in nx.topological_sort(pipeline.graph) if output in sockets.get(name, {})]
    if not producers:
        if required:
            raise ConfigError(f"the pipeline has no component with a {output!r} output to read results from")
        return None
    return producers[-1]


_STAGE_SECONDS: ContextVar[dict[str, float] | None] = ContextVar("rag_stage_seconds", default=None)


@contextmanager
def stage_timer() -> Iterator[dict[str, float]]:
    """Collect the seconds each pipeline component runs, within this block and this context only.

    Haystack reports every component run to its tracer; ours forwards to whatever tracer was set
    (so a user's tracing keeps working) and adds the timings of the current context.
    """
    if not isinstance(tracing.tracer.actual_tracer, _StageTimer):
        tracing.tracer.actual_tracer = _StageTimer(tracing.tracer.actual_tracer)
    seconds: dict[str, float] = {}
    token = _STAGE_SECONDS.set(seconds)
    try:
        yield seconds
    finally:
        _STAGE_SECONDS.reset(token)


class _StageTimer(tracing.Tracer):
    """Forwards every span to the tracer it wraps and adds component run times to the current context."""

    def __init__(self, inner: tracing.Tracer) -> None:
        self.inner = inner

    @contextmanager
    def trace(
        self, operation_name: str, tags: dict[str, Any] | None = None, parent_span: Any = None
    ) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            with self.inner.trace(operation_name, tags=tags, parent_span=parent_span) as span:
                yield span
        finally:
            seconds = _STAGE_SECONDS.get()
            if seconds is not None and operation_name == "haystack.component.run":
                name = str((tags or {}).get("haystack.component.name"))
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

    def current_span(self) -> Any:
        return self.inner.current_span()


# Haystack refuses to rebuild classes from modules outside its allowlist; these are ours, and trusted.
TRUSTED_MODULES = [
    "rag.encoders.components",
    "rag.retrievers.dense",
    "rag.retrievers.bm25",
    "rag.retrievers.ranking",
    "rag.retrievers.colbert",
    "rag.retrievers.prf",
    "compressors.semantic",
    "compressors.extractive",
    "compressors.abstractive",
    "compressors.random_drop",
    "rag.generation.generator",
]


def save_pipeline(pipeline: Pipeline, path: str | Path) -> None:
    """Write a pipeline (ours or a user's own, with our components) as Haystack YAML."""
    write_file_atomically(Path(path), pipeline.dumps())


def load_pipeline(source: str | Path) -> Pipeline:
    """Load a pipeline from a YAML file or string written by :func:`save_pipeline` / ``Pipeline.dumps``."""
    text = str(source)
    if "\n" not in text and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    return Pipeline.loads(text, allowed_modules=TRUSTED_MODULES)
