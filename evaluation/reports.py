"""Reports of span-metric evaluations: summary statistics, table rows, rich tables and JSON files.

Everything here works on *result records*, plain JSON-able dicts, so that reports can be rebuilt from a
saved ``report.json`` without the code that produced it. A record describes one chunker (or one
pipeline) evaluated on a chunk-excerpt set::

    {
      "name": "recursive 250/125",          # label shown in tables and plots
      "chunker": {...},                     # settings (e.g. a chunker config); free-form
      "retrieve": 5,                        # chunks retrieved per question
      "unit": "chars", "tokenizer": null,   # measuring unit of the span metrics
      "chunks": 2336,                       # chunks in the index (optional)
      "mean_chunk_tokens": 187.4,           # mean chunk size in cl100k_base tokens (optional)
      "seconds": 41.2,                      # wall time (optional)
      "overall": {"queries": 472, "mean": {metric: value}, "std": {metric: value}},
      "per_corpus": {corpus_id: {"queries": n, "mean": {...}, "std": {...}}},
      "per_query": [{"corpus_id": ..., "recall": ..., "precision": ..., "iou": ...,
                     "precision_omega": ...}, ...]
    }

Metric values are fractions in ``[0, 1]``; tables show them in percent, as Chroma's report does. The
standard deviation is the population one (numpy's default, as Chroma's framework computes it).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "build_report",
    "corpus_rows",
    "format_mean_std",
    "group_summaries",
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


def summary_rows(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the overall table: one row per record, metrics as ``mean ± std`` in percent,
    then mean chunk size in tokens, chunk count and seconds (``-`` where a record lacks them)."""
    header = ["chunker", *[METRIC_LABELS.get(m, m) for m in metrics], "tokens/chunk", "chunks", "seconds"]
    rows = []
    for record in records:
        tokens = record.get("mean_chunk_tokens")
        chunks = record.get("chunks")
        seconds = record.get("seconds")
        rows.append(
            [
                str(record["name"]),
                *_metric_cells(record["overall"], metrics),
                f"{tokens:.1f}" if isinstance(tokens, int | float) else "-",
                str(chunks) if chunks is not None else "-",
                f"{seconds:.1f}" if isinstance(seconds, int | float) else "-",
            ]
        )
    return header, rows


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
    """Write ``data`` as indented JSON, atomically (a temporary file renamed into place)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
