"""FAISS dense indexes scored by inner product: exact ``flat``, graph ``hnsw`` and compressed ``ivfpq``.

Vectors are expected L2-normalized by the encoder, so the inner product is the cosine similarity.

On disk (see :mod:`indexers.manifest`)::

    manifest.json     format version, encoder fingerprint, index type and parameters, counts, checksums
    index.faiss       the FAISS index (faiss.write_index), vectors stored under int64 labels
    labels.npy        int64, strictly increasing: labels[i] is the FAISS label of document i
    documents.jsonl   documents in index order

Labels, not row positions, identify vectors inside FAISS, because IVF-PQ's ``remove_ids`` does not renumber
what is left. Labels only grow, so ``labels.npy`` stays sorted and a label maps back to its document row by
binary search.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import faiss
import numpy as np
from haystack import Document

from indexers.base import ranked
from indexers.docstore import DOCUMENTS_FILE, DocStore, DocStoreBacked, id_list
from indexers.manifest import REBUILD_HINT, read_manifest, verify_checksums, write_index_atomically
from rag.core.config import DENSE_INDEX_DEFAULTS, check_index_params
from rag.core.errors import ConfigError, EncoderMismatchError, IndexCorruptError, RagError
from rag.core.validation import check_top_k, positive_int
from rag.encoders.dense import EncoderFingerprint

if TYPE_CHECKING:
    from indexers.base import Index

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
FAISS_FILE = "index.faiss"
LABELS_FILE = "labels.npy"

# Parameters and defaults per type, declared with the config so that it is checked without FAISS. None
# means "chosen from the corpus size at build time" (see resolve_params).
DEFAULT_PARAMS: dict[str, dict[str, int | None]] = DENSE_INDEX_DEFAULTS
# FAISS's k-means warns below 39 training points per centroid; we size nlist to stay above it.
MIN_POINTS_PER_CENTROID = 39
DEFAULT_NPROBE = 16
# faiss's bundled stubs do not declare DirectMap (label -> code lookup of IVF indexes).
_DIRECT_MAP: Any = vars(faiss)["DirectMap"]


def normalize_index_type(index_type: str) -> str:
    """Canonical dense index type: ``"IVF-PQ"`` and ``"ivf_pq"`` become ``"ivfpq"``."""
    if not isinstance(index_type, str):
        raise ConfigError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")
    kind = index_type.strip().lower().replace("-", "").replace("_", "")
    if kind not in INDEX_TYPES:
        raise ConfigError(f"dense index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")
    return kind


def resolve_params(
    index_type: str, params: dict[str, Any] | None, n_vectors: int, dimension: int
) -> dict[str, int]:
    """Fill in defaults and adapt to the corpus size; the result is what the manifest records.

    ``ivfpq`` defaults: ``nlist = 4 * sqrt(n)`` (at most ``n / 39``), ``m`` = the largest divisor of the
    dimension not above ``dimension / 4``, ``nbits = 8``, ``nprobe = min(16, nlist)``. An explicit
    ``nlist`` too large for the corpus is lowered with a warning. Fewer than ``2**nbits`` vectors cannot
    train the product quantizer: :class:`ConfigError`.
    """
    kind = normalize_index_type(index_type)
    given = _check_keys(kind, params)
    merged: dict[str, Any] = {**DEFAULT_PARAMS[kind], **given}
    if kind != "ivfpq":
        return _check_values(kind, merged, dimension)

    nbits = _positive_int(kind, "nbits", merged["nbits"])
    if n_vectors < 2**nbits:
        raise ConfigError(
            f"ivfpq needs at least {2**nbits} vectors to train its product quantizer (nbits={nbits}), got "
            f"{n_vectors}. Use index_type 'flat' or 'hnsw' for a corpus this small, or lower nbits."
        )
    max_nlist = max(1, n_vectors // MIN_POINTS_PER_CENTROID)
    if merged["nlist"] is None:
        merged["nlist"] = min(max(1, round(4 * math.sqrt(n_vectors))), max_nlist)
    else:
        nlist = _positive_int(kind, "nlist", merged["nlist"])
        if nlist > max_nlist:
            warnings.warn(
                f"ivfpq nlist={nlist} is too many lists for {n_vectors} vectors (FAISS wants at least "
                f"{MIN_POINTS_PER_CENTROID} per list); using nlist={max_nlist}",
                UserWarning,
                stacklevel=3,
            )
            merged["nlist"] = max_nlist
    if merged["m"] is None:
        merged["m"] = max(d for d in range(1, max(1, dimension // 4) + 1) if dimension % d == 0)
    if merged["nprobe"] is None:
        merged["nprobe"] = min(DEFAULT_NPROBE, merged["nlist"])
    elif isinstance(merged["nprobe"], int) and merged["nprobe"] > merged["nlist"]:
        merged["nprobe"] = merged["nlist"]
    return _check_values(kind, merged, dimension)


class DenseIndex(DocStoreBacked):
    """Documents and their vectors in a FAISS index, searched by inner product.

    Build with :meth:`build` or read with :meth:`load`; the constructor is internal. Implements
    :class:`indexers.Index` for the types ``flat``, ``hnsw`` and ``ivfpq``.

    >>> import numpy as np
    >>> from haystack import Document
    >>> fp = EncoderFingerprint("demo", 4, "mean", True, 16)
    >>> docs = [Document(id="a", content="x"), Document(id="b", content="y")]
    >>> index = DenseIndex.build(docs, np.eye(2, 4, dtype="float32"), fp)
    >>> index.search(np.array([[0, 1, 0, 0]], dtype="float32"), top_k=1)
    [[('b', 1.0)]]
    >>> index.embeddings(["b"])
    array([[0., 1., 0., 0.]], dtype=float32)
    """

    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        index_type: str,
        params: dict[str, Any],
        fingerprint: EncoderFingerprint,
        faiss_index: Any,
        labels: np.ndarray,
        docstore: DocStore,
    ) -> None:
        self.index_type = index_type
        self.params = params
        self.fingerprint = fingerprint
        self._index = faiss_index
        self._labels = labels
        self._docstore = docstore
        self._apply_search_params()

    # ---------------------------------------------------------------- construction

    @classmethod
    def check_params(
        cls,
        index_type: str,
        params: dict[str, Any] | None,
        n_documents: int,
        fingerprint: EncoderFingerprint | None,
    ) -> dict[str, Any]:
        """:func:`resolve_params` for ``n_documents`` vectors of the encoder ``fingerprint``."""
        dimension = _required(fingerprint, "fingerprint").dimension
        return resolve_params(index_type, params, n_documents, dimension)

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        embeddings: np.ndarray | None = None,
        fingerprint: EncoderFingerprint | None = None,
        index_type: str = "flat",
        params: dict[str, Any] | None = None,
    ) -> DenseIndex:
        """Index ``documents`` with their ``embeddings`` (row ``i`` belongs to document ``i``).

        ``embeddings`` and ``fingerprint`` (the encoder that made them) are required; they default to
        None only so that every index type shares one :meth:`indexers.Index.build` signature.
        """
        kind = normalize_index_type(index_type)
        fp = _required(fingerprint, "fingerprint")
        docstore = DocStore(documents)
        vectors = _as_matrix(_required(embeddings, "embeddings"), fp, rows=len(docstore), name="embeddings")
        resolved = resolve_params(kind, params, len(vectors), fp.dimension)
        index = _new_faiss_index(kind, resolved, fp.dimension)
        if kind == "ivfpq":
            _train_ivfpq(index, vectors, resolved)
        labels = np.arange(len(vectors), dtype=np.int64)
        if len(vectors):
            index.add_with_ids(vectors, labels)
        return cls(kind, resolved, fp, index, labels, docstore)

    # ---------------------------------------------------------------- updates

    def add(self, documents: Sequence[Document], embeddings: np.ndarray | None = None) -> None:
        """Append documents and their vectors (required). Repeated or existing ids raise :class:`ConfigError`.

        IVF-PQ encodes new vectors with the codebooks trained at build time; if the new documents differ
        a lot from the original corpus, rebuilding gives better recall.
        """
        self._docstore.check_new_ids(documents)
        vectors = _as_matrix(
            _required(embeddings, "embeddings"), self.fingerprint, rows=len(documents), name="embeddings"
        )
        if not len(vectors):
            return
        start = int(self._labels[-1]) + 1 if len(self._labels) else 0
        new_labels = np.arange(start, start + len(vectors), dtype=np.int64)
        self._docstore.add(documents)  # first: it validates metadata, and is easy to roll back
        try:
            self._index.add_with_ids(vectors, new_labels)
        except BaseException:
            self._docstore.delete([doc.id for doc in documents])
            raise
        self._labels = np.concatenate([self._labels, new_labels])

    def delete(self, ids: Iterable[str]) -> int:
        """Remove the documents with these ids and return how many were removed.

        Repeated ids count once. Any unknown id raises :class:`UnknownDocumentError` (a ``KeyError``)
        listing them, and nothing is deleted.
        """
        wanted = id_list(ids)
        rows = np.array(self._docstore.positions(wanted, action="delete"), dtype=np.int64)
        if not len(rows):
            return 0
        doomed = self._labels[rows]
        if self.index_type == "hnsw":
            # An HNSW graph cannot drop nodes. Tombstones (filtering deleted labels with an IDSelector at
            # every search) would keep dead nodes in memory and in the graph forever and need one more
            # file; rebuilding from the vectors, which IndexHNSWFlat stores exactly, costs O(n log n) per
            # delete call but leaves an index as good as a fresh build. Deletes are rare batch jobs.
            self._index = self._rebuilt_hnsw_without(doomed)
        else:
            # Flat and IVF-PQ remove vectors in place (IVF-PQ keeps only lossy codes, so it could not be
            # rebuilt exactly anyway).
            removed = int(self._index.remove_ids(_id_selector(self._index, doomed)))
            if removed != len(doomed):
                raise RagError(
                    f"FAISS removed {removed} vectors instead of {len(doomed)}; the index is inconsistent. "
                    + REBUILD_HINT
                )
        self._labels = np.delete(self._labels, rows)
        self._docstore.delete(wanted)
        return len(wanted)

    # ---------------------------------------------------------------- queries

    def search(self, query_embeddings: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """For each query row, up to ``top_k`` ``(document id, inner product)`` pairs, best first.

        Exact score ties are ordered by document id, ascending, also at the cut-off: FAISS returns equal
        scores in no defined order, so one more hit than ``top_k`` is fetched, and while the last fetched
        hit still ties the ``top_k``-th, the fetch doubles, until the whole tie is in hand; then the hits
        are sorted by (score descending, id) and cut. Without ties this costs one extra hit per query.

        Fewer than ``top_k`` come back when the index holds fewer documents (or, for IVF-PQ, when the
        probed lists hold fewer).
        """
        k = check_top_k(top_k)
        queries = _as_matrix(query_embeddings, self.fingerprint, rows=None, name="query_embeddings")
        size = len(self)
        if not len(queries) or not size:
            return [[] for _ in range(len(queries))]
        fetch = min(k + 1, size)
        scores, labels = self._index.search(queries, fetch)
        while fetch < size and _tie_runs_past(scores, labels, k):
            fetch = min(2 * fetch, size)
            scores, labels = self._index.search(queries, fetch)
        rows = np.searchsorted(self._labels, labels)
        ids = self._docstore.ids
        return [
            ranked(
                (
                    (ids[row], float(score))
                    for row, label, score in zip(q_rows, q_labels, q_scores, strict=True)
                    if label >= 0
                ),
                k,
            )
            for q_rows, q_labels, q_scores in zip(rows, labels, scores, strict=True)
        ]

    def embeddings(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these documents, a (len(ids), dimension) float32 matrix in the order asked.

        ``flat`` and ``hnsw`` store vectors exactly. ``ivfpq`` keeps only product-quantizer codes, so its
        rows are reconstructions: approximate, as close to the originals as the codes allow. Unknown ids
        raise :class:`UnknownDocumentError`; an id asked twice gets its row twice.
        """
        if isinstance(ids, str):
            raise ConfigError(f"expected a list of document ids, got the string {ids!r}; wrap it: [{ids!r}]")
        wanted = list(ids)
        self._docstore.positions(wanted, action="get")  # names every unknown id
        if not wanted:
            return np.zeros((0, self.fingerprint.dimension), dtype=np.float32)
        labels = self._labels[[self._docstore.position(doc_id) for doc_id in wanted]]
        if self.index_type == "ivfpq" and self._index.direct_map.type == _DIRECT_MAP.NoMap:
            # IVF lists are searched by list, not by label; a hash table from label to code is built once.
            self._index.set_direct_map_type(_DIRECT_MAP.Hashtable)
        return np.asarray(self._index.reconstruct_batch(labels), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"DenseIndex(index_type={self.index_type!r}, documents={len(self)}, "
            f"encoder={self.fingerprint.name!r}, dimension={self.fingerprint.dimension})"
        )

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write the index folder atomically (an existing index at ``path`` is replaced)."""

        def write_files(folder: Path) -> dict[str, Any]:
            faiss.write_index(self._index, str(folder / FAISS_FILE))
            np.save(folder / LABELS_FILE, self._labels, allow_pickle=False)
            self._docstore.save(folder / DOCUMENTS_FILE)
            return {
                "kind": "dense",
                "index_type": self.index_type,
                "params": dict(self.params),
                "encoder": self.fingerprint.to_dict(),
                "counts": {"documents": len(self), "vectors": int(self._index.ntotal)},
                "faiss_version": faiss.__version__,
            }

        write_index_atomically(path, write_files)

    @classmethod
    def load(cls, path: str | Path, fingerprint: EncoderFingerprint | None = None) -> DenseIndex:
        """Read an index folder, verifying checksums and (when given) the query encoder's fingerprint.

        Raises :class:`EncoderMismatchError` naming each differing fingerprint field, and
        :class:`IndexCorruptError` naming a missing or corrupted file.
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        kind = manifest["index_type"]
        if kind not in INDEX_TYPES:
            raise ConfigError(
                f"{folder} holds a {kind!r} index, not a dense one; open it with indexers.load_index()"
            )
        built_with = _manifest_fingerprint(manifest, folder)
        if fingerprint is not None:
            built_with.check_matches(fingerprint, index_path=str(folder))
        verify_checksums(folder, manifest)
        try:
            params = _check_values(kind, _check_keys(kind, manifest.get("params")), built_with.dimension)
        except ConfigError as exc:
            raise IndexCorruptError(f"{folder}/manifest.json: {exc}. {REBUILD_HINT}") from exc
        docstore = DocStore.load(folder / DOCUMENTS_FILE)
        labels = _load_labels(folder / LABELS_FILE)
        index = _read_faiss(folder / FAISS_FILE)
        _check_consistent(folder, kind, built_with.dimension, index, labels, len(docstore))
        return cls(kind, params, built_with, index, labels, docstore)

    # ---------------------------------------------------------------- internals

    def _apply_search_params(self) -> None:
        if self.index_type == "hnsw":
            graph: Any = faiss.downcast_index(self._index.index)
            graph.hnsw.efSearch = self.params["ef_search"]
        elif self.index_type == "ivfpq":
            self._index.nprobe = self.params["nprobe"]

    def _rebuilt_hnsw_without(self, doomed: np.ndarray) -> Any:
        inner = faiss.downcast_index(self._index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, inner.d), "float32")
        labels = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        keep = ~np.isin(labels, doomed)
        fresh = _new_faiss_index("hnsw", self.params, self.fingerprint.dimension)
        if keep.any():
            fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), labels[keep])
        return fresh


