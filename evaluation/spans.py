"""Token-level retrieval metrics over character spans: recall, precision, IoU and Precision-Omega.

Definitions follow Chroma's technical report "Evaluating Chunking Strategies for Retrieval" (Smith and
Troynikov, 2024) and the computation in its ``chunking_evaluation`` package (``BaseEvaluation``), measured
either in characters (Chroma) or in tokens of a tokenizer (Jadon et al. 2025, "Enhancing Domain-Specific
RAG: Synthetic Data Generation and Evaluation using Reasoning Models").

For one query, the gold excerpts ``E = [e_1, ...]`` and the retrieved chunks ``R = [r_1, ...]`` are spans
``(corpus_id, start, end)`` (half-open character offsets into a corpus). Spans of different corpora never
intersect. With ``|x|`` the size of a span and ``∪`` the union of spans as sets of positions::

    I          = |∪E ∩ ∪R|                    excerpt text that was retrieved, each position once
    recall     = I / Σ_i |e_i|
    precision  = I / Σ_j |r_j|                every retrieved chunk counts whole, overlapping chunks (and
                                              chunks of other corpora) each time they are retrieved
    IoU        = I / (Σ_j |r_j| + Σ_i |e_i \\ ∪R|)

Each is 0 when its denominator is 0 (nothing retrieved, empty excerpts). When the excerpts do not overlap
each other (true of Chroma's data set), ``Σ_i |e_i| = |∪E|`` and IoU is the familiar
``I / (|E| + |R| - I)``; Chroma sums excerpt sizes rather than taking their union, and so do we, so with
overlapping excerpts recall stays below 1 even when everything is retrieved.

Precision-Omega is the best precision a chunking allows for the query. ``C*`` are the chunks of the whole
chunking that share at least one position with an excerpt, or touch one (Chroma's closed-interval test
``max(starts) <= min(ends)``, so a chunk ending exactly where an excerpt starts is included)::

    Precision-Omega = |∪E ∩ ∪C*| / |∪C* ∪ ∪E|

unlike ``precision`` the denominator is a union (overlapping chunks count once), and excerpt text outside
every chunk counts in it.

**Units.** ``unit="chars"`` measures in characters. ``unit="tokens"`` measures in tokens of ``tokenizer``
(any name :func:`rag.core.tokenizers.get_token_counter` accepts, default ``cl100k_base``): every corpus is
tokenized once (cached), and a span becomes the range of token indices whose character spans overlap it;
sizes, intersections and unions are then counted in tokens. A zero-width token ``(p, p)`` (the tail of a
character split across tiktoken tokens) is counted with the character before it, ``(p - 1, p)``. Two
excerpts that do not overlap in characters may share a token, so in tokens the "no overlapping excerpts"
case above is not guaranteed.

Example (characters):

>>> span_metrics([("doc", 10, 20)], [("doc", 0, 15), ("doc", 15, 30)])
{'recall': 1.0, 'precision': 0.3333333333333333, 'iou': 0.3333333333333333}
"""

from __future__ import annotations

import functools
import math
import numbers
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from rag.core.errors import ConfigError

__all__ = [
    "Span",
    "SpanReport",
    "evaluate_spans",
    "precision_omega",
    "span_metrics",
]

UNITS = ("chars", "tokens")
DEFAULT_TOKENIZER = "cl100k_base"


class Span(NamedTuple):
    """A half-open character range ``[start, end)`` of corpus ``corpus_id``. Plain 3-tuples work too."""

    corpus_id: str
    start: int
    end: int


SpanLike = tuple[str, int, int]


@runtime_checkable
class HasSpans(Protocol):
    """Anything that can list its gold spans, such as :class:`evaluation.datasets.ExcerptQuestion`."""

    def spans(self) -> list[Span]: ...


_Range = tuple[int, int]


def span_metrics(
    excerpts: Sequence[SpanLike],
    retrieved: Sequence[SpanLike],
    unit: str = "chars",
    corpora: Mapping[str, str] | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
) -> dict[str, float]:
    """``{"recall", "precision", "iou"}`` of the retrieved chunks against the gold excerpts of one query.

    :param excerpts: gold spans of the query.
    :param retrieved: retrieved chunk spans, in rank order (order does not change the values).
    :param unit: ``"chars"`` or ``"tokens"`` (see the module docstring).
    :param corpora: ``{corpus_id: text}``; required for ``"tokens"``, used to check span bounds otherwise.
    :param tokenizer: token counter name for ``unit="tokens"``.
    """
    units = _Units(unit, corpora, tokenizer)
    return _retrieval_scores(
        units.convert_all(excerpts, "excerpt"), units.convert_all(retrieved, "retrieved")
    )


