"""Evaluation: data sets (BEIR, chunk-excerpt sets), document-level IR metrics (via ir_measures),
token-level span metrics (Chroma's recall / precision / IoU / Precision-Omega), excerpt location and
synthetic question generation (through the LLM client of :mod:`rag.core.llm`).

Imports only ``rag.core`` and ``rag.encoders`` from this project.
"""

from evaluation.datasets import (
    BeirDataset,
    ChunkEvalSet,
    Excerpt,
    ExcerptQuestion,
    load_beir,
    load_chunk_eval,
    save_chunk_eval,
)
from evaluation.ir import DEFAULT_METRICS, Qrels, Run, evaluate, evaluate_per_query, metric_display_name
from evaluation.locate import locate_excerpt
from evaluation.spans import Span, SpanReport, evaluate_spans, precision_omega, span_metrics
from evaluation.synthetic import GenerationReport, generate_questions

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "ChunkEvalSet",
    "Excerpt",
    "ExcerptQuestion",
    "GenerationReport",
    "Qrels",
    "Run",
    "Span",
    "SpanReport",
    "evaluate",
    "evaluate_per_query",
    "evaluate_spans",
    "generate_questions",
    "load_beir",
    "load_chunk_eval",
    "locate_excerpt",
    "metric_display_name",
    "precision_omega",
    "save_chunk_eval",
    "span_metrics",
]