# -------------------------------------------------------------------- helpers


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise ConfigError(
            f"a dense index needs {name}: pass the document vectors (embeddings=...) and the fingerprint "
            f"of the encoder that made them (fingerprint=...); indexers.build_index(encoder=...) does both"
        )
    return value


def _tie_runs_past(scores: np.ndarray, labels: np.ndarray, top_k: int) -> bool:
    """Whether some query's last fetched hit scores the same as its ``top_k``-th: more may tie unseen."""
    full = labels[:, -1] >= 0  # a list with -1 padding already holds every hit the search can find
    return bool((full & (scores[:, -1] == scores[:, top_k - 1])).any())


def _id_selector(index: Any, labels: np.ndarray) -> Any:
    # FAISS removes through an IVF hash-table direct map only by an explicit array of ids.
    if getattr(index, "direct_map", None) is not None and index.direct_map.type == _DIRECT_MAP.Hashtable:
        return faiss.IDSelectorArray(labels)
    return faiss.IDSelectorBatch(labels)


def _check_keys(kind: str, params: Any) -> dict[str, Any]:
    """Known keys, values positive (or None where the corpus decides): the config loader's check."""
    return check_index_params(kind, params)


def _positive_int(kind: str, key: str, value: Any) -> int:
    return positive_int(value, f"{kind} index parameter {key!r}")


