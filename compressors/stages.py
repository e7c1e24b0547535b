"""The ``compress`` stages (registered in :mod:`rag.stages`): ``semantic``, ``extractive``,
``abstractive`` and ``random``.

Each reads the documents of the stage before it and the query, and becomes the pipeline's documents,
so ``rag eval`` scores what reaches the LLM (by provenance) and :func:`rag.pipelines.run_query` returns
the compressed documents, each with ``meta["compression"]`` (the token accounting)::

    stages:
      - {kind: compress, name: semantic, ratio: 0.5}            # or budget: 512
      - {kind: compress, name: extractive, ratio: 0.35}
      - {kind: compress, name: abstractive, ratio: 0.35}        # SmolLM2, or base_url + model
      - {kind: compress, name: random, ratio: 0.5, seed: 0}     # the baseline

Defaults taken from the config: ``model`` (semantic, extractive) is the config's ``encoder.model``
(extractive also takes its prefixes, both its ``device``); ``tokenizer`` is the tokenizer of the
config's generator (:func:`rag.generation.generator_tokenizer_name`: the local model's own, else
``cl100k_base``). Settings are the components' constructor arguments; unknown keys are refused.

Importing this module also adds the compression columns to ``rag eval``'s report
(:func:`compression_columns`: ``compress_tokens_before``, ``compress_tokens_after``, ``compress_ratio``).
"""

from __future__ import annotations

import inspect
from typing import Any

from compressors.abstractive import AbstractiveCompressor
from compressors.extractive import ExtractiveCompressor
from compressors.random_drop import RandomCompressor
from compressors.semantic import SemanticCompressor
from rag.core.validation import check_keys
from rag.stages import PipelineDraft, register_stage

KIND = "compress"


def _settings(draft: PipelineDraft, name: str, cls: Any, settings: dict[str, Any]) -> dict[str, Any]:
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    check_keys(settings, allowed, f"config: stages[{KIND}/{name}]", "setting")
    merged = dict(settings)
    if "tokenizer" not in merged:
        from rag.generation import generator_tokenizer_name

        merged["tokenizer"] = generator_tokenizer_name(draft.config)
    encoder = draft.config.encoder
    if "model" in allowed and "model" not in merged and cls is not AbstractiveCompressor:
        merged["model"] = encoder.model
    if "device" in allowed and "device" not in merged:
        merged["device"] = encoder.device
    if cls is ExtractiveCompressor:
        merged.setdefault("query_prefix", encoder.query_prefix)
        merged.setdefault("document_prefix", encoder.document_prefix)
    return merged


def _add(draft: PipelineDraft, name: str, cls: Any, settings: dict[str, Any]) -> None:
    component = cls(**_settings(draft, name, cls, settings))
    # The compressor takes the per-call top_k (it compresses the first top_k documents it is given).
    draft.add_documents_stage(f"{name}_compressor", component)


@register_stage(KIND, "semantic")
def semantic(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _add(draft, "semantic", SemanticCompressor, settings)


@register_stage(KIND, "extractive")
def extractive(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _add(draft, "extractive", ExtractiveCompressor, settings)


@register_stage(KIND, "abstractive")
def abstractive(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _add(draft, "abstractive", AbstractiveCompressor, settings)


@register_stage(KIND, "random")
def random(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    _add(draft, "random", RandomCompressor, settings)


def compression_columns(context: Any) -> list[dict[str, float]]:
    """Report columns of a config with a compress stage (``rag eval``'s cost columns): per query, the
    context tokens before and after compression and their ratio, from ``meta["compression"]``. The
    stage's seconds are already in ``stage_seconds``; a config without a compress stage adds nothing."""
    if not any(stage.get("kind") == KIND for stage in context.config.stages):
        return [{} for _ in context.outcomes]
    rows = []
    for outcome in context.outcomes:
        accounts = [d.meta["compression"] for d in outcome.documents if "compression" in (d.meta or {})]
        last = accounts[-1] if accounts else {"query_tokens_before": 0, "query_tokens_after": 0, "ratio": 1.0}
        rows.append(
            {
                "compress_tokens_before": float(last["query_tokens_before"]),
                "compress_tokens_after": float(last["query_tokens_after"]),
                "compress_ratio": float(last["ratio"]),
            }
        )
    return rows


def _register_columns() -> None:
    from rag.evaluate import register_metric

    register_metric("cost", compression_columns)


_register_columns()
