"""Reports of evaluations: summary statistics, table rows, rich tables and JSON files.

Everything here works on *result records*, plain JSON-able dicts (``EvalResult.to_json()`` of
:mod:`rag.evaluate`), so that reports can be rebuilt from a saved ``report.json`` without the code that
produced it. A record describes one config (a pipeline, or a chunker turned into one) evaluated on one
set; the keys the span tables and plots read are::

    {
      "name": "recursive 250/125",          # label shown in tables and plots
      "chunker": {...},                     # settings (e.g. a chunker config); free-form
      "retrieve": 5,                        # chunks retrieved per question
      "unit": "chars", "tokenizer": null,   # measuring unit of the span metrics
      "chunks": 2336,                       # chunks in the index (optional)
      "mean_chunk_tokens": 187.4,           # mean chunk size in cl100k_base tokens (optional)
      "seconds": 41.2,                      # wall time (optional)
      "llm_tokens": 930.5,                  # mean tokens sent to the LLM per query (optional)
      "stage_seconds": {stage: seconds},    # mean seconds per query of each stage (optional)
      "index_build_seconds": 3.1, "index_reused": false,   # (optional)
      "overall": {"queries": 472, "mean": {metric: value}, "std": {metric: value}},
      "per_corpus": {corpus_id: {"queries": n, "mean": {...}, "std": {...}}},
      "per_query": [{"corpus_id": ..., "recall": ..., "precision": ..., "iou": ...,
                     "precision_omega": ...}, ...]
    }

Metric values are fractions in ``[0, 1]``; span tables show them in percent, as Chroma's report does,
IR tables (:func:`ir_table`, records with ``metrics``) as fractions with 4 decimals. The standard
deviation is the population one (numpy's default, as Chroma's framework computes it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from rag.core.files import write_file_atomically

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "build_report",
    "corpus_rows",
    "format_mean_std",
    "group_summaries",
    "ir_table",
    "mean_std",
    "rich_table",
    "summary_rows",
    "write_json",
]

# Column order of every table: Chroma's report order.
METRICS = ("recall", "precision", "precision_omega", "iou")
METRIC_LABELS = {
    "recall": "Recall",
    "precision": "Precision",
    "precision_omega": "Precision-Ω",
    "iou": "IoU",
}


def mean_std(
    rows: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and population standard deviation of each key over ``rows`` (both 0.0 for no rows).

    >>> mean_std([{"iou": 0.0}, {"iou": 1.0}])
    ({'iou': 0.5}, {'iou': 0.5})
    """
    names = list(keys) if keys is not None else (list(rows[0]) if rows else [])
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for key in names:
        values = [float(row[key]) for row in rows if key in row]
        if not values:
            mean[key] = std[key] = 0.0
            continue
        mu = math.fsum(values) / len(values)
        mean[key] = mu
        std[key] = math.sqrt(math.fsum((v - mu) ** 2 for v in values) / len(values))
    return mean, std


def group_summaries(
    groups: Sequence[str], rows: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """``{group: {"queries", "mean", "std"}}`` of the rows of each group (``groups[i]`` is row ``i``'s,
    e.g. its corpus id), groups sorted. ``keys`` defaults to the :data:`METRICS` present in the rows."""
    if len(groups) != len(rows):
        raise ValueError(f"got {len(groups)} group labels for {len(rows)} rows")
    names = list(keys) if keys is not None else [m for m in METRICS if rows and m in rows[0]]
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(set(groups)):
        members = [row for label, row in zip(groups, rows, strict=True) if label == group]
        mean, std = mean_std(members, names)
        out[group] = {"queries": len(members), "mean": mean, "std": std}
    return out


def format_mean_std(mean: float, std: float, percent: bool = True, digits: int = 1) -> str:
    """``"78.7 ± 39.2"``: a mean and its std, in percent unless ``percent=False``.

    >>> format_mean_std(0.787, 0.392)
    '78.7 ± 39.2'
    """
    scale = 100.0 if percent else 1.0
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _metric_cells(summary: Mapping[str, Any], metrics: Sequence[str]) -> list[str]:
    mean, std = summary.get("mean", {}), summary.get("std", {})
    return [format_mean_std(mean[m], std.get(m, 0.0)) if m in mean else "-" for m in metrics]


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


# Cost and bookkeeping columns of every table, after the metrics: (header, cell of a record).
COST_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("LLM tokens", lambda r: _number(r.get("llm_tokens"))),
    ("ms/query", lambda r: stage_cell(r)),
    ("build s", lambda r: build_cell(r)),
)


