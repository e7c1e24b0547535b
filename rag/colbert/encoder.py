"""ColBERT inference: token vectors for queries and documents, and the fingerprint an index records.

Example (needs a trained checkpoint, e.g. the one ``benchmarks/train_colbert.py`` writes)::

    enc = ColBERTEncoder("benchmarks/.cache/models/colbert-minilm")
    [q] = enc.encode_queries(["what causes tides"])          # (32, 128): [CLS] [Q] ... [SEP] [MASK]...
    vecs, ids = enc.encode_documents(["The Moon's pull."])   # punctuation dropped, [CLS] [D] [SEP] kept
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.colbert import DEFAULT_DOC_MAXLEN, DEFAULT_QUERY_MAXLEN
from rag.core.models import model_files, model_folder
from rag.core.validation import positive_int

FINGERPRINT_POOLING = "colbert"


@functools.lru_cache(maxsize=4)
def _load(model: str, device: str, query_maxlen: int, doc_maxlen: int) -> Any:
    # One copy per process and setting: every index, retriever and PRF stage over one model shares it.
    from rag.colbert.loaders import load_colbert
    from rag.colbert.model import set_lengths

    loaded = load_colbert(model, device=device)
    set_lengths(loaded, query_maxlen, doc_maxlen)
    loaded.eval()
    return loaded


class ColBERTEncoder:
    """Token vectors of a ColBERT checkpoint (ours, PyLate's or Stanford's: :mod:`rag.colbert.loaders`).

    ``query_maxlen`` / ``doc_maxlen`` override the checkpoint's lengths (the defaults are ColBERT's 32
    and 180). A query longer than ``query_maxlen`` tokens is truncated with a warning; a document is cut
    at ``doc_maxlen`` tokens, then loses its punctuation tokens, and always keeps ``[CLS]``, ``[D]`` and
    ``[SEP]`` (so an empty document still has three vectors: :mod:`rag.colbert.model`).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        query_maxlen: int = DEFAULT_QUERY_MAXLEN,
        doc_maxlen: int = DEFAULT_DOC_MAXLEN,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        from rag.colbert.model import check_lengths, colbert_settings

        self.model_name = str(model)
        self.query_maxlen, self.doc_maxlen = check_lengths(query_maxlen, doc_maxlen)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.device = device
        self.model = _load(self.model_name, device, self.query_maxlen, self.doc_maxlen)
        self.settings = colbert_settings(self.model)
        self.dim: int = self.settings["dim"]
        self.query_marker: str = self.settings["query_marker"]
        self.document_marker: str = self.settings["document_marker"]
        self.tokenizer = self.model.tokenizer
        self._fingerprint: dict[str, Any] | None = None

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One ``(query_maxlen, dim)`` float32 array per query (L2-normalised rows, ``[MASK]`` rows in)."""
        texts = list(texts)
        if not texts:
            return []
        self._warn_long_queries(texts)
        vectors = self.model.encode_query(texts, batch_size=self.batch_size, convert_to_numpy=True)
        return [np.ascontiguousarray(v, dtype=np.float32) for v in vectors]

    def encode_documents(
        self, texts: Sequence[str], progress: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per document: its token vectors ``(n_tokens, dim)`` float32 and their token ids ``(n_tokens,)``
        int32, punctuation removed, in text order."""
        texts = list(texts)
        if not texts:
            return [], []
        outputs = self.model.encode_document(
            texts, batch_size=self.batch_size, output_value=None, show_progress_bar=progress
        )
        vectors, token_ids = [], []
        for out in outputs:
            keep = out["attention_mask"].bool().cpu().numpy()  # the scoring mask: padding and skiplist off
            vectors.append(
                np.ascontiguousarray(out["token_embeddings"].float().cpu().numpy()[keep], dtype=np.float32)
            )
            token_ids.append(out["input_ids"].cpu().numpy()[keep].astype(np.int32))
        return vectors, token_ids

    def fingerprint(self) -> dict[str, Any]:
        """What must match between an index and its queries, as the fields of
        :class:`rag.encoders.dense.EncoderFingerprint` (``EncoderFingerprint.from_dict`` reads it): the
        hash of the model's files (weights, tokenizer, ColBERT config), dim, markers and both lengths."""
        if self._fingerprint is None:
            folder = model_folder(self.model_name)
            files = model_files(folder) if folder is not None else None
            self._fingerprint = {
                "name": self.model_name,
                "dimension": self.dim,
                "pooling": FINGERPRINT_POOLING,
                "normalize": True,
                "max_length": self.doc_maxlen,
                "tempscale_tau": None,
                "model_sha256": files.sha256 if files else "",
                "revision": files.revision if files else "",
                "query_prefix": "",
                "document_prefix": "",
                "query_marker": self.query_marker,
                "document_marker": self.document_marker,
                "query_max_length": self.query_maxlen,
                "document_max_length": self.doc_maxlen,
                "format": 2,
            }
        return dict(self._fingerprint)

    def _warn_long_queries(self, texts: list[str]) -> None:
        lengths = self.tokenizer([self.query_marker + t for t in texts], add_special_tokens=True)["input_ids"]
        long = [(t, len(ids)) for t, ids in zip(texts, lengths, strict=True) if len(ids) > self.query_maxlen]
        if long:
            text, n = long[0]
            warnings.warn(
                f"{len(long)} quer{'y' if len(long) == 1 else 'ies'} longer than query_maxlen="
                f"{self.query_maxlen} tokens truncated (the first, {n} tokens: {text[:60]!r}); raise "
                "query_maxlen to keep more",
                UserWarning,
                stacklevel=3,
            )
