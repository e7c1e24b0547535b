"""Build an index folder from chunks in one call, for any registered index type.

:func:`load_index` (re-exported from :mod:`indexers.base`) opens any index folder by its manifest.
"""

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

from indexers.base import canonical_index_type, index_class, index_types, load_index
from indexers.docstore import DocStore
from indexers.manifest import check_index_target
from rag.core.errors import ConfigError
from rag.encoders.cache import cached_embeddings
from rag.encoders.dense import DenseEncoder, EncoderFingerprint, join_title

__all__ = ["BuildSummary", "build_index", "directory_size", "encode_chunks", "load_index"]


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

    The class registered for ``index_type`` (:func:`indexers.register_index`) builds the index. Types that
    store vectors (``flat``, ``hnsw``, ``ivfpq``) encode ``join_title(meta["title"], content)`` with
    ``encoder``; ``bm25`` needs no encoder. Chunks without text are skipped and counted. Parameters and
    ids are checked before any encoding, so a bad config fails fast. ``embedding_cache``: a folder where
    vectors are kept between builds (see :mod:`rag.encoders.cache`).
    """
    start = time.perf_counter()
    kind = canonical_index_type(index_type)
    cls = index_class(kind)
    not_documents = [i for i, chunk in enumerate(chunks) if not isinstance(chunk, Document)]
    if not_documents:
        raise ConfigError(f"chunks must be haystack Document objects; items {not_documents[:10]} are not")
    kept = [chunk for chunk in chunks if (chunk.content or "").strip()]
    skipped = {"empty": len(chunks) - len(kept)} if len(kept) < len(chunks) else {}
    DocStore().check_new_ids(kept)
    check_index_target(out)

    fingerprint = None
    if cls.needs_encoder:
        if encoder is None:
            plain = [name for name in index_types() if not index_class(name).needs_encoder]
            raise ConfigError(
                f"index_type {kind!r} stores vectors and needs an encoder (DenseEncoder, encoder=...); "
                f"only {plain} build without one"
            )
        fingerprint = encoder.fingerprint
    resolved = cls.check_params(kind, params, len(kept), fingerprint)  # before encoding: fail fast
    vectors = None
    if encoder is not None and cls.needs_encoder:
        vectors = encode_chunks(encoder, kept, fingerprint, progress=progress, cache_dir=embedding_cache)
    index = cls.build(kept, embeddings=vectors, index_type=kind, params=resolved, fingerprint=fingerprint)
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


def _title(chunk: Document) -> str | None:
    title = (chunk.meta or {}).get("title")
    return str(title) if title is not None else None