def stage_cell(record: Mapping[str, Any]) -> str:
    """Mean milliseconds per query, in total and per stage: ``"4.1 (embedder 3.5, retriever 0.6)"``."""
    stages = record.get("stage_seconds")
    if not isinstance(stages, Mapping) or not stages:
        return "-"
    total = 1000 * sum(stages.values())
    parts = ", ".join(f"{name} {1000 * seconds:.1f}" for name, seconds in stages.items())
    return f"{total:.1f} ({parts})"


def build_cell(record: Mapping[str, Any]) -> str:
    """Seconds the index took to build, ``(cached)`` when the evaluation reused it."""
    seconds = record.get("index_build_seconds")
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds:.1f}" + (" (cached)" if record.get("index_reused") else "")


def summary_rows(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the overall table: one row per record, metrics as ``mean ± std`` in percent,
    then mean chunk size in tokens, chunk count, the cost columns (:data:`COST_COLUMNS`) and seconds
    (``-`` where a record lacks them)."""
    header = [
        "chunker",
        *[METRIC_LABELS.get(m, m) for m in metrics],
        "tokens/chunk",
        "chunks",
        *[name for name, _ in COST_COLUMNS],
        "seconds",
    ]
    rows = []
    for record in records:
        chunks = record.get("chunks")
        rows.append(
            [
                str(record["name"]),
                *_metric_cells(record["overall"], metrics),
                _number(record.get("mean_chunk_tokens")),
                str(chunks) if chunks is not None else "-",
                *[cell(record) for _, cell in COST_COLUMNS],
                _number(record.get("seconds")),
            ]
        )
    return header, rows


def ir_table(records: Sequence[Mapping[str, Any]], title: str) -> Table:
    """A rich table of ranked-retrieval records: one row per config, every metric of ``metrics`` but
    the cost ones as a fraction, then the cost columns and queries per second."""
    table = Table(title=title)
    table.add_column("config")
    names = [m for m in (records[0].get("metrics", {}) if records else {}) if m != "llm_tokens"]
    for name in names:
        table.add_column(name, justify="right")
    for header, _ in COST_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("q/s", justify="right")
    for record in records:
        metrics = record.get("metrics", {})
        table.add_row(
            str(record["name"]),
            *[_number(metrics.get(m), 4) for m in names],
            *[cell(record) for _, cell in COST_COLUMNS],
            _number(record.get("queries_per_second")),
        )
    return table


def corpus_rows(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS
) -> tuple[list[str], list[list[list[str]]]]:
    """Header and, per record, its rows: one per corpus (sorted by id), then ``all`` (the overall)."""
    header = ["chunker", "corpus", "questions", *[METRIC_LABELS.get(m, m) for m in metrics]]
    groups = []
    for record in records:
        rows = []
        scopes = [(cid, record["per_corpus"][cid]) for cid in sorted(record.get("per_corpus", {}))]
        for corpus_id, summary in [*scopes, ("all", record["overall"])]:
            queries = str(summary.get("queries", "-"))
            rows.append([str(record["name"]), corpus_id, queries, *_metric_cells(summary, metrics)])
        groups.append(rows)
    return header, groups


def rich_table(
    records: Sequence[Mapping[str, Any]],
    title: str,
    per_corpus: bool = False,
    metrics: Sequence[str] = METRICS,
) -> Table:
    """A rich table of the records: the overall summary, or (``per_corpus=True``) one section per record
    with a row per corpus and the overall."""
    table = Table(title=title)
    if per_corpus:
        header, groups = corpus_rows(records, metrics)
        for name in header:
            table.add_column(name, justify="left" if name in ("chunker", "corpus") else "right")
        for rows in groups:
            for i, row in enumerate(rows):
                table.add_row(*row, end_section=i == len(rows) - 1)
        return table
    header, flat = summary_rows(records, metrics)
    for name in header:
        table.add_column(name, justify="left" if name == "chunker" else "right")
    for row in flat:
        table.add_row(*row)
    return table


def build_report(records: Sequence[Mapping[str, Any]], **settings: Any) -> dict[str, Any]:
    """The JSON report: creation time, the run's settings (free-form keywords) and the records."""
    return {
        "created": datetime.now().isoformat(timespec="seconds"),
        "settings": dict(settings),
        "results": [dict(r) for r in records],
    }


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (:func:`rag.core.files.write_file_atomically`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return target