def _check_values(kind: str, params: dict[str, Any], dimension: int) -> dict[str, int]:
    missing = sorted(set(DEFAULT_PARAMS[kind]) - set(params))
    if missing:
        raise ConfigError(f"{kind} index parameters {missing} are missing")
    checked = {key: _positive_int(kind, key, value) for key, value in params.items()}
    check_index_params(kind, checked)  # bounds that need no dimension (hnsw m >= 2, ivfpq nbits <= 16)
    if kind == "ivfpq" and dimension % checked["m"]:
        divisors = [d for d in range(1, dimension + 1) if dimension % d == 0]
        raise ConfigError(
            f"ivfpq parameter 'm' (sub-quantizers) must divide the dimension {dimension}, got "
            f"{checked['m']}; choose one of {divisors}"
        )
    return checked


def _new_faiss_index(kind: str, params: dict[str, int], dimension: int) -> Any:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dimension, params["m"], faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = params["ef_construction"]
        graph.hnsw.efSearch = params["ef_search"]
        return faiss.IndexIDMap2(graph)
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFPQ(
        quantizer, dimension, params["nlist"], params["m"], params["nbits"], faiss.METRIC_INNER_PRODUCT
    )
    index.nprobe = params["nprobe"]
    return index


def _train_ivfpq(index: Any, vectors: np.ndarray, params: dict[str, int]) -> None:
    recommended = MIN_POINTS_PER_CENTROID * 2 ** params["nbits"]
    if len(vectors) < recommended:
        warnings.warn(
            f"ivfpq codebooks are trained on only {len(vectors)} vectors (FAISS recommends at least "
            f"{recommended} for nbits={params['nbits']}); recall may suffer. 'flat' or 'hnsw' suit small "
            f"corpora better.",
            UserWarning,
            stacklevel=3,
        )
        # Our warning replaces FAISS's own, which would print once per sub-quantizer on stderr.
        index.pq.cp.min_points_per_centroid = 1
    index.train(vectors)


