"""End-to-end ColBERT retrieval: encode the query into token vectors, search the multi-vector index by
MaxSim (:mod:`indexers.multivector`), registered as ``retrieval.mode: colbert``.

The bundle side is ``multivector/``; the config's ``colbert`` section names the checkpoint, the lengths
and the index settings. A bundle is built with ``rag index --config colbert`` once ``colbert.model``
points at a checkpoint (``rag train colbert --out DIR`` makes one).

Besides ``documents``, :class:`ColBERTRetriever` outputs ``first_pass``: the query's token vectors and
the candidates it decoded, so that ColBERT-PRF (:mod:`rag.retrievers.prf`) reuses that work instead of
encoding and decoding again.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from haystack import Document, component

from rag.core.config import ColBERTConfig, RagConfig
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.core.validation import check_query
from rag.encoders.dense import EncoderFingerprint, join_title
from rag.retrievers.base import IndexBackedRetriever
from rag.stages import RETRIEVAL, PipelineDraft, register_stage

if TYPE_CHECKING:
    from indexers.build import BuildSummary
    from indexers.multivector import MaxSimResult, MultiVectorIndex, MultiVectors

SIDE = "multivector"
TRAIN_HINT = (
    "train a checkpoint with `rag train colbert --pairs beir:DIR --out MODEL` and set colbert.model: MODEL"
)


def colbert_encoder(settings: ColBERTConfig) -> Any:
    """The ColBERT encoder of a config's ``colbert`` section (the model is loaded once per process)."""
    if not settings.model:
        raise ConfigError(f"colbert.model is not set: it names a ColBERT checkpoint folder; {TRAIN_HINT}")
    if not Path(settings.model).exists():
        raise ConfigError(f"colbert.model {settings.model!r} does not exist; {TRAIN_HINT}")
    from rag.colbert.encoder import ColBERTEncoder

    encoder = ColBERTEncoder(
        settings.model,
        query_maxlen=settings.query_maxlen,
        doc_maxlen=settings.doc_maxlen,
        batch_size=settings.batch_size,
        device=settings.device,
    )
    if encoder.dim != settings.dim:
        raise ConfigError(
            f"colbert.dim is {settings.dim} but the checkpoint {settings.model} projects to {encoder.dim}; "
            f"set colbert.dim: {encoder.dim}"
        )
    return encoder


def index_params(settings: ColBERTConfig) -> dict[str, Any]:
    """The multi-vector index parameters of a config's ``colbert`` section."""
    return {
        "codec": settings.index,
        "nlist": settings.nlist,
        "m": settings.m,
        "nbits": settings.nbits,
        "nprobe": settings.nprobe,
        "candidates": settings.candidates,
        "exhaustive": settings.exhaustive,
        "keep_decoded": settings.keep_decoded,
    }


def encode_chunks(
    encoder: Any, chunks: Sequence[Document], progress: bool = True, cache_dir: str | Path | None = None
) -> MultiVectors:
    """Token vectors and ids of ``join_title(title, content)`` for each chunk (the title rule).

    With ``cache_dir`` (an embeddings folder, :mod:`rag.core.cache`), the vectors of the same texts
    and encoder are read back instead of encoded again: one ``.npz`` of all token vectors (float32, as
    encoded), their ids and each chunk's token count.
    """
    texts = [join_title(chunk.meta.get("title"), chunk.content or "") for chunk in chunks]
    if cache_dir is None:
        return encoder.encode_documents(texts, progress=progress)  # type: ignore[no-any-return]
    from rag.core.cache import entry_key, texts_digest
    from rag.core.files import write_file_atomically

    key = entry_key("embeddings", multivector=encoder.fingerprint(), texts=texts_digest(texts))
    path = Path(cache_dir) / f"{key}-tokens.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                vectors, ids, lengths = stored["vectors"], stored["token_ids"], stored["lengths"]
            if len(lengths) == len(texts) and len(vectors) == len(ids) == int(lengths.sum()):
                bounds = np.cumsum(lengths)[:-1]
                return list(np.split(vectors, bounds)), list(np.split(ids, bounds))
        except (OSError, ValueError, KeyError):
            pass  # damaged: encode again
    encoded, token_ids = encoder.encode_documents(texts, progress=progress)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        vectors=np.concatenate(encoded) if encoded else np.zeros((0, encoder.dim), np.float32),
        token_ids=np.concatenate(token_ids) if token_ids else np.zeros(0, np.int32),
        lengths=np.array([len(v) for v in encoded], dtype=np.int64),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, buffer.getvalue())
    return encoded, token_ids


def fingerprint_of(encoder: Any) -> EncoderFingerprint:
    return EncoderFingerprint.from_dict(encoder.fingerprint())


