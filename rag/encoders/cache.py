"""On-disk cache of document embeddings, so the same texts are never encoded twice.

Encoding dominates every build on a CPU (SciFact's 5,183 abstracts take minutes), and evaluations build
several indexes over the same chunks (dense, hybrid, HNSW vs flat). One ``.npy`` file holds the vectors
of one list of texts, named by a hash of the encoder's fingerprint, its document prefix and the texts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.encoders.dense import DenseEncoder


def embeddings_key(encoder: DenseEncoder, texts: Sequence[str], prefix: str | None = None) -> str:
    """Key of the vectors of ``texts``; ``prefix`` is what the encoder puts before each text (default: its
    document prefix; pass ``encoder.query_prefix`` for queries). Queries and documents differ only by it."""
    digest = hashlib.sha256()
    digest.update(json.dumps(encoder.fingerprint.to_dict(), sort_keys=True).encode())
    digest.update((encoder.document_prefix if prefix is None else prefix).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()[:24]


def cached_embeddings(
    cache_dir: str | Path | None,
    encoder: DenseEncoder,
    texts: Sequence[str],
    compute: Callable[[], np.ndarray],
    prefix: str | None = None,
) -> np.ndarray:
    """Vectors of ``texts`` from ``cache_dir`` if stored there, else ``compute()`` and store them.

    ``cache_dir=None`` disables the cache. A file that does not load or has the wrong shape is recomputed.
    """
    if cache_dir is None:
        return compute()
    folder = Path(cache_dir)
    path = folder / f"{embeddings_key(encoder, texts, prefix)}.npy"
    if path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (len(texts), encoder.fingerprint.dimension):
                return vectors
        except (OSError, ValueError):
            pass
    vectors = compute()
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(partial, vectors, allow_pickle=False)
    partial.replace(path)  # atomic: a reader never sees half a file
    return vectors