def _as_matrix(array: Any, fingerprint: EncoderFingerprint, rows: int | None, name: str) -> np.ndarray:
    """``array`` as a C-contiguous float32 matrix of shape (rows, dimension), or a clear error."""
    dimension = fingerprint.dimension
    try:
        matrix = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric 2-D array, got {type(array).__name__} ({exc})") from exc
    if matrix.size == 0 and rows in (None, 0):
        return np.zeros((0, dimension), dtype=np.float32)
    if matrix.ndim != 2:
        hint = "; for one vector use array.reshape(1, -1)" if matrix.ndim == 1 else ""
        raise ConfigError(f"{name} must be a 2-D array (rows x dimension), got shape {matrix.shape}{hint}")
    if matrix.shape[1] != dimension:
        raise EncoderMismatchError(
            f"{name} have dimension {matrix.shape[1]}, but the index holds {dimension}-d vectors of encoder "
            f"{fingerprint.name!r}. Encode with the encoder the index was built with."
        )
    if rows is not None and matrix.shape[0] != rows:
        raise ConfigError(
            f"{name} has {matrix.shape[0]} rows for {rows} documents; give one vector per document"
        )
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix).all(axis=1)).sum())
        raise ConfigError(f"{name} has {bad} row(s) with NaN or infinite values")
    return np.ascontiguousarray(matrix)


