"""Document-level IR metrics (nDCG, MAP, MRR, recall) computed by ``ir_measures`` (trec_eval semantics).

:class:`Qrels` (``{query_id: {doc_id: grade}}``) and :class:`Run` (``{query_id: {doc_id: score}}``) are
immutable, ranx-like containers built from plain dicts or TREC files. Metric names are parsed and checked
before anything is computed. No metric is hand-written here: per-query values come from ``ir_measures``
(``pytrec_eval`` under the hood), and only the aggregation over queries is ours.

Conventions (the same as BEIR and MTEB):

- The mean runs over **every query in the qrels**. A query that is judged but missing from the run (or has an
  empty ranking) scores 0 for every metric; queries in the run that have no judgements are ignored.
- ``drop_self_hits=True`` removes a document from a query's ranking when its id equals the query id before
  scoring (BEIR's and MTEB's ``ignore_identical_ids``, needed on collections such as ArguAna and Quora where
  queries are also documents). Off by default.

Example:

>>> qrels = Qrels({"q1": {"d1": 1}})
>>> run = Run({"q1": {"d1": 2.0, "d2": 1.0}})
>>> evaluate(qrels, run, ["RR@10", "R@10"])
{'MRR@10': 1.0, 'Recall@10': 1.0}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import ir_measures
from ir_measures.measures.base import Measure

from rag.core.errors import ConfigError, InputFormatError
from rag.core.files import write_file_atomically

__all__ = [
    "DEFAULT_METRICS",
    "Qrels",
    "Run",
    "evaluate",
    "evaluate_per_query",
    "metric_display_name",
    "parse_metrics",
]

#: ir_measures names of the metrics reported by default; shown as nDCG@10, MAP@100, MAP@1000, MRR@10,
#: Recall@10, Recall@100 (see :func:`metric_display_name`). MAP@1000 is trec_eval's MAP of a run 1000
#: deep, what Anserini and Pyserini publish; MAP@100 stays for comparison with our earlier reports.
DEFAULT_METRICS: tuple[str, ...] = ("nDCG@10", "AP@100", "AP@1000", "RR@10", "R@10", "R@100")

# Names people know these metrics by, used as the keys of every result dict.
_DISPLAY_NAMES = {"AP": "MAP", "RR": "MRR", "R": "Recall"}
_METRIC_EXAMPLES = "nDCG@10, MAP@100 (= AP@100), MRR@10 (= RR@10), Recall@100 (= R@100), P@5, Success@10"

T = TypeVar("T", int, float)


class _Judgements(Mapping[str, Mapping[str, T]], Generic[T]):
    """Read-only ``{query_id: {doc_id: value}}``; the caller's dict is copied, never kept or changed."""

    __slots__ = ("_data",)
    _kind = "judgements"

    def __init__(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        if type(data) is type(self):  # already validated
            self._data: dict[str, dict[str, T]] = {q: dict(docs) for q, docs in data._data.items()}  # type: ignore[attr-defined]
            return
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{type(self).__name__} expects a dict {{query_id: {{doc_id: value}}}}, "
                f"got {type(data).__name__}"
            )
        out: dict[str, dict[str, T]] = {}
        for qid, docs in data.items():
            if not isinstance(qid, str):
                raise ConfigError(
                    f"{type(self).__name__}: query ids must be strings, got {qid!r}; use str(id)"
                )
            if not isinstance(docs, Mapping):
                raise ConfigError(
                    f"{type(self).__name__}: query {qid!r} maps to {type(docs).__name__}, expected a dict "
                    "{doc_id: value}"
                )
            row: dict[str, T] = {}
            for did, value in docs.items():
                if not isinstance(did, str):
                    raise ConfigError(
                        f"{type(self).__name__}: doc ids must be strings, got {did!r} in query {qid!r}"
                    )
                row[did] = self._convert(value, f"query {qid!r}, doc {did!r}")
            out[qid] = row
        self._data = out

    @classmethod
    def _convert(cls, value: Any, where: str) -> T:
        raise NotImplementedError

    def __getitem__(self, query_id: str) -> Mapping[str, T]:
        return MappingProxyType(self._data[query_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._data == other._data  # type: ignore[attr-defined]

    # Equal objects must hash equal; these containers are rarely hashed, so keep it cheap.
    def __hash__(self) -> int:
        return hash((type(self).__name__, len(self._data)))

    def __repr__(self) -> str:
        pairs = sum(len(docs) for docs in self._data.values())
        return f"{type(self).__name__}({len(self._data)} queries, {pairs} {self._kind})"

    def to_dict(self) -> dict[str, dict[str, T]]:
        """A fresh, mutable deep copy as plain dicts."""
        return {q: dict(docs) for q, docs in self._data.items()}

    @property
    def query_ids(self) -> list[str]:
        return list(self._data)


class Qrels(_Judgements[int]):
    """Relevance judgements ``{query_id: {doc_id: grade}}`` (integer grades; 0 = judged not relevant)."""

    __slots__ = ()
    _kind = "judgements"

    @classmethod
    def _convert(cls, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
            raise ConfigError(f"Qrels: the grade of {where} must be an integer, got {value!r}")
        return int(value)

    @classmethod
    def from_trec(cls, path: str | Path) -> Qrels:
        """Read a TREC qrels file: ``query_id iteration doc_id grade`` per line, whitespace-separated."""
        data: dict[str, dict[str, int]] = {}
        for lineno, fields in _read_fields(path, None):
            if len(fields) != 4:
                raise InputFormatError(
                    f"expected 4 fields 'query_id iteration doc_id grade', got {len(fields)}",
                    str(path),
                    lineno,
                )
            qid, _, did, grade = fields
            _store(data, qid, did, _parse_int(grade, path, lineno), path, lineno)
        return cls(data)

    @classmethod
    def from_beir_tsv(cls, path: str | Path) -> Qrels:
        """Read BEIR's ``qrels/<split>.tsv``: tab-separated ``query-id corpus-id score``.

        The first line is the header (``query-id corpus-id score``); it is skipped when its score field is
        not an integer (BEIR's own loader always skips the first line).
        """
        data: dict[str, dict[str, int]] = {}
        for lineno, fields in _read_fields(path, "\t"):
            if lineno == 1 and len(fields) == 3 and not _is_int(fields[2]):
                continue
            if len(fields) != 3:
                raise InputFormatError(
                    f"expected 3 tab-separated fields 'query-id corpus-id score', got {len(fields)}",
                    str(path),
                    lineno,
                )
            qid, did, grade = fields
            _store(data, qid, did, _parse_int(grade, path, lineno), path, lineno)
        return cls(data)

    def to_trec(self, path: str | Path) -> None:
        """Write a TREC qrels file (iteration column ``0``)."""
        lines = [f"{q} 0 {d} {grade}\n" for q, docs in self._data.items() for d, grade in docs.items()]
        write_file_atomically(Path(path), "".join(lines))

    def relevant(self, query_id: str, min_grade: int = 1) -> set[str]:
        """Doc ids judged at least ``min_grade`` for a query (empty when the query is not judged)."""
        return {d for d, g in self._data.get(query_id, {}).items() if g >= min_grade}


class Run(_Judgements[float]):
    """A retrieval run ``{query_id: {doc_id: score}}``; higher scores rank first."""

    __slots__ = ()
    _kind = "scored documents"

    @classmethod
    def _convert(cls, value: Any, where: str) -> float:
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"Run: the score of {where} must be a number, got {value!r}") from None
        if math.isnan(score):
            raise ConfigError(f"Run: the score of {where} is NaN; scores must be comparable numbers")
        return score

    @classmethod
    def from_trec(cls, path: str | Path) -> Run:
        """Read a TREC run file: ``query_id Q0 doc_id rank score tag`` per line (the rank column is ignored;
        ranking is by score, as in trec_eval)."""
        data: dict[str, dict[str, float]] = {}
        for lineno, fields in _read_fields(path, None):
            if len(fields) != 6:
                raise InputFormatError(
                    f"expected 6 fields 'query_id Q0 doc_id rank score tag', got {len(fields)}",
                    str(path),
                    lineno,
                )
            qid, _, did, _, score_text, _ = fields
            try:
                score = float(score_text)
            except ValueError:
                raise InputFormatError(f"score {score_text!r} is not a number", str(path), lineno) from None
            _store(data, qid, did, score, path, lineno)
        return cls(data)

    def to_trec(self, path: str | Path, tag: str = "rag") -> None:
        """Write a TREC run file, documents of each query by decreasing score (ties by doc id), rank from 1.

        Scores are written with ``repr`` so that reading the file back gives the same floats.
        """
        if not tag or any(c.isspace() for c in tag):
            raise ConfigError(f"run tag must be a non-empty word without spaces, got {tag!r}")
        lines = []
        for qid, docs in self._data.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            lines += [f"{qid} Q0 {d} {rank} {score!r} {tag}\n" for rank, (d, score) in enumerate(ranked, 1)]
        write_file_atomically(Path(path), "".join(lines))

    def ranking(self, query_id: str, k: int | None = None) -> list[str]:
        """Doc ids of a query by decreasing score (ties by doc id), at most ``k``."""
        ranked = sorted(self._data.get(query_id, {}).items(), key=lambda item: (-item[1], item[0]))
        return [did for did, _ in ranked[:k]]

    def without_self_hits(self) -> Run:
        """A copy where no query retrieves a document with its own id (BEIR's ``ignore_identical_ids``)."""
        return Run({q: {d: s for d, s in docs.items() if d != q} for q, docs in self._data.items()})


def parse_metrics(metrics: str | Iterable[str]) -> list[Measure]:
    """Parse metric names (ir_measures syntax, case-insensitive name part) and fail early on a bad one.

    Accepted: ``nDCG@10``, ``ndcg@10``, ``AP@100`` / ``MAP@100``, ``RR@10`` / ``MRR@10``, ``R@100`` /
    ``Recall@100``, ``P@5``, ``Success@10``, and anything else ir_measures parses, such as
    ``nDCG(dcg='exp-log2')@10``. Duplicates are dropped, order kept.

    :raises ConfigError: naming the bad metric and listing examples.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ConfigError(f"no metrics given; pass metric names such as {_METRIC_EXAMPLES}")
    parsed: list[Measure] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"metric names must be non-empty strings, got {name!r}; examples: {_METRIC_EXAMPLES}"
            )
        try:
            measure = ir_measures.parse_measure(_canonical_case(name.strip()))
        except Exception as exc:  # ir_measures raises NameError / ValueError / SyntaxError
            raise ConfigError(f"unknown metric {name!r} ({exc}); examples: {_METRIC_EXAMPLES}") from None
        if measure not in parsed:
            parsed.append(measure)
    return parsed


def metric_display_name(metric: str | Measure) -> str:
    """The name used as a result key: ``AP@100`` -> ``MAP@100``, ``RR@10`` -> ``MRR@10``, ``R@10`` ->
    ``Recall@10``; other measures keep ir_measures' canonical spelling (``nDCG@10``, ``P@5``)."""
    measure = parse_metrics([metric])[0] if isinstance(metric, str) else metric
    text = str(measure)
    head = re.match(r"[A-Za-z_]+", text)
    if head is None:
        return text
    return _DISPLAY_NAMES.get(head.group(0), head.group(0)) + text[head.end() :]


def evaluate_per_query(
    qrels: Qrels | Mapping[str, Mapping[str, int]],
    run: Run | Mapping[str, Mapping[str, float]],
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    drop_self_hits: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-query values ``{query_id: {metric: value}}`` for every query in the qrels (0 when not retrieved).

    Keys of the inner dicts are display names (:func:`metric_display_name`).
    """
    measures = parse_metrics(metrics)
    qrels_obj = qrels if isinstance(qrels, Qrels) else Qrels(qrels)
    run_obj = run if isinstance(run, Run) else Run(run)
    return _per_query(qrels_obj, run_obj, measures, drop_self_hits)


def evaluate(
    qrels: Qrels | Mapping[str, Mapping[str, int]],
    run: Run | Mapping[str, Mapping[str, float]],
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    drop_self_hits: bool = False,
) -> dict[str, float]:
    """Aggregate metrics ``{display_name: value}``, the mean over every query in the qrels.

    Queries judged in the qrels but absent from the run count as 0 (as BEIR and MTEB, whose runs always
    contain every query); run queries without judgements are ignored. Measures whose ir_measures aggregate is
    not a mean (``NumQ``, ``NumRet``: sums) keep their own aggregator.
    """
    measures = parse_metrics(metrics)
    qrels_obj = qrels if isinstance(qrels, Qrels) else Qrels(qrels)
    run_obj = run if isinstance(run, Run) else Run(run)
    if len(qrels_obj) == 0:
        raise ConfigError("the qrels are empty: there is no judged query to evaluate")
    per_query = _per_query(qrels_obj, run_obj, measures, drop_self_hits)
    out: dict[str, float] = {}
    for measure in measures:
        name = metric_display_name(measure)
        agg = measure.aggregator()
        for values in per_query.values():
            agg.add(values[name])
        out[name] = float(agg.result())
    return out


def _per_query(
    qrels: Qrels, run: Run, measures: Sequence[Measure], drop_self_hits: bool
) -> dict[str, dict[str, float]]:
    if drop_self_hits:
        run = run.without_self_hits()
    names = {measure: metric_display_name(measure) for measure in measures}
    # Missing queries are filled with 0 here rather than trusting each ir_measures provider to do it.
    out: dict[str, dict[str, float]] = {qid: dict.fromkeys(names.values(), 0.0) for qid in qrels}
    judged_run = {qid: dict(docs) for qid, docs in run.items() if qid in out and docs}
    if judged_run:
        for metric in ir_measures.iter_calc(measures, qrels.to_dict(), judged_run):
            out[metric.query_id][names[metric.measure]] = float(metric.value)
    return out


def _canonical_case(name: str) -> str:
    """Map the name part to ir_measures' spelling case-insensitively (``ndcg@10`` -> ``nDCG@10``)."""
    head = re.match(r"[A-Za-z_]+", name)
    if head is None:
        return name
    registry: dict[str, Any] = ir_measures.measures.registry
    if head.group(0) in registry:
        return name
    by_lower = {key.lower(): key for key in registry}
    key = by_lower.get(head.group(0).lower())
    return name if key is None else key + name[head.end() :]


def _read_fields(path: str | Path, sep: str | None) -> Iterator[tuple[int, list[str]]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(sep) if sep else line.split()
            yield lineno, [x.strip() for x in fields]


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _parse_int(text: str, path: str | Path, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputFormatError(f"grade {text!r} is not an integer", str(path), lineno) from None


def _store(
    data: dict[str, dict[str, T]], qid: str, did: str, value: T, path: str | Path, lineno: int
) -> None:
    docs = data.setdefault(qid, {})
    if did in docs and docs[did] != value:
        raise InputFormatError(
            f"query {qid!r}, doc {did!r} appears twice with different values ({docs[did]!r} and {value!r})",
            str(path),
            lineno,
        )
    docs[did] = value
