"""The multi-vector (ColBERT) token index: every document's token vectors, compressed, searched by MaxSim.

Compression is ColBERTv2's idea (a k-means centroid per token plus its quantized residual), done by
FAISS rather than by hand: a trained, empty FAISS IVF index serves as the codec. ``sa_encode`` gives each
token a code made of its list (centroid) number followed by its quantized residual, and ``sa_decode``
reverses it. Codecs (``params["codec"]``):

``ivfpq``  IVF + product quantization of the residual (``IndexIVFPQ``, by_residual): ``m`` bytes per
           token at ``nbits`` 8, plus the list number (2 bytes up to 65,536 lists);
``ivfsq``  IVF + 8-bit scalar quantization of the residual (``IndexIVFScalarQuantizer``, by_residual):
           ``dim`` bytes per token plus the list number;
``fp16``   IVF + a float16 copy of each vector (not residual): ``2 * dim`` bytes per token plus the list
           number; decoding is exact to float16.

Search (:meth:`MultiVectorIndex.search`) is PLAID / ColBERTv2-style:

1. **candidate generation**: each query token probes its ``nprobe`` nearest centroids; the documents with
   a token in a probed list are the candidates. When there are more than ``candidates`` of them, they are
   ranked by the centroid approximation of MaxSim (for each query token, the best centroid score among
   its probed lists that hold one of the document's tokens; summed with the query weights) and the best
   ``candidates`` are kept;
2. **exact MaxSim** over the candidates' decoded token vectors: for each query token its best dot
   product with any token of the document, summed (weighted, for ColBERT-PRF).

``exhaustive: true`` skips step 1 and scores every document (small corpora, tests, and the reference
the candidate generation is measured against).

On disk (see :mod:`indexers.manifest`; nothing pickled)::

    manifest.json     format version, encoder fingerprint, parameters, counts, bytes per token, checksums
    codec.faiss       the trained, empty FAISS IVF index (centroids and quantizer)
    codes.npy         uint8 (tokens, code_size): list number + residual code of every stored token
    token_ids.npy     int32 (tokens,): the tokenizer id of every stored vector (ColBERT-PRF, document
                      frequencies)
    doc_offsets.npy   int64 (documents + 1,): document i owns tokens doc_offsets[i]:doc_offsets[i+1]
    documents.jsonl   documents in index order

Derived in memory (never stored twice): each token's list (read from its code), the list -> documents
postings and the per-token document frequencies ``df`` that ColBERT-PRF's IDF ``ln((N+1)/(df+1))`` uses.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
from haystack import Document

from indexers.base import UnsupportedOperationError, ranked, register_index
from indexers.docstore import DOCUMENTS_FILE, DocStore, DocStoreBacked, id_list
from indexers.manifest import REBUILD_HINT, read_manifest, verify_checksums, write_index_atomically
from rag.core.config import MULTIVECTOR_CODECS, ColBERTConfig
from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.validation import check_keys, check_top_k, positive_int
from rag.encoders.dense import EncoderFingerprint

INDEX_TYPE = "multivector"
CODEC_FILE = "codec.faiss"
CODES_FILE = "codes.npy"
TOKEN_IDS_FILE = "token_ids.npy"
OFFSETS_FILE = "doc_offsets.npy"
# FAISS's k-means wants at least 39 points per centroid; lists are sized to keep it.
MIN_POINTS_PER_CENTROID = 39
# k-means and the product quantizer train on at most this many token vectors (a seeded sample): more
# changes the centroids little and costs minutes on a laptop CPU.
MAX_TRAINING_TOKENS = 131_072
# MaxSim multiplies a query with at most this many document tokens at a time (bounds memory).
MAXSIM_TOKEN_BATCH = 65_536

#: Token vectors of documents, as :meth:`rag.colbert.encoder.ColBERTEncoder.encode_documents` returns
#: them: per document an (n_tokens, dim) float32 matrix, and its (n_tokens,) token ids.
MultiVectors = tuple[Sequence[np.ndarray], Sequence[np.ndarray]]

# The index parameters and their defaults are the config's colbert section (one declaration).
_CONFIG_DEFAULTS = ColBERTConfig()
DEFAULT_PARAMS: dict[str, Any] = {
    "codec": _CONFIG_DEFAULTS.index,
    "nlist": _CONFIG_DEFAULTS.nlist,
    "m": _CONFIG_DEFAULTS.m,
    "nbits": _CONFIG_DEFAULTS.nbits,
    "nprobe": _CONFIG_DEFAULTS.nprobe,
    "candidates": _CONFIG_DEFAULTS.candidates,
    "exhaustive": _CONFIG_DEFAULTS.exhaustive,
    "keep_decoded": _CONFIG_DEFAULTS.keep_decoded,
}
# Parameters a search may override per call (the others shape the stored codes).
QUERY_PARAMS = ("nprobe", "candidates", "exhaustive", "keep_decoded")


def resolve_params(params: dict[str, Any] | None, n_tokens: int, dimension: int) -> dict[str, Any]:
    """Defaults filled in and checked for ``n_tokens`` stored vectors of ``dimension``.

    ``nlist`` defaults to the power of two nearest below ``4 * sqrt(n_tokens)`` (ColBERTv2 takes
    ``16 * sqrt``; a quarter trains four times faster here and the candidate agreement is measured in
    ``benchmarks/colbert_scifact.py``), at most ``n_tokens / 39``; ``m`` (``ivfpq``) to the largest divisor
    of the dimension not above ``dimension / 4`` (32 bytes for 128-d vectors, ColBERTv2's 2-bit size).
    """
    given = dict(params or {})
    check_keys(given, DEFAULT_PARAMS, "multivector index params", what="multivector index parameter")
    merged = {
        **DEFAULT_PARAMS,
        **{k: v for k, v in given.items() if v is not None or DEFAULT_PARAMS[k] is None},
    }
    codec = merged["codec"]
    if codec not in MULTIVECTOR_CODECS:
        raise ConfigError(f"multivector codec must be one of {list(MULTIVECTOR_CODECS)}, got {codec!r}")
    if not isinstance(merged["keep_decoded"], bool):
        raise ConfigError(
            f"multivector parameter 'keep_decoded' must be true or false, got {merged['keep_decoded']!r}"
        )
    if not isinstance(merged["exhaustive"], bool):
        raise ConfigError(
            f"multivector parameter 'exhaustive' must be true or false, got {merged['exhaustive']!r}"
        )
    for key in ("nbits", "nprobe", "candidates"):
        merged[key] = positive_int(merged[key], f"multivector index parameter {key!r}")
    max_nlist = max(1, n_tokens // MIN_POINTS_PER_CENTROID)
    if merged["nlist"] is None:
        merged["nlist"] = min(2 ** int(math.log2(max(1.0, 4 * math.sqrt(max(n_tokens, 1))))), max_nlist)
    else:
        merged["nlist"] = min(positive_int(merged["nlist"], "multivector index parameter 'nlist'"), max_nlist)
    if codec == "ivfpq":
        if merged["nbits"] > 16:
            raise ConfigError(f"multivector parameter 'nbits' must be at most 16, got {merged['nbits']}")
        if merged["m"] is None:
            merged["m"] = max(d for d in range(1, max(1, dimension // 4) + 1) if dimension % d == 0)
        merged["m"] = positive_int(merged["m"], "multivector index parameter 'm'")
        if dimension % merged["m"]:
            divisors = [d for d in range(1, dimension + 1) if dimension % d == 0]
            raise ConfigError(
                f"multivector parameter 'm' (PQ sub-quantizers) must divide the dimension {dimension}, got "
                f"{merged['m']}; choose one of {divisors}"
            )
        if 0 < n_tokens < 2 ** merged["nbits"]:
            raise ConfigError(
                f"codec ivfpq needs at least {2 ** merged['nbits']} token vectors to train its product "
                f"quantizer (nbits={merged['nbits']}), got {n_tokens}; use codec ivfsq or fp16, or lower "
                "nbits"
            )
    else:
        merged["m"] = None
    merged["nprobe"] = min(merged["nprobe"], merged["nlist"])
    return merged


@dataclass
class DecodedDocuments:
    """Decoded token vectors of some documents: what exact MaxSim scores, and what ColBERT-PRF reuses.

    ``rows``: document rows in the index; ``vectors``: their tokens concatenated, (sum of lengths, dim)
    float32; ``offsets``: document ``j`` owns ``vectors[offsets[j]:offsets[j + 1]]``; ``token_ids``: the
    token id of each row of ``vectors``.
    """

    rows: np.ndarray
    vectors: np.ndarray
    offsets: np.ndarray
    token_ids: np.ndarray

    def of(self, j: int) -> np.ndarray:
        return self.vectors[self.offsets[j] : self.offsets[j + 1]]

    def subset(self, positions: np.ndarray) -> DecodedDocuments:
        """The documents at these positions (of ``rows``), in that order."""
        starts, ends = self.offsets[positions], self.offsets[positions + 1]
        take = _ragged_ranges(starts, ends)
        lengths = ends - starts
        return DecodedDocuments(
            self.rows[positions],
            self.vectors[take],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.token_ids[take],
        )


@dataclass
class MaxSimResult:
    """What one query's search did: the ranked hits and the candidates it decoded (for reuse)."""

    hits: list[tuple[str, float]]
    candidates: DecodedDocuments
    scores: np.ndarray  # exact MaxSim of each candidate, aligned with candidates.rows
    query: np.ndarray  # the query token vectors scored (their weights were all 1 if ``unweighted``)
    unweighted: bool = True


@register_index(INDEX_TYPE)
class MultiVectorIndex(DocStoreBacked):
    """Token vectors of documents, compressed by a FAISS IVF codec, searched by (weighted) MaxSim.

    Build with :meth:`build` (``embeddings`` are :data:`MultiVectors`) or read with :meth:`load`.
    Queries are (n_query_tokens, dim) float32 matrices, L2-normalised as the encoder makes them.

    >>> import numpy as np
    >>> from haystack import Document
    >>> fp = EncoderFingerprint("demo", 4, "colbert", True, 8)
    >>> eye = np.eye(4, dtype="float32")
    >>> docs = [Document(id="a", content="x"), Document(id="b", content="y")]
    >>> vectors = ([eye[:2], eye[2:]], [np.array([5, 6], "int32"), np.array([7, 8], "int32")])
    >>> index = MultiVectorIndex.build(docs, embeddings=vectors, fingerprint=fp,
    ...                                params={"codec": "fp16", "exhaustive": True})
    >>> index.search([eye[[0, 1]]], top_k=2)
    [[('a', 2.0), ('b', 0.0)]]
    """

    index_type = INDEX_TYPE
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        params: dict[str, Any],
        fingerprint: EncoderFingerprint,
        codec: Any,
        codes: np.ndarray,
        token_ids: np.ndarray,
        offsets: np.ndarray,
        docstore: DocStore,
    ) -> None:
        self.params = params
        self.fingerprint = fingerprint
        self._codec = codec
        self._codes = codes
        self._token_ids = token_ids
        self._offsets = offsets
        self._docstore = docstore
        self._lock = threading.Lock()
        self._token_search: Any = None
        self._decoded: np.ndarray | None = None
        self._refresh()

    # ---------------------------------------------------------------- construction

    @classmethod
    def check_params(
        cls,
        index_type: str,
        params: dict[str, Any] | None,
        n_documents: int,
        fingerprint: EncoderFingerprint | None,
    ) -> dict[str, Any]:
        """Keys and values checked before encoding; sizes that depend on the token count stay None
        (:meth:`build` resolves them once the tokens are counted)."""
        dimension = _fingerprint(fingerprint).dimension
        checked = resolve_params(params, 0, dimension)
        given = dict(params or {})
        # nlist and m depend on the number of tokens, not yet known: keep what the user gave.
        checked["nlist"] = given.get("nlist")
        checked["m"] = given.get("m")
        return checked

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        *,
        embeddings: Any = None,
        index_type: str = INDEX_TYPE,
        params: dict[str, Any] | None = None,
        fingerprint: EncoderFingerprint | dict[str, Any] | None = None,
    ) -> MultiVectorIndex:
        """Index ``documents`` with their token vectors ``embeddings`` (:data:`MultiVectors`)."""
        fp = _fingerprint(fingerprint)
        docstore = DocStore(documents)
        vectors, token_ids, lengths = _check_multivectors(embeddings, fp.dimension, len(docstore))
        resolved = resolve_params(params, len(vectors), fp.dimension)
        codec = _new_codec(resolved, fp.dimension)
        _train(codec, vectors)
        codes = codec.sa_encode(vectors) if len(vectors) else np.zeros((0, codec.sa_code_size()), np.uint8)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(resolved, fp, codec, codes, token_ids, offsets, docstore)

    # ---------------------------------------------------------------- updates

    def add(self, documents: Sequence[Document], embeddings: Any = None) -> None:
        """Append documents and their token vectors (required), encoded with the codec trained at build."""
        self._docstore.check_new_ids(documents)
        vectors, token_ids, lengths = _check_multivectors(
            embeddings, self.fingerprint.dimension, len(documents)
        )
        if not len(documents):
            return
        codes = self._codec.sa_encode(vectors) if len(vectors) else self._codes[:0]
        self._docstore.add(documents)
        start = self._offsets[-1]
        self._codes = np.concatenate([self._codes, codes])
        self._token_ids = np.concatenate([self._token_ids, token_ids])
        self._offsets = np.concatenate([self._offsets, start + np.cumsum(lengths)]).astype(np.int64)
        self._refresh()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove these documents (repeats count once); unknown ids raise and change nothing."""
        wanted = id_list(ids)
        rows = np.array(self._docstore.positions(wanted, action="delete"), dtype=np.int64)
        if not len(rows):
            return 0
        keep_docs = np.ones(len(self._docstore), dtype=bool)
        keep_docs[rows] = False
        keep_tokens = np.repeat(keep_docs, np.diff(self._offsets))
        lengths = np.diff(self._offsets)[keep_docs]
        self._codes = self._codes[keep_tokens]
        self._token_ids = self._token_ids[keep_tokens]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._docstore.delete(wanted)
        self._refresh()
        return len(wanted)

    # ---------------------------------------------------------------- queries

    def search(
        self,
        queries: Sequence[np.ndarray],
        top_k: int,
        weights: Sequence[np.ndarray | None] | None = None,
        **overrides: Any,
    ) -> list[list[tuple[str, float]]]:
        """For each query matrix, up to ``top_k`` ``(document id, MaxSim)`` pairs, best first, ties by id.

        ``weights``: one weight per query token (ColBERT-PRF), default 1. ``overrides``: ``nprobe``,
        ``candidates``, ``exhaustive`` for this call instead of the index's parameters.
        """
        k = check_top_k(top_k)
        queries = _as_query_list(queries)
        given = list(weights) if weights is not None else [None] * len(queries)
        if len(given) != len(queries):
            raise ConfigError(
                f"got {len(given)} weight vectors for {len(queries)} queries; give one per query"
            )
        return [self.search_one(q, k, w, **overrides).hits for q, w in zip(queries, given, strict=True)]

    def search_one(
        self,
        query: np.ndarray,
        top_k: int,
        weights: np.ndarray | None = None,
        reuse: DecodedDocuments | None = None,
        **overrides: Any,
    ) -> MaxSimResult:
        """One query: candidate generation (or every document), then exact MaxSim; see the module doc.

        ``reuse``: documents decoded earlier (the first pass of ColBERT-PRF); those among the new
        candidates are not decoded again.
        """
        k = check_top_k(top_k)
        q = self._check_query(query)
        w = _weights(weights, len(q))
        settings = self._query_settings(overrides)
        if not len(self._docstore):
            empty = self.decode(np.zeros(0, np.int64))
            return MaxSimResult([], empty, np.zeros(0, np.float32), q, bool((w == 1).all()))
        if settings["exhaustive"]:
            rows = np.arange(len(self._docstore), dtype=np.int64)
        else:
            rows = self.candidate_rows(q, w, settings["nprobe"], max(settings["candidates"], k))
        decoded = self.decode(rows, reuse, keep=settings["keep_decoded"])
        scores = maxsim(q, decoded, w)
        ids = self._docstore.ids
        hits = ranked(((ids[int(r)], float(s)) for r, s in zip(decoded.rows, scores, strict=True)), k)
        return MaxSimResult(hits, decoded, scores, q, bool((w == 1).all()))

    def search_extended(
        self,
        first: MaxSimResult,
        extra: np.ndarray,
        extra_weights: np.ndarray,
        top_k: int,
        **overrides: Any,
    ) -> list[tuple[str, float]]:
        """The hits of :meth:`search_one` for ``first``'s query (weight 1 per token) followed by the
        ``extra`` tokens (ColBERT-PRF's expansion), reusing ``first``, the search that query alone made.

        Weighted MaxSim is a sum over query tokens, so a document ``first`` scored keeps that score and
        only the ``extra`` tokens are scored against its already decoded vectors; the others are decoded
        and scored whole. Same candidates and scores as the full search (tested), a fraction of the work.
        """
        k = check_top_k(top_k)
        dim = self.fingerprint.dimension
        ext = self._check_query(extra) if len(extra) else np.zeros((0, dim), np.float32)
        ext_w = _weights(extra_weights, len(ext))
        full = np.concatenate([first.query, ext])
        weights = np.concatenate([np.ones(len(first.query), np.float32), ext_w])
        settings = self._query_settings(overrides)
        if not len(self._docstore):
            return []
        if settings["exhaustive"]:
            rows = np.arange(len(self._docstore), dtype=np.int64)
        else:
            rows = self.candidate_rows(full, weights, settings["nprobe"], max(settings["candidates"], k))
        scores = self.extended_scores(first, rows, ext, ext_w, keep=settings["keep_decoded"])
        ids = self._docstore.ids
        return ranked(((ids[int(r)], float(s)) for r, s in zip(rows, scores, strict=True)), k)

    def extended_scores(
        self,
        first: MaxSimResult,
        rows: np.ndarray,
        extra: np.ndarray,
        extra_weights: np.ndarray,
        keep: bool = False,
    ) -> np.ndarray:
        """Weighted MaxSim at ``rows`` of ``first``'s query (weight 1 per token) plus the ``extra``
        tokens: ``first``'s exact score plus the extra tokens' part where ``first`` scored the document,
        the whole query over freshly decoded vectors elsewhere (see :meth:`search_extended`)."""
        if not first.unweighted:
            raise ValueError("extended_scores reuses a search whose query tokens all had weight 1")
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.float32)
        position = np.full(len(self._docstore), -1, dtype=np.int64)
        position[first.candidates.rows] = np.arange(len(first.candidates.rows))
        seen = position[rows]
        known = seen >= 0
        if known.any():
            # The extra tokens against every first-pass document at once: cheaper than copying out the
            # ones asked for.
            extra_part = maxsim(extra, first.candidates, extra_weights)
            out[known] = first.scores[seen[known]] + extra_part[seen[known]]
        if not known.all():
            base = first.query
            full = np.concatenate([base, extra])
            weights = np.concatenate([np.ones(len(base), np.float32), _weights(extra_weights, len(extra))])
            out[~known] = maxsim(full, self.decode(rows[~known], keep=keep), weights)
        return out

    def candidate_rows(self, query: np.ndarray, weights: np.ndarray, nprobe: int, cap: int) -> np.ndarray:
        """Document rows with a token in a list probed by some query token, at most ``cap`` of them,
        kept by the centroid approximation of MaxSim when there are more (sorted rows)."""
        scores = query @ self._centroids.T  # (query tokens, nlist)
        nprobe = min(nprobe, scores.shape[1])
        probed = np.argpartition(-scores, nprobe - 1, axis=1)[:, :nprobe]
        lists = probed.ravel()
        q_of_probe = np.repeat(np.arange(len(query)), nprobe)
        starts, ends = self._list_ptr[lists], self._list_ptr[lists + 1]
        docs = self._list_docs[_ragged_ranges(starts, ends)]
        if not len(docs):
            return np.zeros(0, np.int64)
        unique, inverse = np.unique(docs, return_inverse=True)
        if len(unique) <= cap:
            return unique.astype(np.int64)
        lengths = ends - starts
        approx = np.zeros((len(unique), len(query)), dtype=np.float32)
        centroid_scores = scores[q_of_probe, lists]
        np.maximum.at(approx, (inverse, np.repeat(q_of_probe, lengths)), np.repeat(centroid_scores, lengths))
        total = approx @ weights
        best = np.argpartition(-total, cap - 1)[:cap]
        return np.sort(unique[best]).astype(np.int64)

    def decode(
        self, rows: np.ndarray, reuse: DecodedDocuments | None = None, keep: bool = False
    ) -> DecodedDocuments:
        """Decoded token vectors of the documents at ``rows`` (in that order).

        ``keep``: decode every stored token once, keep them as float16 in memory, and gather from that
        (what ``keep_decoded`` turns on; ``benchmarks/colbert_scifact.py`` measures both ways).
        """
        if keep:
            rows = np.asarray(rows, dtype=np.int64)
            starts, ends = self._offsets[rows], self._offsets[rows + 1]
            take = _ragged_ranges(starts, ends)
            offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
            vectors = self._all_decoded()[take].astype(np.float32)
            return DecodedDocuments(rows, vectors, offsets, self._token_ids[take])
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self._offsets[rows], self._offsets[rows + 1]
        lengths = ends - starts
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = _ragged_ranges(starts, ends)
        vectors = np.empty((len(take), self.fingerprint.dimension), dtype=np.float32)
        fresh = np.ones(len(rows), dtype=bool)
        if reuse is not None and len(reuse.rows) and len(rows):
            where = {int(r): j for j, r in enumerate(reuse.rows)}
            for j, row in enumerate(rows):
                old = where.get(int(row))
                if old is not None:
                    vectors[offsets[j] : offsets[j + 1]] = reuse.of(old)
                    fresh[j] = False
        if fresh.all():
            if len(take):
                vectors[:] = self._codec.sa_decode(self._codes[take])
        elif fresh.any():
            fresh_tokens = np.repeat(fresh, lengths)
            vectors[fresh_tokens] = self._codec.sa_decode(self._codes[take[fresh_tokens]])
        return DecodedDocuments(rows, vectors, offsets, self._token_ids[take])

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Index rows of these document ids, in the order asked (unknown ids raise)."""
        self._docstore.positions(ids, action="get")
        return np.array([self._docstore.position(i) for i in ids], dtype=np.int64)

    def token_vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """Each document's decoded token vectors, (n_tokens, dim) float32, in the order asked."""
        if isinstance(ids, str):
            raise ConfigError(f"expected a list of document ids, got the string {ids!r}; wrap it: [{ids!r}]")
        decoded = self.decode(self.rows_of(list(ids)))
        return [decoded.of(j).copy() for j in range(len(decoded.rows))]

    def token_ids(self, ids: Sequence[str]) -> list[np.ndarray]:
        """Each document's stored token ids, in the order asked."""
        rows = self.rows_of(list(ids))
        return [self._token_ids[self._offsets[r] : self._offsets[r + 1]].copy() for r in rows]

    def embeddings(self, ids: Sequence[str]) -> np.ndarray:
        """Not one vector per document here: :meth:`token_vectors` serves each document's matrix."""
        if isinstance(ids, str):
            raise ConfigError(f"expected a list of document ids, got the string {ids!r}; wrap it: [{ids!r}]")
        self._docstore.positions(list(ids), action="get")  # names unknown ids first
        raise UnsupportedOperationError(
            f"index type {self.index_type!r} stores several vectors per document, not one row each; use "
            "MultiVectorIndex.token_vectors(ids) for each document's token vectors"
        )

    # ---------------------------------------------------------------- statistics (ColBERT-PRF)

    @property
    def n_tokens(self) -> int:
        return int(self._offsets[-1])

    def document_frequency(self, token_ids: np.ndarray) -> np.ndarray:
        """How many documents contain each of these token ids (0 for ids never stored)."""
        ids = np.asarray(token_ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=np.int64)
        known = (ids >= 0) & (ids < len(self._df))
        out[known] = self._df[ids[known]]
        return out

    def idf(self, token_ids: np.ndarray) -> np.ndarray:
        """ColBERT-PRF's IDF, ``ln((N + 1) / (df + 1))`` with N the number of documents."""
        df = self.document_frequency(token_ids)
        return np.log((len(self._docstore) + 1.0) / (df + 1.0))

    def nearest_token_ids(self, vectors: np.ndarray, k: int = 10) -> np.ndarray:
        """The token ids of the ``k`` stored token vectors nearest each row of ``vectors`` (a FAISS
        IVF search over the stored codes with the index's ``nprobe``; -1 where fewer exist)."""
        with self._lock:
            if self._token_search is None:
                searchable = faiss.clone_index(self._codec)
                if len(self._codes):
                    searchable.add_sa_codes(self._codes, np.arange(len(self._codes), dtype=np.int64))
                self._token_search = searchable
        self._token_search.nprobe = self.params["nprobe"]
        _, labels = self._token_search.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return np.where(labels >= 0, self._token_ids[np.maximum(labels, 0)], -1)

    def _all_decoded(self) -> np.ndarray:
        with self._lock:
            if self._decoded is None:
                out: np.ndarray = np.empty((len(self._codes), self.fingerprint.dimension), np.float16)
                for begin in range(0, len(self._codes), MAXSIM_TOKEN_BATCH):
                    end = begin + MAXSIM_TOKEN_BATCH
                    out[begin:end] = self._codec.sa_decode(self._codes[begin:end])
                self._decoded = out
            return self._decoded

    # ---------------------------------------------------------------- sizes

    def bytes_per_token(self) -> dict[str, float]:
        """Stored bytes per token: the codec's code, and with the token id and document offsets."""
        code = float(self._codec.sa_code_size())
        n = max(self.n_tokens, 1)
        total = code + self._token_ids.itemsize + self._offsets.nbytes / n
        return {"codec": code, "with_token_ids_and_offsets": round(total, 3)}

    def __repr__(self) -> str:
        return (
            f"MultiVectorIndex(codec={self.params['codec']!r}, documents={len(self)}, "
            f"tokens={self.n_tokens}, "
            f"encoder={self.fingerprint.name!r}, dimension={self.fingerprint.dimension})"
        )

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write the index folder atomically (an existing index at ``path`` is replaced)."""

        def write_files(folder: Path) -> dict[str, Any]:
            faiss.write_index(self._codec, str(folder / CODEC_FILE))
            np.save(folder / CODES_FILE, self._codes, allow_pickle=False)
            np.save(folder / TOKEN_IDS_FILE, self._token_ids, allow_pickle=False)
            np.save(folder / OFFSETS_FILE, self._offsets, allow_pickle=False)
            self._docstore.save(folder / DOCUMENTS_FILE)
            return {
                "kind": INDEX_TYPE,
                "index_type": INDEX_TYPE,
                "params": dict(self.params),
                "encoder": self.fingerprint.to_dict(),
                "counts": {"documents": len(self), "tokens": self.n_tokens},
                "bytes_per_token": self.bytes_per_token(),
                "faiss_version": faiss.__version__,
            }

        write_index_atomically(path, write_files)

    @classmethod
    def load(cls, path: str | Path, fingerprint: EncoderFingerprint | None = None) -> MultiVectorIndex:
        """Read an index folder, verifying checksums and (when given) the query encoder's fingerprint."""
        folder = Path(path)
        manifest = read_manifest(folder)
        if manifest["index_type"] != INDEX_TYPE:
            raise ConfigError(
                f"{folder} holds a {manifest['index_type']!r} index, not a multivector one; open it with "
                "indexers.load_index()"
            )
        try:
            built_with = EncoderFingerprint.from_dict(manifest["encoder"])
        except (KeyError, TypeError) as exc:
            raise IndexCorruptError(
                f"{folder}/manifest.json has no valid encoder entry. {REBUILD_HINT}"
            ) from exc
        if fingerprint is not None:
            built_with.check_matches(fingerprint, index_path=str(folder))
        verify_checksums(folder, manifest)
        try:
            params = dict(manifest["params"])
            check_keys(
                params, DEFAULT_PARAMS, str(folder / "manifest.json"), what="multivector index parameter"
            )
        except (KeyError, TypeError, ConfigError) as exc:
            raise IndexCorruptError(f"{folder}/manifest.json: bad params ({exc}). {REBUILD_HINT}") from exc
        docstore = DocStore.load(folder / DOCUMENTS_FILE)
        try:
            codec = faiss.read_index(str(folder / CODEC_FILE))
            codes = np.load(folder / CODES_FILE, allow_pickle=False)
            token_ids = np.load(folder / TOKEN_IDS_FILE, allow_pickle=False)
            offsets = np.load(folder / OFFSETS_FILE, allow_pickle=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexCorruptError(
                f"{folder}: an index file cannot be read ({exc}). {REBUILD_HINT}"
            ) from exc
        consistent = (
            codes.ndim == 2
            and codes.dtype == np.uint8
            and codes.shape[1] == codec.sa_code_size()
            and token_ids.shape == (len(codes),)
            and offsets.shape == (len(docstore) + 1,)
            and offsets[0] == 0
            and offsets[-1] == len(codes)
            and bool((np.diff(offsets) >= 1).all())
            and codec.d == built_with.dimension
        )
        if not consistent:
            raise IndexCorruptError(
                f"{folder}: {CODES_FILE}, {TOKEN_IDS_FILE}, {OFFSETS_FILE} and {DOCUMENTS_FILE} do not agree "
                f"in size. {REBUILD_HINT}"
            )
        return cls(
            params, built_with, codec, codes, token_ids.astype(np.int32), offsets.astype(np.int64), docstore
        )

    # ---------------------------------------------------------------- internals

    def _refresh(self) -> None:
        """Recompute what is derived from the codes: token lists, list -> document postings, df."""
        self._token_search = None
        self._decoded = None
        nlist = int(self._codec.nlist)
        self._centroids = self._codec.quantizer.reconstruct_n(0, nlist)
        lists = _list_numbers(self._codes, self._codec.coarse_code_size())
        doc_of_token = np.repeat(np.arange(len(self._docstore), dtype=np.int64), np.diff(self._offsets))
        # (list, document) pairs, unique, sorted by list: the postings candidate generation reads.
        pairs = np.unique(lists.astype(np.int64) * max(len(self._docstore), 1) + doc_of_token)
        pair_lists = pairs // max(len(self._docstore), 1)
        self._list_docs = (pairs % max(len(self._docstore), 1)).astype(np.int64)
        self._list_ptr = np.searchsorted(pair_lists, np.arange(nlist + 1)).astype(np.int64)
        # Document frequency of each token id: count (document, token id) pairs once.
        vocab = int(self._token_ids.max()) + 1 if len(self._token_ids) else 0
        doc_tokens = np.unique(doc_of_token * max(vocab, 1) + self._token_ids.astype(np.int64))
        self._df = (
            np.bincount(doc_tokens % max(vocab, 1), minlength=vocab) if vocab else np.zeros(0, np.int64)
        )

    def _check_query(self, query: Any) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.fingerprint.dimension or not len(q):
            raise ConfigError(
                f"a multivector query is a (query tokens, {self.fingerprint.dimension}) matrix, got shape "
                f"{q.shape}; encode queries with the ColBERT encoder the index was built with"
            )
        return np.ascontiguousarray(q)

    def _query_settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(QUERY_PARAMS))
        if unknown:
            raise ConfigError(f"unknown search setting(s) {unknown}; a search takes {list(QUERY_PARAMS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = {key: self.params.get(key, DEFAULT_PARAMS[key]) for key in QUERY_PARAMS} | given
        for key in ("nprobe", "candidates"):
            settings[key] = positive_int(settings[key], key)
        for key in ("exhaustive", "keep_decoded"):
            if not isinstance(settings[key], bool):
                raise ConfigError(f"{key} must be true or false, got {settings[key]!r}")
        return settings


# -------------------------------------------------------------------- MaxSim


def maxsim(query: np.ndarray, documents: DecodedDocuments, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted MaxSim of one query against each decoded document: ``sum_i w_i max_j q_i . d_j``.

    One matrix product per batch of documents (never a loop over tokens); the per-document maximum is a
    segment reduction (``np.maximum.reduceat``) over the documents' token ranges.
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    w = _weights(weights, len(q))
    n_docs = len(documents.rows)
    out = np.zeros(n_docs, dtype=np.float32)
    offsets = documents.offsets
    begin = 0
    while begin < n_docs:
        # As many whole documents as fit in one batch of tokens (at least one).
        end = int(np.searchsorted(offsets, offsets[begin] + MAXSIM_TOKEN_BATCH, side="right")) - 1
        end = min(max(end, begin + 1), n_docs)
        lo, hi = offsets[begin], offsets[end]
        sims = q @ documents.vectors[lo:hi].T  # (query tokens, batch tokens)
        best = np.maximum.reduceat(sims, offsets[begin:end] - lo, axis=1)  # (query tokens, batch docs)
        out[begin:end] = w @ best
        begin = end
    return out


# -------------------------------------------------------------------- helpers


def _fingerprint(value: EncoderFingerprint | dict[str, Any] | None) -> EncoderFingerprint:
    if value is None:
        raise ConfigError(
            "a multivector index needs the fingerprint of the ColBERT encoder that made the vectors "
            "(fingerprint=encoder.fingerprint()); indexers.multivector.build_multivector_index passes it"
        )
    return EncoderFingerprint.from_dict(value) if isinstance(value, dict) else value


def _check_multivectors(
    embeddings: Any, dimension: int, n_documents: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all token vectors, their token ids, tokens per document), checked."""
    if embeddings is None:
        raise ConfigError(
            "a multivector index needs embeddings: (token vectors, token ids) per document, as "
            "ColBERTEncoder.encode_documents returns them"
        )
    if not (isinstance(embeddings, tuple | list) and len(embeddings) == 2):
        raise ConfigError(
            "multivector embeddings must be a pair (list of (n_tokens, dim) arrays, list of token id "
            "arrays), "
            f"got {type(embeddings).__name__}"
        )
    vectors, ids = list(embeddings[0]), list(embeddings[1])
    if len(vectors) != n_documents or len(ids) != n_documents:
        raise ConfigError(
            f"got token vectors for {len(vectors)} and token ids for {len(ids)} documents, expected "
            f"{n_documents}: one entry per document"
        )
    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    for number, (v, t) in enumerate(zip(vectors, ids, strict=True)):
        v = np.asarray(v)
        if v.ndim != 2 or v.shape[1] != dimension or len(t) != len(v):
            raise ConfigError(
                f"document {number}: token vectors of shape {v.shape} and {len(t)} token ids; expected "
                f"(n_tokens, {dimension}) and n_tokens ids"
            )
        if not len(v):
            raise ConfigError(
                f"document {number} has no token vectors; the ColBERT encoder keeps [CLS], the marker and "
                "[SEP] for every document, so encode it with ColBERTEncoder.encode_documents"
            )
    if not n_documents:
        return np.zeros((0, dimension), np.float32), np.zeros(0, np.int32), lengths
    flat = np.ascontiguousarray(np.concatenate([np.asarray(v, np.float32) for v in vectors]))
    token_ids = np.concatenate([np.asarray(t) for t in ids]).astype(np.int32)
    return flat, token_ids, lengths


def _new_codec(params: dict[str, Any], dimension: int) -> Any:
    nlist, codec = params["nlist"], params["codec"]
    spec = {
        "ivfpq": f"IVF{nlist},PQ{params['m']}x{params['nbits']}",
        "ivfsq": f"IVF{nlist},SQ8",
        "fp16": f"IVF{nlist},SQfp16",
    }[codec]
    index: Any = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
    if codec == "fp16":
        index.by_residual = False  # a plain float16 copy: decoding is exact to float16
    # Small corpora train on fewer points than FAISS likes; quiet its warnings (we size lists ourselves).
    index.cp.min_points_per_centroid = 1
    if codec == "ivfpq":
        index.pq.cp.min_points_per_centroid = 1
        # The factory turns on polysemous training (re-ordering codes for Hamming filtering, which we do
        # not use); it takes seconds per sub-quantizer.
        index.do_polysemous_training = False
    return index


def _train(codec: Any, vectors: np.ndarray) -> None:
    if not len(vectors):
        # An empty corpus still needs a trained codec to add to later: one zero centroid.
        codec.train(np.zeros((max(codec.nlist, 256), codec.d), np.float32))
        return
    sample = vectors
    if len(vectors) > MAX_TRAINING_TOKENS:
        chosen = np.random.default_rng(0).choice(len(vectors), MAX_TRAINING_TOKENS, replace=False)
        sample = vectors[np.sort(chosen)]
    if len(sample) < codec.nlist:
        raise ConfigError(f"{len(sample)} token vectors cannot train {codec.nlist} lists; lower nlist")
    codec.train(np.ascontiguousarray(sample))


def _list_numbers(codes: np.ndarray, coarse_size: int) -> np.ndarray:
    """The list (centroid) number at the start of each IVF code: FAISS writes it little-endian in
    ``coarse_code_size`` bytes (``Level1Quantizer::encode_listno``)."""
    lists = np.zeros(len(codes), dtype=np.int64)
    for byte in range(coarse_size):
        lists |= codes[:, byte].astype(np.int64) << (8 * byte)
    return lists


def _ragged_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, e) for s, e in zip(starts, ends)])`` without a Python loop."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    steps = np.ones(total, dtype=np.int64)
    nonempty = lengths > 0
    first = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
    s, prev_end = starts[nonempty].astype(np.int64), ends[nonempty].astype(np.int64)
    steps[first] = s - np.concatenate([[0], prev_end[:-1] - 1])
    steps[0] = s[0]
    return np.cumsum(steps)


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    if len(w) != n:
        raise ConfigError(f"got {len(w)} query token weights for {n} query tokens; give one per token")
    return w


def _as_query_list(queries: Any) -> list[np.ndarray]:
    if isinstance(queries, np.ndarray):
        if queries.ndim == 3:
            return list(queries)
        raise ConfigError(
            f"multivector queries are a list of (query tokens, dim) matrices (or one 3-d array), got an "
            f"array of shape {queries.shape}"
        )
    return list(queries)
