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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline

from indexers import build_index, directory_size, load_index
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
from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.readers import ReadReport, read_corpus
from rag.core.validation import check_query, check_top_k
from rag.encoders.components import QueryEncoder
from rag.encoders.dense import DenseEncoder, join_title
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever
from rag.retrievers.hybrid import HybridRetriever


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


def _bundle_sides(config: RagConfig) -> list[str]:
    return [side for side, needed in (("dense", config.needs_dense), ("bm25", config.needs_bm25)) if needed]


def _load_sides(index_dir: Path, config: RagConfig) -> dict[str, Any]:
    """Every index of a bundle, checked to hold the same chunks (a bundle written before bundle.json
    existed could have sides from different writes)."""
    sides: dict[str, Any] = {}
    for side in _bundle_sides(config):
        if side == "dense":
            sides[side] = load_index(index_dir / side, DenseEncoder(**encoder_settings(config)).fingerprint)
        else:
            sides[side] = load_index(index_dir / side)
    id_sets = {side: set(index.ids) for side, index in sides.items()}
    if len({frozenset(ids) for ids in id_sets.values()}) > 1:
        counts = ", ".join(f"{side} {len(ids)}" for side, ids in id_sets.items())
        raise IndexCorruptError(
            f"the indexes of bundle {index_dir} hold different chunks ({counts}): an earlier write was "
            "interrupted. Rebuild the bundle with `rag index`"
        )
    return sides


def _finish_update(index_dir: Path, staging: Path, sides: dict[str, Any], documents: int) -> int:
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
        sides = _load_sides(index_dir, config)
        stored = next(iter(sides.values())).get(next(iter(sides.values())).ids) if sides else []
        known = set(next(iter(sides.values())).ids) if sides else set()
        clash = [c.id for c in chunks if c.id in known] + sorted(
            _source_ids(report.documents) & _source_ids(stored)
        )
        if clash:
            raise ConfigError(
                f"{len(set(clash))} id(s) of {corpus} are already in {index_dir}: "
                f"{format_ids(list(dict.fromkeys(clash)))}. Delete them first (`rag delete`) or give new "
                "ids; nothing was changed"
            )
        for side, index in sides.items():
            if side == "dense":
                encoder = DenseEncoder(**encoder_settings(config))
                index.add(chunks, encode_chunks(encoder, chunks, progress=progress))
            else:
                index.add(chunks)
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
        sides = _load_sides(index_dir, config)
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
    """A ready retrieval pipeline over the bundle in ``index_dir``.

    ``config`` defaults to the bundle's own ``config.yaml``; a different config may change query-time
    settings (``top_k``, ``candidates``) but must use the encoder the bundle was built with: the dense
    retriever checks the index manifest when the pipeline warms up. Run it with
    ``pipeline.run({"query": text})`` (optionally ``"top_k"``) or :func:`retrieve`.
    """
    index_dir = Path(index_dir)
    if config is None:
        config = load_bundle_config(index_dir)
    elif not isinstance(config, RagConfig):
        config = load_config(config)
    present = read_bundle_manifest(index_dir)["sides"]
    missing = [side for side in _bundle_sides(config) if side not in present]
    if missing:
        raise ConfigError(
            f"config {config.name!r} (retrieval.mode {config.retrieval.mode}) needs the {', '.join(missing)} "
            f"index, but bundle {index_dir} holds only {', '.join(present) or 'none'}; query it with its own "
            "config, or build a bundle for this one with `rag index`"
        )
    mode, top_k = config.retrieval.mode, config.retrieval.top_k
    encoder = encoder_settings(config)
    pipe = Pipeline()
    if mode == "bm25":
        pipe.add_component("retriever", BM25Retriever(str(index_dir / "bm25"), top_k=top_k))
        return pipe
    pipe.add_component(
        "query_encoder",
        QueryEncoder(
            model=encoder["model"],
            batch_size=encoder["batch_size"],
            max_length=encoder["max_length"],
            normalize=encoder["normalize"],
            prefix=encoder["query_prefix"],
        ),
    )
    if mode == "dense":
        pipe.add_component(
            "retriever", DenseRetriever(str(index_dir / "dense"), top_k=top_k, encoder=encoder)
        )
    else:
        pipe.add_component(
            "retriever",
            HybridRetriever(
                str(index_dir / "dense"),
                str(index_dir / "bm25"),
                top_k=top_k,
                candidates=config.retrieval.candidates,
                encoder=encoder,
            ),
        )
    pipe.connect("query_encoder.embedding", "retriever.query_embedding")
    return pipe


def retrieve(pipeline: Pipeline, query: str, top_k: int | None = None) -> list[Document]:
    """Run a pipeline built by :func:`build_pipeline` for one query and return its ranked documents."""
    data: dict[str, Any] = {"query": check_query(query)}
    if top_k is not None:
        data["top_k"] = check_top_k(top_k)
    result = pipeline.run(data)
    return list(result["retriever"]["documents"])


# Haystack refuses to rebuild classes from modules outside its allowlist; these are ours, and trusted.
TRUSTED_MODULES = [
    "rag.encoders.components",
    "rag.retrievers.dense",
    "rag.retrievers.bm25",
    "rag.retrievers.hybrid",
]


def save_pipeline(pipeline: Pipeline, path: str | Path) -> None:
    """Write a pipeline (ours or a user's own, with our components) as Haystack YAML."""
    Path(path).write_text(pipeline.dumps(), encoding="utf-8")


def load_pipeline(source: str | Path) -> Pipeline:
    """Load a pipeline from a YAML file or string written by :func:`save_pipeline` / ``Pipeline.dumps``."""
    text = str(source)
    if "\n" not in text and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    return Pipeline.loads(text, allowed_modules=TRUSTED_MODULES)
