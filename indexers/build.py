"""Build an index folder from chunks in one call, and open any index folder by its manifest."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document
from tqdm.auto import tqdm

from indexers.bm25 import BM25Index
from indexers.bm25 import resolve_params as resolve_bm25_params
from indexers.dense import INDEX_TYPES as DENSE_TYPES
from indexers.dense import DenseIndex, normalize_index_type
from indexers.dense import resolve_params as resolve_dense_params
from indexers.docstore import DocStore
from indexers.manifest import check_index_target, read_manifest
from rag.core.errors import ConfigError
from rag.encoders.cache import cached_embeddings
from rag.encoders.dense import DenseEncoder, EncoderFingerprint, join_title

INDEX_TYPES = (*DENSE_TYPES, "bm25")


@dataclass
class BuildSummary:
    """What :func:`build_index` did.

    ``documents``: source documents the chunks came from (as passed in, else the number of chunks indexed);
    ``chunks``: chunks indexed; ``seconds``: wall time including encoding and saving; ``bytes_on_disk``:
    size of the index folder; ``skipped``: chunks not indexed, by reason (``"empty"``: no text).
    """

    documents: int
    chunks: int
    seconds: float
    bytes_on_disk: int
    index_type: str
    path: str
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_index(
    chunks: Sequence[Document],
    out: str | Path,
    index_type: str,
    params: dict[str, Any] | None = None,
    encoder: DenseEncoder | None = None,
    progress: bool = True,
    documents: int | None = None,
    embedding_cache: str | Path | None = None,
) -> BuildSummary:
    """Index ``chunks`` and save the folder ``out`` atomically (an index already there is replaced).

    Dense types (``flat``, ``hnsw``, ``ivfpq``) encode ``join_title(meta["title"], content)`` with
    ``encoder``; ``bm25`` needs no encoder. Chunks without text are skipped and counted. Parameters and
    ids are checked before any encoding, so a bad config fails fast. ``embedding_cache``: a folder where
    vectors are kept between builds (see :mod:`rag.encoders.cache`).
    """
    start = time.perf_counter()
    kind = _index_kind(index_type)
    not_documents = [i for i, chunk in enumerate(chunks) if not isinstance(chunk, Document)]
    if not_documents:
        raise ConfigError(f"chunks must be haystack Document objects; items {not_documents[:10]} are not")
    kept = [chunk for chunk in chunks if (chunk.content or "").strip()]
    skipped = {"empty": len(chunks) - len(kept)} if len(kept) < len(chunks) else {}
    DocStore().check_new_ids(kept)
    check_index_target(out)

    index: DenseIndex | BM25Index
    if kind == "bm25":
        index = BM25Index.build(kept, resolve_bm25_params(params))
    else:
        if encoder is None:
            raise ConfigError(
                f"index_type {kind!r} is dense and needs an encoder (DenseEncoder); "
                f"only 'bm25' builds without one"
            )
        fingerprint = encoder.fingerprint
        resolved = resolve_dense_params(kind, params, len(kept), fingerprint.dimension)
        vectors = encode_chunks(encoder, kept, fingerprint, progress=progress, cache_dir=embedding_cache)
        index = DenseIndex.build(kept, vectors, fingerprint, kind, resolved)
    index.save(out)
    return BuildSummary(
        documents=documents if documents is not None else len(kept),
        chunks=len(kept),
        seconds=time.perf_counter() - start,
        bytes_on_disk=directory_size(out),
        index_type=kind,
        path=str(out),
        skipped=skipped,
    )


def encode_chunks(
    encoder: DenseEncoder,
    chunks: Sequence[Document],
    fingerprint: EncoderFingerprint | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Document vectors of ``join_title(meta["title"], content)`` for each chunk, with a progress bar.

    With ``cache_dir``, vectors computed before for the same texts and encoder are read back instead.
    """
    texts = [join_title(_title(chunk), chunk.content or "") for chunk in chunks]
    return cached_embeddings(
        cache_dir,
        encoder,
        texts,
        lambda: _encode(encoder, texts, (fingerprint or encoder.fingerprint), progress),
    )


def _encode(
    encoder: DenseEncoder, texts: list[str], fingerprint: EncoderFingerprint, progress: bool
) -> np.ndarray:
    dimension = fingerprint.dimension
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    # Batches of several encoder batches: the bar moves often, and each call still fills the model's batch.
    step = max(1, encoder.batch_size) * 8
    with tqdm(total=len(texts), desc="encoding", unit="chunk", disable=not progress) as bar:
        for begin in range(0, len(texts), step):
            batch = texts[begin : begin + step]
            out[begin : begin + len(batch)] = encoder.encode_documents(batch, progress=False)
            bar.update(len(batch))
    return out


def load_index(path: str | Path, fingerprint: EncoderFingerprint | None = None) -> DenseIndex | BM25Index:
    """Open the index folder at ``path`` as the type its manifest names.

    ``fingerprint`` (the query encoder's) is checked against dense indexes and ignored for BM25.
    """
    manifest = read_manifest(path)
    if manifest["index_type"] == BM25Index.index_type:
        return BM25Index.load(path)
    return DenseIndex.load(path, fingerprint)


def directory_size(path: str | Path) -> int:
    """Total size in bytes of the regular files under ``path`` (symlinks are not followed)."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            file_path = Path(dirpath) / name
            if not file_path.is_symlink():
                total += file_path.stat().st_size
    return total


def _index_kind(index_type: str) -> str:
    if isinstance(index_type, str) and index_type.strip().lower() == "bm25":
        return "bm25"
    try:
        return normalize_index_type(index_type)
    except ConfigError:
        raise ConfigError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}") from None


def _title(chunk: Document) -> str | None:
    title = (chunk.meta or {}).get("title")
    return str(title) if title is not None else None