def precision_omega(
    excerpts: Sequence[SpanLike],
    all_chunks: Sequence[SpanLike],
    unit: str = "chars",
    corpora: Mapping[str, str] | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
) -> float:
    """Precision-Omega of one query: the precision ceiling of the chunking ``all_chunks`` (module docstring).

    :param all_chunks: every chunk of the chunking (all corpora; only the excerpts' corpora matter).
    """
    units = _Units(unit, corpora, tokenizer)
    index = _ChunkIndex(units.convert_all(all_chunks, "chunk"))
    return index.precision_omega(units.convert_all(excerpts, "excerpt"))


@dataclass(frozen=True)
class SpanReport:
    """Per-query span metrics and their mean and (population, as numpy's default) standard deviation.

    ``per_query[i]`` has ``recall``, ``precision``, ``iou`` and, when the chunking was given,
    ``precision_omega``.
    """

    per_query: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    unit: str = "chars"
    tokenizer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (per-query values included)."""
        return {
            "unit": self.unit,
            "tokenizer": self.tokenizer,
            "queries": len(self.per_query),
            "mean": dict(self.mean),
            "std": dict(self.std),
            "per_query": [dict(row) for row in self.per_query],
            **self.extra,
        }


def evaluate_spans(
    questions: Sequence[HasSpans | Sequence[SpanLike]],
    retrieved_per_query: Sequence[Sequence[SpanLike]],
    all_chunks: Sequence[SpanLike] | None = None,
    unit: str = "chars",
    corpora: Mapping[str, str] | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
) -> SpanReport:
    """Span metrics of every query, with mean and std over queries (Chroma's report).

    :param questions: per query, its gold spans, or an object with a ``spans()`` method
        (:class:`~evaluation.datasets.ExcerptQuestion`).
    :param retrieved_per_query: per query (same order), the retrieved chunk spans in rank order.
    :param all_chunks: the whole chunking; when given, Precision-Omega is added.
    """
    if len(questions) != len(retrieved_per_query):
        raise ConfigError(
            f"evaluate_spans got {len(questions)} questions but {len(retrieved_per_query)} retrieval lists; "
            "pass one list of retrieved spans per question, in the same order"
        )
    if not questions:
        raise ConfigError("evaluate_spans got no questions to evaluate")
    units = _Units(unit, corpora, tokenizer)
    index = _ChunkIndex(units.convert_all(all_chunks, "chunk")) if all_chunks is not None else None
    per_query: list[dict[str, float]] = []
    for question, retrieved in zip(questions, retrieved_per_query, strict=True):
        gold = units.convert_all(_gold_spans(question), "excerpt")
        row = _retrieval_scores(gold, units.convert_all(retrieved, "retrieved"))
        if index is not None:
            row["precision_omega"] = index.precision_omega(gold)
        per_query.append(row)
    keys = list(per_query[0])
    mean = {k: math.fsum(row[k] for row in per_query) / len(per_query) for k in keys}
    std = {
        k: math.sqrt(math.fsum((row[k] - mean[k]) ** 2 for row in per_query) / len(per_query)) for k in keys
    }
    return SpanReport(
        per_query=per_query,
        mean=mean,
        std=std,
        unit=unit,
        tokenizer=tokenizer if unit == "tokens" else None,
    )


# --- computation on integer ranges (characters or token indices) ---------------------------------------


def _retrieval_scores(excerpts: list[Span], retrieved: list[Span]) -> dict[str, float]:
    gold = _group(excerpts)
    hits = _group(retrieved)
    intersection = 0
    missed = 0  # Σ_i |e_i \ ∪R|, Chroma's "unused highlights"
    for corpus_id, ranges in gold.items():
        covered = _union(hits.get(corpus_id, []))
        intersection += _size(_intersect(_union(ranges), covered))
        missed += sum((end - start) - _size(_intersect([(start, end)], covered)) for start, end in ranges)
    excerpt_total = sum(s.end - s.start for s in excerpts)
    retrieved_total = sum(s.end - s.start for s in retrieved)
    return {
        "recall": _ratio(intersection, excerpt_total),
        "precision": _ratio(intersection, retrieved_total),
        "iou": _ratio(intersection, retrieved_total + missed),
    }


class _ChunkIndex:
    """Chunks of a chunking, grouped by corpus and sorted by start, to find those near an excerpt fast."""

    def __init__(self, chunks: list[Span]) -> None:
        self._starts: dict[str, list[int]] = {}
        self._ranges: dict[str, list[_Range]] = {}
        self._longest: dict[str, int] = {}
        for corpus_id, ranges in _group(chunks).items():
            ranges.sort()
            self._ranges[corpus_id] = ranges
            self._starts[corpus_id] = [start for start, _ in ranges]
            self._longest[corpus_id] = max(end - start for start, end in ranges)

    def touching(self, corpus_id: str, start: int, end: int) -> list[_Range]:
        """Chunks with ``max(starts) <= min(ends)`` (overlapping or touching the range), Chroma's test."""
        if corpus_id not in self._ranges:
            return []
        starts, ranges = self._starts[corpus_id], self._ranges[corpus_id]
        lo = bisect_left(starts, start - self._longest[corpus_id])
        hi = bisect_right(starts, end)
        return [r for r in ranges[lo:hi] if r[1] >= start]

    def precision_omega(self, excerpts: list[Span]) -> float:
        numerator = 0
        denominator = 0
        for corpus_id, ranges in _group(excerpts).items():
            chunks = _union(c for start, end in ranges for c in self.touching(corpus_id, start, end))
            gold = _union(ranges)
            numerator += _size(_intersect(gold, chunks))
            denominator += _size(_union(chunks + gold))
        return _ratio(numerator, denominator)


def _group(spans: Iterable[Span]) -> dict[str, list[_Range]]:
    out: dict[str, list[_Range]] = defaultdict(list)
    for corpus_id, start, end in spans:
        out[corpus_id].append((start, end))
    return out


def _union(ranges: Iterable[_Range]) -> list[_Range]:
    """Sorted, disjoint ranges covering the same positions (touching ranges merged)."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if start == end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _intersect(a: list[_Range], b: list[_Range]) -> list[_Range]:
    """Intersection of two sorted disjoint range lists (two-pointer sweep)."""
    out: list[_Range] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _size(ranges: Iterable[_Range]) -> int:
    return sum(end - start for start, end in ranges)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _gold_spans(question: HasSpans | Sequence[SpanLike]) -> Sequence[SpanLike]:
    if isinstance(question, HasSpans):
        return question.spans()
    return question


# --- units ---------------------------------------------------------------------------------------------


class _Units:
    """Validates spans and converts them to the measuring unit (characters, or token index ranges)."""

    def __init__(self, unit: str, corpora: Mapping[str, str] | None, tokenizer: str) -> None:
        if unit not in UNITS:
            raise ConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if unit == "tokens" and corpora is None:
            raise ConfigError(
                "unit='tokens' needs the corpus texts to tokenize: pass corpora={corpus_id: text}"
            )
        self.unit = unit
        self.corpora = corpora
        self.tokenizer = tokenizer

    def convert_all(self, spans: Sequence[SpanLike] | None, role: str) -> list[Span]:
        return [self.convert(span, role) for span in spans or ()]

    def convert(self, span: SpanLike, role: str) -> Span:
        try:
            corpus_id, start, end = span
        except (TypeError, ValueError):
            raise ConfigError(f"{role} span must be (corpus_id, start, end), got {span!r}") from None
        if (
            not isinstance(corpus_id, str)
            or not _is_index(start)
            or not _is_index(end)
            or not 0 <= start <= end
        ):
            raise ConfigError(
                f"{role} span {span!r} is invalid: need (corpus_id: str, start: int, end: int) "
                "with 0 <= start <= end"
            )
        if self.corpora is not None:
            if corpus_id not in self.corpora:
                known = ", ".join(sorted(self.corpora)[:10])
                raise ConfigError(
                    f"{role} span {span!r} names corpus {corpus_id!r}, not among the corpora ({known})"
                )
            if end > len(self.corpora[corpus_id]):
                raise ConfigError(
                    f"{role} span {span!r} ends after the end of corpus {corpus_id!r} "
                    f"({len(self.corpora[corpus_id])} characters)"
                )
        if self.unit == "chars":
            return Span(corpus_id, int(start), int(end))
        assert self.corpora is not None  # checked in __init__
        starts, ends = _token_bounds(self.tokenizer, self.corpora[corpus_id])
        if start == end:
            first = bisect_right(ends, start)
            return Span(corpus_id, first, first)
        # Tokens overlapping [start, end): token_start < end and token_end > start.
        first = bisect_right(ends, start)
        last = bisect_left(starts, end)
        return Span(corpus_id, first, max(first, last))


def _is_index(value: Any) -> bool:
    # numbers.Integral also admits numpy integers; bool is an int subclass but never an offset.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@functools.lru_cache(maxsize=16)
def _token_bounds(tokenizer: str, text: str) -> tuple[list[int], list[int]]:
    """Start and end character offsets of every token of ``text`` (cached: each corpus is tokenized once).

    The cache key holds the text itself; Python caches a string's hash, so a repeated lookup of the same
    corpus string costs no rehashing.
    """
    from rag.core.tokenizers import get_token_counter

    starts: list[int] = []
    ends: list[int] = []
    for start, end in get_token_counter(tokenizer).offsets(text):
        if start == end and start > 0:
            start -= 1  # zero-width token: the tail of the character before it
        if starts and (start < starts[-1] or end < ends[-1]):
            raise ConfigError(
                f"tokenizer {tokenizer!r} returned token offsets out of order; it cannot be used here"
            )
        starts.append(start)
        ends.append(end)
    return starts, ends
