"""What every index is, and how its type is found: the :class:`Index` protocol and the index registry.

An index type is a class that implements :class:`Index`, registered under the names a manifest's
``index_type`` may hold. :func:`load_index` reads the manifest and opens the folder with the registered
class; :func:`indexers.build.build_index` builds through the same table. Adding a type is one module and one
registration line::

    @register_index("toy")
    class ToyIndex: ...

The built-in types are registered here by ``"module:Class"`` path and imported when first used, so that
``import indexers`` loads neither FAISS nor bm25s.

A location is a folder path, or a URI ``scheme://...`` for an index that lives elsewhere (a Qdrant
collection, later). A URI is opened by the class registered under its scheme, with no manifest read here:
only folder indexes have a ``manifest.json``.

Ranking rule shared by every type: hits come best first, and exact score ties are ordered by document id,
ascending (:func:`ranked`), also at the ``top_k`` cut-off. Runs are therefore deterministic whatever
order a library returns equal scores in.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

from indexers.manifest import MANIFEST_NAME, read_manifest
from rag.core.errors import ConfigError, RagError

if TYPE_CHECKING:
    import numpy as np
    from haystack import Document

    from rag.encoders.dense import EncoderFingerprint


class UnsupportedOperationError(RagError, NotImplementedError):
    """An index type cannot do what was asked (for example, BM25 holds no vectors for ``embeddings()``)."""


@runtime_checkable
class Index(Protocol):
    """Documents kept with whatever an index type searches them by.

    Every implementation keeps these promises (the suite in :mod:`indexers.testing` checks them):

    - ``search`` returns, per query, up to ``top_k`` ``(document id, score)`` pairs, best first, exact
      score ties ordered by id ascending; ``top_k`` must be a positive integer.
    - ``add`` refuses ids that repeat or already exist, and ``delete`` refuses unknown ids
      (``UnknownDocumentError``); a refused call changes nothing.
    - ``save`` writes atomically; ``load`` verifies every file and names a corrupted or missing one in
      :class:`~rag.core.errors.IndexCorruptError`.
    - ``get`` and ``embeddings`` answer in the order asked; an unknown id raises ``UnknownDocumentError``.
    """

    #: The name this index is registered under and records in its manifest (``flat``, ``bm25``, ...).
    index_type: str
    #: Whether :meth:`build` and :meth:`add` need document vectors from an encoder.
    needs_encoder: ClassVar[bool]

    @property
    def fingerprint(self) -> EncoderFingerprint | None:
        """The encoder the index was built with, or None for an index that needs none (BM25)."""
        ...

    @classmethod
    def check_params(
        cls,
        index_type: str,
        params: dict[str, Any] | None,
        n_documents: int,
        fingerprint: EncoderFingerprint | None,
    ) -> dict[str, Any]:
        """Parameters with defaults filled in and checked; called before any encoding, to fail fast."""
        ...

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        *,
        embeddings: np.ndarray | None = None,
        index_type: str,
        params: dict[str, Any] | None = None,
        fingerprint: EncoderFingerprint | None = None,
    ) -> Self:
        """A new index over ``documents`` (row ``i`` of ``embeddings`` belongs to document ``i``)."""
        ...

    @classmethod
    def load(cls, path: str | Path, fingerprint: EncoderFingerprint | None = None) -> Self:
        """Open a saved index, checking ``fingerprint`` (the query encoder's) where the type has one."""
        ...

    def save(self, path: str | Path) -> None: ...

    def add(self, documents: Sequence[Document], embeddings: np.ndarray | None = None) -> None: ...

    def delete(self, ids: Iterable[str]) -> int: ...

    def search(self, queries: Any, top_k: int) -> list[list[tuple[str, float]]]:
        """``queries``: what the type scores against (an (n, d) float32 matrix, or a list of strings)."""
        ...

    def get(self, ids: Sequence[str]) -> list[Document]: ...

    @property
    def ids(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def embeddings(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these documents, one row each, in the order asked."""
        ...


IndexClass = TypeVar("IndexClass", bound="type[Any] | str")

# index type -> the class, or "module:Class" until first used
_REGISTRY: dict[str, type[Index] | str] = {}
_LOCK = threading.Lock()


def canonical_index_type(name: Any) -> str:
    """The registry key of an index type name: ``"IVF-PQ"``, ``"ivf_pq"`` and ``"ivfpq"`` are one type."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"index_type must be one of {index_types()}, got {name!r}")
    return name.strip().lower().replace("-", "").replace("_", "")


def register_index(*index_types: str) -> Callable[[IndexClass], IndexClass]:
    """Register a class implementing :class:`Index` (or its ``"module:Class"`` path) under these types.

    Registering a type twice with a different class raises :class:`ConfigError`; the same class again
    is a no-op (a module imported twice).
    """
    if not index_types:
        raise ConfigError("register_index needs at least one index type name")

    def register(target: IndexClass) -> IndexClass:
        with _LOCK:
            for name in index_types:
                key = canonical_index_type(name)
                held = _REGISTRY.get(key)
                if held is not None and _target_name(held) != _target_name(target):
                    raise ConfigError(
                        f"index type {key!r} is already registered to {_target_name(held)}; "
                        f"choose another name for {_target_name(target)}"
                    )
                if held is None or isinstance(held, str):
                    _REGISTRY[key] = target
        return target

    return register


def index_types() -> list[str]:
    """Every registered index type, sorted."""
    return sorted(_REGISTRY)


def index_class(index_type: str) -> type[Index]:
    """The class registered for ``index_type`` (importing its module on first use)."""
    key = canonical_index_type(index_type)
    with _LOCK:
        target = _REGISTRY.get(key)
    if target is None:
        raise ConfigError(
            f"unknown index_type {index_type!r}; registered types are {index_types()}. A type from a "
            f"plugin is registered when its module is imported (indexers.register_index)."
        )
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        cls: type[Index] = getattr(importlib.import_module(module_name), attr)
        with _LOCK:
            _REGISTRY[key] = cls
        return cls
    return target


def uri_scheme(location: str | Path) -> str | None:
    """``"qdrant"`` for ``"qdrant://host/collection"``; None for a folder path."""
    text = str(location)
    scheme, sep, _ = text.partition("://")
    return scheme.lower() if sep and scheme.isidentifier() else None


def load_index(path: str | Path, fingerprint: EncoderFingerprint | None = None) -> Index:
    """Open the index at ``path`` as the type its manifest names (a URI: the type its scheme names).

    ``fingerprint`` (the query encoder's) is checked by types built with an encoder and ignored by the
    others (BM25). Each call loads a fresh, private copy; :func:`indexers.cache.cached_index` shares one.
    """
    scheme = uri_scheme(path)
    if scheme is not None:
        try:
            remote = index_class(scheme)
        except ConfigError as exc:
            raise ConfigError(f"no index type opens {str(path)!r} (URI scheme {scheme!r}): {exc}") from None
        return remote.load(str(path), fingerprint)
    manifest = read_manifest(path)
    kind = manifest["index_type"]
    try:
        cls = index_class(kind)
    except ConfigError as exc:
        raise ConfigError(f"{Path(path) / MANIFEST_NAME} names index_type {kind!r}: {exc}") from None
    return cls.load(path, fingerprint)


def rank_key(doc_id: str, score: float) -> tuple[float, str]:
    """The order of every ranking (indexes, fusion): score descending, exact ties by id ascending."""
    return (-score, doc_id)


def ranked(hits: Iterable[tuple[str, float]], top_k: int) -> list[tuple[str, float]]:
    """The best ``top_k`` hits in :func:`rank_key` order.

    >>> ranked([("b", 1.0), ("c", 2.0), ("a", 1.0)], top_k=2)
    [('c', 2.0), ('a', 1.0)]
    """
    return sorted(hits, key=lambda hit: rank_key(*hit))[:top_k]


def _target_name(target: Any) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


# The built-in types: one line per module.
register_index("flat", "hnsw", "ivfpq")("indexers.dense:DenseIndex")
register_index("bm25")("indexers.bm25:BM25Index")
register_index("multivector")("indexers.multivector:MultiVectorIndex")  # ColBERT token vectors
