"""Dense bi-encoder on top of sentence-transformers, with a fingerprint stored in every index manifest."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, EncoderMismatchError
from rag.core.models import DEFAULT_DENSE_MODEL, quiet_model_loading, resolve_model


@dataclass(frozen=True)
class EncoderFingerprint:
    """What must match between the encoder that built an index and the one that queries it."""

    name: str
    dimension: int
    pooling: str
    normalize: bool
    max_length: int
    tempscale_tau: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderFingerprint:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: EncoderFingerprint) -> list[str]:
        """Fields that differ, as ``"field: index has X, encoder has Y"`` (self is the index side)."""
        out = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name}: index has {mine!r}, encoder has {theirs!r}")
        return out

    def check_matches(self, other: EncoderFingerprint, index_path: str = "index") -> None:
        """Raise :class:`EncoderMismatchError` naming every differing field."""
        diffs = self.differences(other)
        if diffs:
            raise EncoderMismatchError(
                f"the query encoder does not match the encoder {index_path} was built with ("
                + "; ".join(diffs)
                + "). Query with the same encoder settings, or rebuild the index with `rag index`."
            )


def join_title(title: str | None, text: str) -> str:
    """MTEB / BEIR input convention: title and text joined by one space (title omitted when empty)."""
    return f"{title} {text}".strip() if title else text


class DenseEncoder:
    """A sentence-transformers bi-encoder that turns texts into float32 vectors.

    Not a pipeline component itself: :mod:`rag.encoders.components` wraps it for pipelines, and indexers
    call it directly. Loads lazily on first use.

    :param model: local folder, installed model package name, or hub id (see :func:`resolve_model`).
    :param max_length: tokens per input; ``None`` keeps the model's own maximum (MTEB convention).
    :param normalize: L2-normalize vectors so that inner product is cosine similarity.
    """

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        batch_size: int = 32,
        max_length: int | None = None,
        normalize: bool = True,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str = "cpu",
        progress: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        if max_length is not None and max_length <= 0:
            raise ConfigError(f"max_length must be positive or null (model default), got {max_length}")
        self.model_name = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = device
        self.progress = progress
        self._model: Any = None

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (for component serialization and manifests)."""
        return {
            "model": self.model_name,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "device": self.device,
        }

    @property
    def model(self) -> Any:
        if self._model is None:
            # transformers draws "Loading weights" bars on every load; only show them when progress is on.
            with quiet_model_loading(not self.progress):
                self._model = load_sentence_transformer(self.model_name, self.device, self.max_length)
        return self._model

    @property
    def fingerprint(self) -> EncoderFingerprint:
        model = self.model
        return EncoderFingerprint(
            name=self.model_name,
            dimension=int(model.get_embedding_dimension()),
            pooling=_pooling_mode(model),
            normalize=self.normalize,
            max_length=int(model.max_seq_length),
            tempscale_tau=None,
        )

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many document texts are longer than the model's max length and get cut when embedded."""
        limit = int(self.model.max_seq_length)
        tokenizer = self.model.tokenizer
        # Measuring past the limit is the point here: mark transformers' one-time "longer than the maximum
        # sequence length" warning as already shown, so it does not alarm users of `rag index`.
        shown = getattr(tokenizer, "deprecation_warnings", {})
        shown["sequence-length-is-longer-than-the-specified-maximum"] = True
        lengths = tokenizer(
            [self.document_prefix + t for t in texts],
            add_special_tokens=True,
            truncation=False,
            return_length=True,
        )["length"]
        return sum(1 for n in lengths if n > limit)

    def encode_documents(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        return self._encode([self.document_prefix + t for t in texts], progress)

    def encode_queries(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts], progress)

    def _encode(self, texts: list[str], progress: bool | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.fingerprint.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=self.progress if progress is None else progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(name: str, device: str = "cpu", max_length: int | None = None) -> Any:
    """Load a model once per process: a query encoder and a retriever checking its fingerprint share it."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(name), device=device)
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def _pooling_mode(model: Any) -> str:
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return mode
        get_mode = getattr(module, "get_pooling_mode_str", None)
        if callable(get_mode):
            return str(get_mode())
    return "unknown"