def _manifest_fingerprint(manifest: dict[str, Any], folder: Path) -> EncoderFingerprint:
    data = manifest.get("encoder")
    try:
        if not isinstance(data, dict):
            raise TypeError("missing")
        fingerprint = EncoderFingerprint.from_dict(data)
        if not isinstance(fingerprint.dimension, int) or fingerprint.dimension <= 0:
            raise TypeError("bad dimension")
    except TypeError as exc:
        raise IndexCorruptError(
            f"{folder}/manifest.json has no valid encoder fingerprint ({exc}). {REBUILD_HINT}"
        ) from exc
    return fingerprint


def _load_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise IndexCorruptError(f"index file {path} is missing. {REBUILD_HINT}")
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"index file {path} cannot be read ({exc}). {REBUILD_HINT}") from exc
    if labels.ndim != 1 or labels.dtype != np.int64 or (len(labels) > 1 and not (np.diff(labels) > 0).all()):
        raise IndexCorruptError(f"index file {path} must hold increasing int64 labels. {REBUILD_HINT}")
    return labels


def _read_faiss(path: Path) -> Any:
    if not path.is_file():
        raise IndexCorruptError(f"index file {path} is missing. {REBUILD_HINT}")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"index file {path} cannot be read by FAISS ({exc}). {REBUILD_HINT}") from exc


