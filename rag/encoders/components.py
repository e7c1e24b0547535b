"""Haystack components around :class:`DenseEncoder`: embed documents for indexing, embed a query."""

from __future__ import annotations

import dataclasses
from typing import TypedDict

from haystack import Document, component

from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.validation import check_query
from rag.encoders.dense import DenseEncoder, EncoderFingerprint, join_title


class DocumentsOutput(TypedDict):
    documents: list[Document]


class EmbeddingOutput(TypedDict):
    embedding: list[float]


class _EncoderSettings:
    """Constructor shared by both components; settings are stored under their own names so that Haystack
    serializes them from the ``__init__`` signature (no hand-written ``to_dict``)."""

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        batch_size: int = 32,
        max_length: int | None = None,
        normalize: bool = True,
        prefix: str = "",
        progress: bool = False,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        self.prefix = prefix
        self.progress = progress
        # Validates the settings now, loads nothing until warm_up().
        self.encoder = DenseEncoder(
            model,
            batch_size=batch_size,
            max_length=max_length,
            normalize=normalize,
            query_prefix=prefix,
            document_prefix=prefix,
            progress=progress,
        )

    def warm_up(self) -> None:
        _ = self.encoder.model

    @property
    def fingerprint(self) -> EncoderFingerprint:
        return self.encoder.fingerprint


@component
class DocumentEncoder(_EncoderSettings):
    """Adds an ``embedding`` to every document (title and content joined, as MTEB / BEIR do)."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> DocumentsOutput:
        texts = [join_title(d.meta.get("title"), d.content or "") for d in documents]
        vectors = self.encoder.encode_documents(texts)
        return {
            "documents": [
                dataclasses.replace(d, embedding=v.tolist()) for d, v in zip(documents, vectors, strict=True)
            ]
        }


@component
class QueryEncoder(_EncoderSettings):
    """Embeds one query string."""

    @component.output_types(embedding=list[float])
    def run(self, query: str) -> EmbeddingOutput:
        check_query(query)
        return {"embedding": self.encoder.encode_queries([query], progress=False)[0].tolist()}