def build_side(
    config: RagConfig,
    chunks: Sequence[Document],
    out: str | Path,
    progress: bool = True,
    documents: int | None = None,
    encoder: Any = None,
    embedding_cache: str | Path | None = None,
) -> BuildSummary:
    """Encode ``chunks`` with the config's ColBERT model and save the multi-vector index at ``out``."""
    from indexers.build import BuildSummary, directory_size
    from indexers.docstore import DocStore
    from indexers.manifest import check_index_target
    from indexers.multivector import MultiVectorIndex

    started = time.perf_counter()
    kept = [chunk for chunk in chunks if (chunk.content or "").strip()]
    DocStore().check_new_ids(kept)
    check_index_target(out)
    encoder = encoder or colbert_encoder(config.colbert)
    fingerprint = fingerprint_of(encoder)
    params = index_params(config.colbert)
    MultiVectorIndex.check_params(SIDE, params, len(kept), fingerprint)  # fail before encoding
    vectors = encode_chunks(encoder, kept, progress=progress, cache_dir=embedding_cache)
    index = MultiVectorIndex.build(kept, embeddings=vectors, params=params, fingerprint=fingerprint)
    index.save(out)
    return BuildSummary(
        documents=documents if documents is not None else len(kept),
        chunks=len(kept),
        seconds=time.perf_counter() - started,
        bytes_on_disk=directory_size(out),
        index_type=index.index_type,
        path=str(out),
        skipped={"empty": len(chunks) - len(kept)} if len(kept) < len(chunks) else {},
    )


def vectors_for(
    config: RagConfig, chunks: Sequence[Document], index: Any, progress: bool = True
) -> MultiVectors:
    """Token vectors of new chunks for ``rag add``, from the encoder the index was built with (checked)."""
    encoder = colbert_encoder(config.colbert)
    index.fingerprint.check_matches(fingerprint_of(encoder), index_path=f"the {SIDE} index")
    return encode_chunks(encoder, chunks, progress=progress)


@dataclass
class FirstPass:
    """What a ColBERT retrieval computed for one query, for a later stage to reuse (ColBERT-PRF)."""

    index: MultiVectorIndex
    query: np.ndarray  # (query_maxlen, dim) token vectors
    result: MaxSimResult
    tokenizer: Any  # the encoder's, to decode token ids
    settings: dict[str, Any]  # the search settings used (nprobe, candidates, exhaustive)


class ColBERTOutput(TypedDict):
    documents: list[Document]
    first_pass: FirstPass


@component
class ColBERTRetriever(IndexBackedRetriever["MultiVectorIndex"]):
    """Top-k documents by MaxSim between the query's token vectors and each document's.

    :param index_path: a multi-vector index folder (the ``multivector/`` side of a bundle).
    :param colbert: the config's ``colbert`` section as a mapping (model, lengths, search settings);
        ``nprobe``, ``candidates`` and ``exhaustive`` here override the values the index was built with.
    """

    def __init__(self, index_path: str, colbert: dict[str, Any] | None = None, top_k: int = 10) -> None:
        IndexBackedRetriever.__init__(self, index_path, top_k)
        self.colbert = dict(colbert or {})
        self.settings = ColBERTConfig(**self.colbert)  # checked at construction
        self.encoder: Any = None  # loaded in warm_up (a test may set a stand-in before it)

    def _index_class(self) -> type[MultiVectorIndex]:
        from indexers.multivector import MultiVectorIndex

        return MultiVectorIndex

    def _fingerprint(self) -> EncoderFingerprint | None:
        return fingerprint_of(self._encoder())

    def _encoder(self) -> Any:
        if self.encoder is None:
            self.encoder = colbert_encoder(self.settings)
        return self.encoder

    def warm_up(self) -> None:
        self._encoder()
        try:
            self._load()
        except EncoderMismatchError as exc:
            raise EncoderMismatchError(f"{exc} (colbert.model: {self.settings.model})") from None

    def search_settings(self) -> dict[str, Any]:
        """The per-call search overrides from the config (those that differ from the index's own)."""
        return {
            "nprobe": self.settings.nprobe,
            "candidates": self.settings.candidates,
            "exhaustive": self.settings.exhaustive,
            "keep_decoded": self.settings.keep_decoded,
        }

    @component.output_types(documents=list[Document], first_pass=FirstPass)
    def run(self, query: str, top_k: int | None = None) -> ColBERTOutput:
        k = self._top_k(top_k)
        check_query(query)
        self.warm_up()
        [vectors] = self._encoder().encode_queries([query])
        result = self.index.search_one(vectors, k, **self.search_settings())
        return {
            "documents": self._documents(result.hits),
            "first_pass": FirstPass(
                self.index, vectors, result, self._encoder().tokenizer, self.search_settings()
            ),
        }


@register_stage(RETRIEVAL, "colbert")
def colbert(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    if settings:
        raise ConfigError(f"retrieval 'colbert' takes its settings from the colbert section, not {settings}")
    retriever = ColBERTRetriever(
        str(draft.index_dir / SIDE),
        colbert=dataclasses.asdict(draft.config.colbert),
        top_k=draft.config.retrieval.top_k,
    )
    draft.set_documents(draft.add("colbert_retriever", retriever))
