"""BM25 index through ``bm25s``: sparse precomputed scores, tokenized with stopwords and a Snowball stemmer.

Each document is indexed as ``title + " " + content`` when its meta has a ``title`` (BEIR convention).

On disk (see :mod:`indexers.manifest`)::

    manifest.json     format version, index type "bm25", parameters, counts, checksums
    bm25s/            bm25s.BM25.save output: score matrix as .npy (saved and loaded with allow_pickle=False),
                      vocabulary and bm25s parameters as JSON
    documents.jsonl   documents in index order

``bm25s`` indexes are static (document frequencies are baked into every score), so ``add`` and ``delete``
re-index the stored documents.

``embeddings()`` raises :class:`~indexers.base.UnsupportedOperationError`: BM25 holds no dense vectors,
and a document's row of term weights, dense over the vocabulary, would be as large as the vocabulary.
Feedback methods that need vectors (ColBERT-PRF) take a vector index; term-based feedback (RM3) would
read the documents' text through ``get()``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import bm25s
import numpy as np
import Stemmer
from haystack import Document

from indexers.base import UnsupportedOperationError
from indexers.docstore import DOCUMENTS_FILE, DocStore, DocStoreBacked, id_list
from indexers.manifest import REBUILD_HINT, read_manifest, verify_checksums, write_index_atomically
from rag.core.config import BM25_DEFAULTS, check_bm25_params
from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.validation import check_top_k
from rag.encoders.dense import EncoderFingerprint, join_title

if TYPE_CHECKING:
    from indexers.base import Index

BM25S_DIR = "bm25s"
# One default per parameter, declared in rag.core.config.BM25Config (k1 1.2, b 0.75: see there).
DEFAULT_PARAMS: dict[str, Any] = dict(BM25_DEFAULTS)
METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")


def bm25_text(doc: Document) -> str:
    """The text BM25 indexes for a document: its title (if any) and content, joined by one space."""
    title = (doc.meta or {}).get("title")
    return join_title(str(title) if title is not None else None, doc.content or "")


def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and every value checked; the result is what the manifest records.

    ``stopwords``: a bm25s language name or code (``"en"``, ``"english"``, ``"de"``, ...), a list of words,
    or ``None``. ``stemmer``: a PyStemmer language (``Stemmer.algorithms()``) or ``None``. ``method``: one
    of ``robertson``, ``lucene``, ``atire``, ``bm25l``, ``bm25+`` (the last two also take ``delta``). The
    checks are those of a config's ``bm25`` section (:func:`rag.core.config.check_bm25_params`).
    """
    merged = {**DEFAULT_PARAMS, **check_bm25_params(params, "bm25 index params")}
    if merged.get("delta") is None:
        merged.pop("delta", None)  # bm25s's own default applies
    return merged