_FAISS_STRUCTURE = {
    "flat": "IndexIDMap2(IndexFlatIP)",
    "hnsw": "IndexIDMap2(IndexHNSWFlat)",
    "ivfpq": "IndexIVFPQ",
}


def _faiss_structure(index: Any) -> str:
    if isinstance(index, faiss.IndexIDMap2):
        return f"IndexIDMap2({type(faiss.downcast_index(index.index)).__name__})"
    return type(index).__name__


def _check_consistent(
    folder: Path, kind: str, dimension: int, index: Any, labels: np.ndarray, n_docs: int
) -> None:
    problems = []
    held = _faiss_structure(index)
    if held != _FAISS_STRUCTURE[kind]:
        problems.append(f"{FAISS_FILE} holds {held}, expected {_FAISS_STRUCTURE[kind]} for {kind}")
    else:
        if index.d != dimension:
            problems.append(f"{FAISS_FILE} has dimension {index.d}, the manifest says {dimension}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            problems.append(f"{FAISS_FILE} does not use inner product")
        if index.ntotal != n_docs or len(labels) != n_docs:
            problems.append(
                f"counts differ: {index.ntotal} vectors, {len(labels)} labels, {n_docs} documents"
            )
    if problems:
        raise IndexCorruptError(f"index at {folder} is inconsistent: {'; '.join(problems)}. {REBUILD_HINT}")


if TYPE_CHECKING:
    _implements: type[Index] = DenseIndex  # mypy checks the protocol here
