"""From a YAML config to a ready Haystack pipeline, and the index bundle that pipeline reads.

An *index bundle* is what ``rag index`` writes: a folder holding ``config.yaml`` (the config it was built
with) and one sub-index per retrieval side, ``dense/`` and/or ``bm25/`` (each an :mod:`indexers` folder
with its own manifest). ``rag query --index DIR`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline

from indexers import build_index, directory_size, load_index
from indexers.build import encode_chunks
from rag.core.chunking import chunk_documents, make_chunker
from rag.core.config import RagConfig, load_config
from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.readers import read_corpus
from rag.core.validation import check_query, check_top_k
from rag.encoders.components import QueryEncoder
from rag.encoders.dense import DenseEncoder, join_title
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever
from rag.retrievers.hybrid import HybridRetriever

BUNDLE_CONFIG = "config.yaml"
BUILD_SUMMARY = "build.json"


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


def encoder_settings(config: RagConfig) -> dict[str, Any]:
    """The config's encoder section as ``DenseEncoder`` keyword arguments."""
    return dataclasses.asdict(config.encoder)


def build_bundle(
    config: RagConfig,
    corpus: str | Path,
    out: str | Path,
    progress: bool = True,
    embedding_cache: str | Path | None = None,
) -> BundleSummary:
    """Read ``corpus``, chunk it as configured, build every index the retrieval mode needs into ``out``.

    The bundle is assembled in a temporary sibling folder and renamed into place at the end, so an
    interrupted build never replaces a good bundle with half of one. ``embedding_cache``: a folder that
    keeps document vectors between builds (see :mod:`rag.encoders.cache`).
    """
    started = time.perf_counter()
    out = Path(out)
    report = read_corpus(corpus)
    if not report.documents:
        raise ConfigError(f"{corpus}: no documents to index (skipped: {report.skipped or 'none'})")
    chunks = chunk_documents(report.documents, make_chunker(config.chunking))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
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
        (staging / BUILD_SUMMARY).write_text(
            json.dumps(dataclasses.asdict(summary), indent=2), encoding="utf-8"
        )
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def read_build_summary(index_dir: str | Path) -> BundleSummary | None:
    """The summary ``build_bundle`` stored in a bundle, or None for bundles without one."""
    path = Path(index_dir) / BUILD_SUMMARY
    if not path.is_file():
        return None
    return BundleSummary(**json.loads(path.read_text(encoding="utf-8")))


def _swap_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def _bundle_sides(index_dir: Path, config: RagConfig) -> list[str]:
    return [side for side, needed in (("dense", config.needs_dense), ("bm25", config.needs_bm25)) if needed]


def _update_build_counts(index_dir: Path, documents_delta: int, chunks: int) -> None:
    summary = read_build_summary(index_dir)
    if summary is not None:
        summary.documents += documents_delta
        summary.chunks = chunks
        summary.bytes_on_disk = directory_size(index_dir)
        (index_dir / BUILD_SUMMARY).write_text(
            json.dumps(dataclasses.asdict(summary), indent=2), encoding="utf-8"
        )


def add_to_bundle(index_dir: str | Path, corpus: str | Path, progress: bool = True) -> BundleSummary:
    """Add the documents of ``corpus`` to an existing bundle, chunked and encoded as the bundle was built.

    Ids already in the bundle are refused (delete them first). Each index is saved atomically.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    config = load_bundle_config(index_dir)
    report = read_corpus(corpus)
    chunks = chunk_documents(report.documents, make_chunker(config.chunking))
    total = 0
    for side in _bundle_sides(index_dir, config):
        if side == "dense":
            encoder = DenseEncoder(**encoder_settings(config))
            index: Any = load_index(index_dir / side, encoder.fingerprint)
            index.add(chunks, encode_chunks(encoder, chunks, progress=progress))
        else:
            index = load_index(index_dir / side)
            index.add(chunks)
        index.save(index_dir / side)
        total = len(index)
    _update_build_counts(index_dir, len(report.documents), total)
    return BundleSummary(
        path=str(index_dir),
        documents=len(report.documents),
        chunks=len(chunks),
        seconds=time.perf_counter() - started,
        bytes_on_disk=directory_size(index_dir),
        indexes=_bundle_sides(index_dir, config),
        skipped=dict(report.skipped),
        warnings=list(report.warnings),
    )


def delete_from_bundle(index_dir: str | Path, ids: Sequence[str]) -> int:
    """Delete documents by id from every index of a bundle; returns the number of chunks removed.

    An id names a document (all of its chunks go) or a single chunk. Unknown ids are refused, naming them,
    before anything is deleted.
    """
    index_dir = Path(index_dir)
    config = load_bundle_config(index_dir)
    wanted = set(ids)
    removed = remaining = documents_removed = 0
    for side in _bundle_sides(index_dir, config):
        index: Any = load_index(index_dir / side)
        stored = index.get(index.ids)
        doomed = [d.id for d in stored if d.id in wanted or d.meta.get("source_id") in wanted]
        found = {d.id for d in stored if d.id in wanted} | {
            str(d.meta["source_id"]) for d in stored if d.meta.get("source_id") in wanted
        }
        unknown = sorted(wanted - found)
        if unknown:
            raise ConfigError(f"{index_dir / side}: no document or chunk with id(s) {', '.join(unknown)}")
        removed = index.delete(doomed)
        index.save(index_dir / side)
        remaining = len(index)
        sources_before = {str(d.meta.get("source_id", d.id)) for d in stored}
        sources_after = {str(d.meta.get("source_id", d.id)) for d in index.get(index.ids)}
        documents_removed = len(sources_before - sources_after)
    _update_build_counts(index_dir, -documents_removed, remaining)
    return removed


def load_bundle_config(index_dir: str | Path) -> RagConfig:
    path = Path(index_dir) / BUNDLE_CONFIG
    if not Path(index_dir).is_dir():
        raise IndexCorruptError(
            f"index folder {index_dir} does not exist; "
            "build one with `rag index --config ... --corpus ... --out ...`"
        )
    if not path.is_file():
        raise IndexCorruptError(
            f"{path} is missing: {index_dir} is not an index bundle written by `rag index` "
            "(rebuild it with `rag index --config ... --corpus ... --out ...`)"
        )
    return load_config(path)


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