class BM25Index(DocStoreBacked):
    """Documents scored by BM25 (``bm25s``), with the same shape as :class:`~indexers.dense.DenseIndex`.

    >>> from haystack import Document
    >>> docs = [Document(id="a", content="cats purr"), Document(id="b", content="dogs bark")]
    >>> index = BM25Index.build(docs)
    >>> [doc_id for doc_id, _ in index.search(["a barking dog"], top_k=5)[0]]
    ['b']
    """

    index_type = "bm25"
    needs_encoder: ClassVar[bool] = False
    #: BM25 needs no encoder: no fingerprint is recorded or checked.
    fingerprint: EncoderFingerprint | None = None

    def __init__(self, params: dict[str, Any], docstore: DocStore, retriever: Any | None = None) -> None:
        self.params = params
        self._docstore = docstore
        self._stemmer = Stemmer.Stemmer(params["stemmer"]) if params["stemmer"] else None
        self._bm25 = retriever if retriever is not None else self._index_documents()
        self._id_rank = _id_ranks(self._docstore.ids)

    @classmethod
    def check_params(
        cls,
        index_type: str,
        params: dict[str, Any] | None,
        n_documents: int,
        fingerprint: EncoderFingerprint | None,
    ) -> dict[str, Any]:
        """:func:`resolve_params`; the corpus size and encoder do not matter to BM25."""
        return resolve_params(params)

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        params: dict[str, Any] | None = None,
        *,
        embeddings: np.ndarray | None = None,
        index_type: str = "bm25",
        fingerprint: EncoderFingerprint | None = None,
    ) -> BM25Index:
        """Index ``documents``; duplicate ids raise :class:`ConfigError`.

        ``embeddings``, ``index_type`` and ``fingerprint`` exist for the shared
        :meth:`indexers.Index.build` signature: vectors are refused, the type must be ``bm25``.
        """
        _refuse_embeddings(embeddings)
        if index_type != cls.index_type:
            raise ConfigError(f"BM25Index builds index_type 'bm25', got {index_type!r}")
        return cls(resolve_params(params), DocStore(documents))

    def add(self, documents: Sequence[Document], embeddings: np.ndarray | None = None) -> None:
        """Append documents and re-index (bm25s scores depend on the whole corpus). Vectors are refused."""
        _refuse_embeddings(embeddings)
        self._docstore.check_new_ids(documents)
        if not documents:
            return
        self._docstore.add(documents)
        self._reindex()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents and re-index; unknown ids raise ``UnknownDocumentError`` and nothing changes."""
        wanted = id_list(ids)
        removed = len(self._docstore.delete(wanted))
        if removed:
            self._reindex()
        return removed

    def search(self, queries: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        """For each query, up to ``top_k`` ``(document id, BM25 score)`` pairs, best first.

        Only documents that contain at least one query term are returned. Exact score ties are ordered by
        document id, ascending (every matching document is scored, so the cut-off sees the whole tie).
        """
        k = check_top_k(top_k)
        if isinstance(queries, str):
            raise ConfigError(f"queries must be a list of strings, got the string {queries!r}; wrap it in []")
        queries = list(queries)
        if not all(isinstance(q, str) for q in queries):
            raise ConfigError("queries must be a list of strings")
        if self._bm25 is None or not queries:
            return [[] for _ in queries]
        tokenized = self._tokenize(queries, return_ids=False)
        ids = self._docstore.ids
        indptr, indices = self._bm25.scores["indptr"], self._bm25.scores["indices"]
        results: list[list[tuple[str, float]]] = []
        for tokens in tokenized:
            token_ids = self._bm25.get_tokens_ids(tokens)
            if not token_ids:
                results.append([])
                continue
            scores = self._bm25.get_scores_from_ids(token_ids)
            matched = np.unique(np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in token_ids]))
            order = matched[np.lexsort((self._id_rank[matched], -scores[matched]))][:k]
            results.append([(ids[row], float(scores[row])) for row in order])
        return results

    def embeddings(self, ids: Sequence[str]) -> np.ndarray:
        """Not available: BM25 holds no vectors (see the module docstring). Unknown ids are named first."""
        self._docstore.positions(ids, action="get")
        raise UnsupportedOperationError(
            "index type 'bm25' holds no document vectors, so embeddings() is not available; use a dense "
            "index (flat, hnsw or ivfpq) for methods that need stored vectors"
        )

    def __repr__(self) -> str:
        return f"BM25Index(documents={len(self)}, method={self.params['method']!r})"

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write the index folder atomically (an existing index at ``path`` is replaced)."""

        def write_files(folder: Path) -> dict[str, Any]:
            self._docstore.save(folder / DOCUMENTS_FILE)
            vocabulary = 0
            if self._bm25 is not None:
                # allow_pickle=False makes np.save refuse object arrays: nothing bm25s writes is a pickle.
                self._bm25.save(folder / BM25S_DIR, allow_pickle=False, show_progress=False)
                vocabulary = len(self._bm25.vocab_dict)
            return {
                "kind": "sparse",
                "index_type": self.index_type,
                "params": dict(self.params),
                "counts": {"documents": len(self), "vocabulary": vocabulary},
                "bm25s_version": bm25s.__version__,
            }

        write_index_atomically(path, write_files)

    @classmethod
    def load(cls, path: str | Path, fingerprint: EncoderFingerprint | None = None) -> BM25Index:
        """Read a BM25 index folder, verifying checksums; :class:`IndexCorruptError` names a bad file.

        ``fingerprint`` is ignored: BM25 is built without an encoder.
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        if manifest["index_type"] != cls.index_type:
            raise ConfigError(
                f"{folder} holds a {manifest['index_type']!r} index, not bm25; "
                f"open it with indexers.load_index()"
            )
        verify_checksums(folder, manifest)
        try:
            params = resolve_params(manifest.get("params"))
        except ConfigError as exc:
            raise IndexCorruptError(f"{folder}/manifest.json: {exc}. {REBUILD_HINT}") from exc
        docstore = DocStore.load(folder / DOCUMENTS_FILE)
        has_terms = (manifest.get("counts") or {}).get("vocabulary", 1) != 0
        retriever = _load_bm25s(folder / BM25S_DIR) if len(docstore) and has_terms else None
        if retriever is not None and retriever.scores["num_docs"] != len(docstore):
            raise IndexCorruptError(
                f"index at {folder} is inconsistent: {retriever.scores['num_docs']} scored documents, "
                f"{len(docstore)} in {DOCUMENTS_FILE}. {REBUILD_HINT}"
            )
        return cls(params, docstore, retriever)

    # ---------------------------------------------------------------- internals

    def _tokenize(self, texts: list[str], return_ids: bool) -> Any:
        stopwords = self.params["stopwords"]
        return bm25s.tokenize(
            texts,
            stopwords=stopwords if stopwords is not None else [],
            stemmer=self._stemmer,
            return_ids=return_ids,
            show_progress=False,
        )

    def _reindex(self) -> None:
        self._bm25 = self._index_documents()
        self._id_rank = _id_ranks(self._docstore.ids)

    def _index_documents(self) -> Any | None:
        if not len(self._docstore):
            return None
        options = {k: self.params[k] for k in ("k1", "b", "method", "delta") if k in self.params}
        retriever = bm25s.BM25(**options)
        tokens = self._tokenize([bm25_text(doc) for doc in self._docstore], return_ids=True)
        if not tokens.vocab:
            # No document kept a term after stop words and stemming (bm25s cannot index that): nothing
            # can match, as in an empty index, and the manifest records a vocabulary of 0.
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bm25s warns about empty documents; they simply never match
            retriever.index(tokens, show_progress=False)
        return retriever


def _id_ranks(ids: list[str]) -> np.ndarray:
    """rank[row] = position of the row's id in ascending id order: the tie-break key of a search."""
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids), dtype=np.int64)
    return rank


def _refuse_embeddings(embeddings: Any) -> None:
    if embeddings is not None:
        raise ConfigError(
            "a bm25 index takes no embeddings (it scores words); pass only the documents, and BM25 "
            "parameters as params=..."
        )


def _load_bm25s(folder: Path) -> Any:
    try:
        return bm25s.BM25.load(folder, load_corpus=False, mmap=False, allow_pickle=False, show_progress=False)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"index files in {folder} cannot be read by bm25s ({exc}). {REBUILD_HINT}"
        ) from exc


if TYPE_CHECKING:
    _implements: type[Index] = BM25Index  # mypy checks the protocol here
