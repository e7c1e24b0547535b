"""Haystack components around :class:`DenseEncoder`: embed documents for indexing, embed a query."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypedDict

from haystack import Document, component

from rag.core.config import EncoderConfig
from rag.core.validation import check_query
from rag.encoders.dense import DenseEncoder, EncoderFingerprint, join_title


class DocumentsOutput(TypedDict):
    documents: list[Document]


class EmbeddingOutput(TypedDict):
    embedding: list[float]


class _EncoderSettings:
    """Constructor shared by both components.

    The settings and their defaults are those of the config's ``encoder`` section,
    :class:`~rag.core.config.EncoderConfig`, and are checked as it is. The signature still lists them,
    because Haystack serializes a component from its ``__init__`` signature (no hand-written
    ``to_dict``), so each value is also stored under its own name.
    """

    #: Which of EncoderConfig's prefixes is this component's default (``query_prefix`` / ``document_prefix``).
    _prefix_field: ClassVar[str]

    def __init__(
        self,
        model: str = EncoderConfig.model,
        batch_size: int = EncoderConfig.batch_size,
        max_length: int | None = EncoderConfig.max_length,
        normalize: bool = EncoderConfig.normalize,
        prefix: str | None = None,
        device: str = EncoderConfig.device,
        progress: bool = False,
        tempscale: dict[str, Any] | None = EncoderConfig.tempscale,
        representation: str | None = EncoderConfig.representation,
        ot_dims: int | None = EncoderConfig.ot_dims,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        # None: the config's default prefix for this side.
        self.prefix = prefix
        self.device = device
        self.progress = progress
        self.tempscale = tempscale
        self.representation = representation
        self.ot_dims = ot_dims
        side_prefix = getattr(EncoderConfig, self._prefix_field) if prefix is None else prefix
        settings = EncoderConfig(
            model=model,
            batch_size=batch_size,
            max_length=max_length,
            normalize=normalize,
            # The one text this component embeds gets the prefix, whichever side it is.
            query_prefix=side_prefix,
            document_prefix=side_prefix,
            device=device,
            tempscale=tempscale,
            representation=representation,
            ot_dims=ot_dims,
        )
        # Loads nothing until warm_up().
        self.encoder = DenseEncoder(**dataclasses.asdict(settings), progress=progress)

    def warm_up(self) -> None:
        _ = self.encoder.model

    @property
    def fingerprint(self) -> EncoderFingerprint:
        return self.encoder.fingerprint


@component
class DocumentEncoder(_EncoderSettings):
    """Adds an ``embedding`` to every document (title and content joined, as MTEB / BEIR do)."""

    _prefix_field = "document_prefix"

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

    _prefix_field = "query_prefix"

    @component.output_types(embedding=list[float])
    def run(self, query: str) -> EmbeddingOutput:
        check_query(query)
        return {"embedding": self.encoder.encode_queries([query], progress=False)[0].tolist()}
