"""The evaluation engine: run a config's pipeline over an evaluation set and score it.

``rag eval`` and ``rag eval-chunks`` both come here (:func:`evaluate_config`), and so do the benchmarks.
One path for every kind of set:

1. the set is read (:func:`load_eval_set`; a registered kind per folder layout);
2. the config's index bundle over the set's corpus is built, or reused from the cache
   (:func:`ensure_bundle`, keys of :mod:`rag.core.cache`);
3. every query goes through the pipeline with :func:`rag.pipelines.run_query`, which reads the last
   stage that produces documents (so a reranker or compressor is scored as it reaches the LLM) and
   times every stage;
4. the outcomes are scored by the metric functions registered for the set's kind
   (:data:`METRIC_FUNCTIONS`), plus the cost functions every kind has;
5. the result is one :class:`EvalResult`, written by the one report writer :func:`write_report`.

Kinds of set:

- a **BEIR folder** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), kind ``ir``:
  document-level IR metrics (nDCG@10, MAP@100, MAP@1000, MRR@10, Recall@10/100) of a run ``depth``
  results deep (default 1000, as trec_eval, Anserini and Pyserini); chunks are scored as their source
  document (best chunk wins), as BEIR judges whole documents;
- a **chunk-excerpt folder** (``questions_df.csv`` + ``corpora/*.md``, Chroma's layout, see
  :mod:`evaluation.datasets`), kind ``spans``: token-level span metrics (recall, precision, IoU,
  Precision-Omega, :mod:`evaluation.spans`) of the ``retrieval.top_k`` documents returned per question,
  mean and std over questions and per corpus. The bundle is built over ``corpora/`` read as a folder of
  text files (document id ``chatlogs.md``, chunk ids ``chatlogs.md#k`` of
  :func:`rag.core.chunking.chunk_documents`, corpus id = file stem ``chatlogs``). Precision-Omega takes
  the chunks of the bundle.

**Title rule** (what is embedded, and indexed by BM25, for a document): each kind of set has one.
``auto`` keeps the title the corpus reader gives (``title + " " + text``, the MTEB / BEIR convention;
BEIR's corpus.jsonl titles, SciFact's 0.6451 depends on them). ``none`` drops it: chunk-excerpt sets
use it, so a chunk is embedded alone, as in Chroma's protocol (the reader would otherwise give every
file of ``corpora/`` its stem as title, and every chunk would start with ``chatlogs``).

**Cost columns**, for every kind: ``llm_tokens``, the tokens (``llm_tokenizer``, default
``cl100k_base``) of the text of the first ``retrieval.top_k`` documents a query returns, what a prompt
stage would send to the LLM; and ``stage_seconds``, the mean seconds per query of each pipeline stage.

Adding a report column is one function and one registration line::

    def answer_length(context: RunContext) -> list[dict[str, float]]:
        return [{"docs": float(len(o.documents))} for o in context.outcomes]

    register_metric("spans", answer_length)

**Provenance convention** (how a retrieved document maps to source text). A retrieved document stands
for the character spans of its sources that it holds:

- by default, the chunk span ``(meta["source_id"], meta["start"], meta["end"])``: half-open character
  offsets into the content of source document ``source_id``, written by
  :func:`rag.core.chunking.chunk_documents`;
- when ``meta["provenance"]`` is present it wins: a list of ``[source_id, start, end]`` spans, in the
  same terms, covering exactly the text the document now holds. A stage that rewrites text (a
  compressor keeping some sentences of a chunk) must set it, so that the evaluation measures how much
  gold evidence survives; an empty list means the document kept nothing of any source. Every span
  counts in |R| (the precision denominator), so overlapping provenance spans count each time, as
  overlapping chunks do.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline

from evaluation.datasets import BeirDataset, ChunkEvalSet, load_beir, load_chunk_eval
from evaluation.ir import DEFAULT_METRICS, Run, evaluate_per_query
from evaluation.reports import METRICS as SPAN_METRICS
from evaluation.reports import build_report, group_summaries, mean_std, write_json
from evaluation.spans import UNITS, Span, evaluate_spans
from indexers import load_index
from indexers.bundle import read_bundle_manifest
from rag.core.cache import entry_key, kind_folder
from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.core.readers import ReadReport, read_corpus
from rag.core.tokenizers import DEFAULT_TOKENIZER, get_token_counter
from rag.core.validation import positive_int
from rag.pipelines import build_bundle, build_pipeline, read_build_summary, run_query

__all__ = [
    "EVAL_DEPTH",
    "METRIC_FUNCTIONS",
    "EvalResult",
    "EvalSet",
    "QueryOutcome",
    "RunContext",
    "document_spans",
    "ensure_bundle",
    "evaluate_config",
    "evaluate_set",
    "is_chunk_eval_folder",
    "load_eval_set",
    "register_metric",
    "write_report",
]

# Default ranking depth of IR sets: trec_eval's, Anserini's and Pyserini's 1000, so MAP is MAP@1000.
EVAL_DEPTH = 1000
TITLE_RULES = ("auto", "none")
# Chroma reports chunk sizes in cl100k_base tokens whatever the chunker measures.
SIZE_TOKENIZER = DEFAULT_TOKENIZER


# --- evaluation sets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set as the engine sees it: the corpus a bundle is built over, the queries, and what
    scores them. ``kind`` picks the metric functions; ``groups[i]`` is query ``i``'s group (its corpus,
    for per-corpus tables) or None; ``title`` is the set's title rule (module docstring)."""

    kind: str
    path: Path
    split: str
    corpus: Path
    title: str
    query_ids: list[str]
    queries: list[str]
    groups: list[str] | None = None
    beir: BeirDataset | None = None
    excerpts: ChunkEvalSet | None = None
    # Set by prepare() once the bundle exists (chunk-excerpt sets).
    chunks: list[Document] = field(default_factory=list)
    corpus_ids: dict[str, str] = field(default_factory=dict)

    def depth(self, config: RagConfig, depth: int) -> int:
        """Results fetched per query: the run depth for IR metrics, what reaches the LLM for spans."""
        return depth if self.kind == "ir" else config.retrieval.top_k

    def prepare(self, bundle: Path) -> EvalSet:
        """The set with what scoring needs from the bundle: for a chunk-excerpt set, every chunk (for
        Precision-Omega) and the map from source ids to corpus ids, checked against the set's texts."""
        if self.excerpts is None:
            return self
        chunks = _bundle_chunks(bundle)
        return dataclasses.replace(self, chunks=chunks, corpus_ids=_corpus_id_map(chunks, self.excerpts))


def is_chunk_eval_folder(dataset: str | Path) -> bool:
    """True for a chunk-excerpt folder: ``questions_df.csv`` and a ``corpora/`` folder."""
    root = Path(dataset)
    return (root / "questions_df.csv").is_file() and (root / "corpora").is_dir()


def _load_excerpts(dataset: Path, split: str) -> EvalSet:
    data = load_chunk_eval(dataset)
    if not data.questions:
        raise ConfigError(f"{dataset}: the chunk-excerpt set has no questions to evaluate")
    return EvalSet(
        kind="spans",
        path=dataset,
        split="all",
        corpus=dataset / "corpora",
        title="none",
        query_ids=[f"q{i}" for i in range(len(data.questions))],
        queries=[q.question for q in data.questions],
        groups=[q.corpus_id for q in data.questions],
        excerpts=data,
    )


def _load_beir(dataset: Path, split: str) -> EvalSet:
    data = load_beir(dataset, split=split)
    ids = sorted(data.queries)
    return EvalSet(
        kind="ir",
        path=dataset,
        split=split,
        corpus=data.corpus_path,
        title="auto",
        query_ids=ids,
        queries=[data.queries[q] for q in ids],
        beir=data,
    )


# Folder layouts, tried in order: (test, loader). BEIR is the fallback and names what it misses.
SET_LOADERS: list[tuple[Callable[[Path], bool], Callable[[Path, str], EvalSet]]] = [
    (is_chunk_eval_folder, _load_excerpts),
    (lambda _path: True, _load_beir),
]


def load_eval_set(dataset: str | Path, split: str = "test") -> EvalSet:
    """The evaluation set in ``dataset``, of the first layout of :data:`SET_LOADERS` that matches."""
    root = Path(dataset)
    for matches, loader in SET_LOADERS:
        if matches(root):
            return loader(root, split)
    raise ConfigError(f"{root} is not an evaluation set")  # pragma: no cover - BEIR matches everything


# --- metric functions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryOutcome:
    """One query through the pipeline: its ranked documents and the seconds each stage took."""

    query_id: str
    text: str
    documents: list[Document]
    stage_seconds: dict[str, float]


@dataclass(frozen=True)
class RunContext:
    """What a metric function reads: the set, the config, one outcome per query (in the set's order)
    and the measuring settings."""

    eval_set: EvalSet
    config: RagConfig
    outcomes: list[QueryOutcome]
    unit: str = "chars"
    tokenizer: str = DEFAULT_TOKENIZER
    llm_tokenizer: str = DEFAULT_TOKENIZER


# A metric function returns one {column: value} per query, in the order of context.outcomes; the report
# shows the mean (and std) of every column over queries.
MetricFunction = Callable[[RunContext], list[dict[str, float]]]
METRIC_FUNCTIONS: dict[str, list[MetricFunction]] = {"ir": [], "spans": [], "cost": []}


def register_metric(kind: str, function: MetricFunction) -> MetricFunction:
    """Add ``function`` to the columns of sets of ``kind`` (``ir``, ``spans``, or ``cost`` for every
    kind); returns it, so it can be used as a decorator: ``@functools.partial(register_metric, "ir")``."""
    if kind not in METRIC_FUNCTIONS:
        raise ConfigError(f"unknown metric kind {kind!r}; known: {', '.join(METRIC_FUNCTIONS)}")
    if function not in METRIC_FUNCTIONS[kind]:
        METRIC_FUNCTIONS[kind].append(function)
    return function


def source_id(doc: Any) -> str:
    """Chunks are scored as their source document (best chunk wins), as BEIR judges whole documents."""
    return str(doc.meta.get("source_id", doc.id))


def ir_run(outcomes: Sequence[QueryOutcome]) -> Run:
    """The run of source documents: each document's score is its best chunk's."""
    ranking: dict[str, dict[str, float]] = {}
    for outcome in outcomes:
        scores: dict[str, float] = {}
        for doc in outcome.documents:
            sid = source_id(doc)
            scores[sid] = max(scores.get(sid, float("-inf")), float(doc.score or 0.0))
        ranking[outcome.query_id] = scores
    return Run(ranking)


def ir_metrics(context: RunContext) -> list[dict[str, float]]:
    """nDCG@10, MAP@100, MAP@1000, MRR@10, Recall@10/100 per query (:mod:`evaluation.ir`)."""
    beir = context.eval_set.beir
    if beir is None:
        raise ConfigError("IR metrics need the qrels of a BEIR set")
    per_query = evaluate_per_query(beir.qrels, ir_run(context.outcomes), DEFAULT_METRICS)
    return [per_query[o.query_id] for o in context.outcomes]


def span_metrics(context: RunContext) -> list[dict[str, float]]:
    """Recall, precision, IoU and Precision-Omega of each question's retrieved spans."""
    data, corpus_ids = context.eval_set.excerpts, context.eval_set.corpus_ids
    if data is None:
        raise ConfigError("span metrics need a chunk-excerpt set")
    retrieved = [
        [s for doc in o.documents for s in document_spans(doc, corpus_ids)] for o in context.outcomes
    ]
    all_chunks = [s for doc in context.eval_set.chunks for s in document_spans(doc, corpus_ids)]
    report = evaluate_spans(
        data.questions,
        retrieved,
        all_chunks,
        unit=context.unit,
        corpora=data.corpora,
        tokenizer=context.tokenizer,
    )
    return [{name: row[name] for name in SPAN_METRICS} for row in report.per_query]


def llm_tokens(context: RunContext) -> list[dict[str, float]]:
    """Tokens of the text of the first ``retrieval.top_k`` documents of each query, in the LLM tokenizer."""
    count = get_token_counter(context.llm_tokenizer).count
    top_k = context.config.retrieval.top_k
    return [
        {"llm_tokens": float(sum(count(doc.content or "") for doc in o.documents[:top_k]))}
        for o in context.outcomes
    ]


register_metric("ir", ir_metrics)
register_metric("spans", span_metrics)
register_metric("cost", llm_tokens)


def score(context: RunContext) -> list[dict[str, float]]:
    """Every registered column of the set's kind, then the cost columns, per query."""
    rows: list[dict[str, float]] = [{} for _ in context.outcomes]
    for function in [*METRIC_FUNCTIONS[context.eval_set.kind], *METRIC_FUNCTIONS["cost"]]:
        values = function(context)
        if len(values) != len(rows):
            raise ConfigError(
                f"metric function {function.__name__} returned {len(values)} rows for {len(rows)} queries"
            )
        for row, value in zip(rows, values, strict=True):
            row.update(value)
    return rows


# --- the result record -------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """One config evaluated on one set: the record every command and benchmark reports.

    ``metrics`` holds the mean over queries of every column (quality and cost), ``std`` the population
    standard deviation, ``per_group`` the same per corpus (chunk-excerpt sets), ``per_query`` the
    values of each query. ``stage_seconds`` is the mean seconds per query of each pipeline stage;
    ``seconds`` the wall time of the whole evaluation (bundle build or reuse, queries, scoring).
    """

    name: str
    config: str
    dataset: str
    split: str
    kind: str
    queries: int
    depth: int
    top_k: int
    metrics: dict[str, float]
    std: dict[str, float]
    per_group: dict[str, dict[str, Any]]
    per_query: list[dict[str, Any]]
    stage_seconds: dict[str, float]
    queries_per_second: float
    index_build_seconds: float
    index_reused: bool
    index_path: str
    seconds: float
    settings: dict[str, Any]
    chunks: int | None = None
    mean_chunk_tokens: float | None = None
    run: Run = field(default_factory=lambda: Run({}), repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON record (also what :mod:`evaluation.reports` tables and plots read)."""
        return {
            "name": self.name,
            "config": self.config,
            "dataset": self.dataset,
            "split": self.split,
            "kind": self.kind,
            "queries": self.queries,
            "depth": self.depth,
            "top_k": self.top_k,
            "retrieve": self.top_k,
            "metrics": dict(self.metrics),
            "overall": {"queries": self.queries, "mean": dict(self.metrics), "std": dict(self.std)},
            "per_corpus": {group: dict(summary) for group, summary in self.per_group.items()},
            "per_query": [dict(row) for row in self.per_query],
            "llm_tokens": self.metrics.get("llm_tokens"),
            "stage_seconds": dict(self.stage_seconds),
            "queries_per_second": self.queries_per_second,
            "index_build_seconds": self.index_build_seconds,
            "index_reused": self.index_reused,
            "index_path": self.index_path,
            "seconds": self.seconds,
            "chunks": self.chunks,
            "mean_chunk_tokens": self.mean_chunk_tokens,
            **self.settings,
        }


# --- bundles -------------------------------------------------------------------------------------------


def _corpus_stamp(corpus: Path) -> list[Any]:
    """Path, size and mtime of a corpus file, or of every file under a corpus folder (a folder's own
    mtime misses edits of the files in it)."""
    if corpus.is_dir():
        files = sorted(p for p in corpus.rglob("*") if p.is_file())
        return [
            str(corpus.resolve()),
            [[p.relative_to(corpus).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        ]
    stat = corpus.stat()
    return [str(corpus.resolve()), stat.st_size, stat.st_mtime_ns]


# Encoder settings that joined the bundle key after bundles were first cached (see index_cache_key).
_LATER_ENCODER_SETTINGS = ("tempscale", "representation", "ot_dims")


def index_cache_key(config: RagConfig, corpus: Path, title: str = "auto") -> str:
    """Key of the bundle of ``config`` over ``corpus``: the corpus files and the config sections that
    shape the index (query-time settings such as ``top_k`` do not), and the title rule."""
    # The device changes where vectors are computed, not which: it must not split the cache.
    # Settings added later are left out while unset (None), so bundles cached before they existed keep
    # their key.
    encoder = {
        k: v
        for k, v in config.encoder.__dict__.items()
        if k != "device" and not (k in _LATER_ENCODER_SETTINGS and v is None)
    }
    # Only bundles with token vectors get the colbert key, so the keys of the other bundles stay as before.
    sides = {"colbert": dataclasses.asdict(config.colbert)} if "multivector" in config.sides else {}
    return entry_key(
        "bundles",
        corpus=_corpus_stamp(corpus),
        chunking=config.chunking,
        encoder=encoder if config.needs_dense else None,
        index=config.index.__dict__ if config.needs_dense else None,
        bm25=config.bm25 if config.needs_bm25 else None,
        mode=config.retrieval.mode,
        title=title,
        **sides,
    )


def _slug(text: str) -> str:
    """``text`` as a file-name part: runs of characters but letters, digits and ``._-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def ensure_bundle(
    config: RagConfig, corpus: Path, cache_dir: Path, progress: bool = True, title: str = "auto"
) -> tuple[Path, float, bool]:
    """Build the config's bundle for ``corpus`` under ``cache_dir/bundles`` unless the cache has it.

    :param title: the title rule (module docstring): ``none`` drops the reader's titles before chunking.
    :returns: (bundle path, build seconds, reused).
    """
    if title not in TITLE_RULES:
        raise ConfigError(f"title rule must be one of {', '.join(TITLE_RULES)}, got {title!r}")
    label = _slug(f"{corpus.parent.name}-{config.name}")
    path = kind_folder(cache_dir, "bundles") / f"{label}-{index_cache_key(config, corpus, title)}"
    summary = read_build_summary(path)
    if summary is not None:
        return path, summary.seconds, True
    path.parent.mkdir(parents=True, exist_ok=True)
    report = read_corpus(corpus)
    if title == "none":
        report = _without_titles(report)
    summary = build_bundle(
        config,
        corpus,
        path,
        progress=progress,
        embedding_cache=kind_folder(cache_dir, "embeddings"),
        report=report,
    )
    return path, summary.seconds, False


def _without_titles(report: ReadReport) -> ReadReport:
    documents = [
        Document(id=d.id, content=d.content, meta={k: v for k, v in d.meta.items() if k != "title"})
        for d in report.documents
    ]
    return ReadReport(documents, dict(report.skipped), list(report.warnings), report.layout)


def warmed_pipeline(config: RagConfig, bundle: Path) -> Pipeline:
    """A pipeline that has loaded its models and answered one query, so that queries per second measure
    steady-state latency, not model loading and the first forward pass."""
    pipeline = build_pipeline(config, bundle)
    pipeline.warm_up()
    run_query(pipeline, "warm-up query", top_k=1)
    return pipeline


# --- the engine ----------------------------------------------------------------------------------------


def evaluate_config(
    config: RagConfig,
    dataset: str | Path | EvalSet,
    split: str = "test",
    cache_dir: str | Path = "runs/cache",
    progress: bool = True,
    on_query: Callable[[int, int], None] | None = None,
    depth: int = EVAL_DEPTH,
    unit: str = "chars",
    tokenizer: str = DEFAULT_TOKENIZER,
    llm_tokenizer: str = DEFAULT_TOKENIZER,
    name: str | None = None,
) -> EvalResult:
    """Build or reuse the index, run every query of the set through the pipeline, score the outcomes.

    :param dataset: a set folder (:func:`load_eval_set`) or a set already loaded (a grid loads it once).
    :param split: qrels split of a BEIR folder (a chunk-excerpt set has one, ``all``).
    :param depth: results per query of an IR run (MAP@1000 needs 1000); a chunk-excerpt set takes the
        config's ``retrieval.top_k`` instead, what reaches the LLM.
    :param unit: ``chars`` or ``tokens``, the unit of span metrics; ``tokenizer`` counts the tokens.
    :param llm_tokenizer: counts the ``llm_tokens`` cost column.
    :param name: label of the result (default: the config's name).
    """
    started = time.perf_counter()
    depth = positive_int(depth, "depth")
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {', '.join(UNITS)} (the unit of span metrics), got {unit!r}")
    get_token_counter(llm_tokenizer)  # a bad name fails now, not after the queries
    if unit == "tokens":
        get_token_counter(tokenizer)
    eval_set = dataset if isinstance(dataset, EvalSet) else load_eval_set(dataset, split)
    bundle, build_seconds, reused = ensure_bundle(
        config, eval_set.corpus, Path(cache_dir), progress=progress, title=eval_set.title
    )
    eval_set = eval_set.prepare(bundle)
    pipeline = warmed_pipeline(config, bundle)
    fetch = eval_set.depth(config, depth)
    outcomes: list[QueryOutcome] = []
    total = len(eval_set.query_ids)
    queries_started = time.perf_counter()
    pairs = list(zip(eval_set.query_ids, eval_set.queries, strict=True))
    for done, (qid, text) in enumerate(_progress(pairs, progress, f"{config.name}: queries"), start=1):
        result = run_query(pipeline, text, top_k=fetch)
        outcomes.append(QueryOutcome(qid, text, result.documents, result.stage_seconds))
        if on_query is not None:
            on_query(done, total)
    query_seconds = time.perf_counter() - queries_started
    context = RunContext(eval_set, config, outcomes, unit, tokenizer, llm_tokenizer)
    rows = score(context)
    mean, std = mean_std(rows)
    groups = eval_set.groups
    per_group = group_summaries(groups, rows, list(mean)) if groups is not None else {}
    per_query = [
        {"query_id": qid, **({"corpus_id": groups[i]} if groups is not None else {}), **row}
        for i, (qid, row) in enumerate(zip(eval_set.query_ids, rows, strict=True))
    ]
    chunks, chunk_tokens = None, None
    if eval_set.chunks:
        count = get_token_counter(SIZE_TOKENIZER).count
        chunks = len(eval_set.chunks)
        chunk_tokens = sum(count(doc.content or "") for doc in eval_set.chunks) / chunks
    run = ir_run(outcomes) if eval_set.kind == "ir" else _chunk_run(outcomes)
    return EvalResult(
        name=name or config.name,
        config=config.name,
        dataset=str(eval_set.path),
        split=eval_set.split,
        kind=eval_set.kind,
        queries=total,
        depth=fetch,
        top_k=config.retrieval.top_k,
        metrics=mean,
        std=std,
        per_group=per_group,
        per_query=per_query,
        stage_seconds=_mean_stage_seconds(outcomes),
        queries_per_second=total / query_seconds if query_seconds > 0 else float("inf"),
        index_build_seconds=build_seconds,
        index_reused=reused,
        index_path=str(bundle),
        seconds=time.perf_counter() - started,
        settings={
            "mode": config.retrieval.mode,
            "chunker": dict(config.chunking),
            "encoder": config.encoder.model if config.needs_dense else None,
            "title": eval_set.title,
            "unit": unit if eval_set.kind == "spans" else None,
            "tokenizer": tokenizer if eval_set.kind == "spans" and unit == "tokens" else None,
            "llm_tokenizer": llm_tokenizer,
        },
        chunks=chunks,
        mean_chunk_tokens=chunk_tokens,
        run=run,
    )


def evaluate_set(
    configs: Sequence[RagConfig], dataset: str | Path | EvalSet, **options: Any
) -> list[EvalResult]:
    """:func:`evaluate_config` for each config (distinct names: run files are named by them), the set
    read once. ``options`` are :func:`evaluate_config`'s keywords (``split`` among them)."""
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"configs must have distinct names (run files are named by them), got {names}")
    eval_set = (
        dataset if isinstance(dataset, EvalSet) else load_eval_set(dataset, options.get("split", "test"))
    )
    return [evaluate_config(config, eval_set, **options) for config in configs]


def _chunk_run(outcomes: Sequence[QueryOutcome]) -> Run:
    return Run({o.query_id: {str(d.id): float(d.score or 0.0) for d in o.documents} for o in outcomes})


def _mean_stage_seconds(outcomes: Sequence[QueryOutcome]) -> dict[str, float]:
    names = sorted({name for o in outcomes for name in o.stage_seconds})
    count = max(len(outcomes), 1)
    return {name: sum(o.stage_seconds.get(name, 0.0) for o in outcomes) / count for name in names}


# --- the report writer ---------------------------------------------------------------------------------


def write_report(results: Sequence[EvalResult], output: str | Path, **settings: Any) -> list[Path]:
    """Write ``report.json`` (settings and one record per result), one TREC run file per result
    (``<name>.trec``) and, when some results are span evaluations, their plots; returns the paths."""
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = folder / f"{_slug(result.name)}.trec"
        result.run.to_trec(path, tag=_slug(result.name))
        written.append(path)
    records = [r.to_json() for r in results]
    written.append(write_json(folder / "report.json", build_report(records, **settings)))
    spans = [record for record in records if record["kind"] == "spans"]
    if spans:
        from evaluation.plots import plot_chunking_results

        written.extend(plot_chunking_results(spans, folder))
    return written


# --- spans of retrieved documents ------------------------------------------------------------------------


def document_spans(doc: Document, corpus_ids: Mapping[str, str] | None = None) -> list[Span]:
    """The source spans a retrieved document stands for (module docstring, "provenance convention").

    :param corpus_ids: maps source document ids to the corpus ids of the gold spans (``chatlogs.md`` ->
        ``chatlogs``); ``None`` keeps source ids as they are.
    :raises ConfigError: when the document has neither ``provenance`` nor ``source_id``/``start``/``end``,
        or names a source not in ``corpus_ids``.
    """
    meta = doc.meta or {}
    if "provenance" in meta:
        raw = meta["provenance"]
        if not isinstance(raw, list | tuple):
            raise ConfigError(
                f"document {doc.id!r}: meta['provenance'] must be a list of [source_id, start, end], "
                f"got {raw!r}"
            )
        entries = list(raw)
    elif all(key in meta for key in ("source_id", "start", "end")):
        entries = [(meta["source_id"], meta["start"], meta["end"])]
    else:
        raise ConfigError(
            f"document {doc.id!r} carries no source offsets: span metrics need meta source_id, start and end "
            "(set by chunking) or meta['provenance'] (set by compressors)"
        )
    spans = []
    for entry in entries:
        if not isinstance(entry, list | tuple) or len(entry) != 3:
            raise ConfigError(
                f"document {doc.id!r}: provenance entry {entry!r} is not [source_id, start, end]"
            )
        source, start, end = entry
        corpus = str(source)
        if corpus_ids is not None:
            if corpus not in corpus_ids:
                raise ConfigError(
                    f"document {doc.id!r} comes from {corpus!r}, which is not a corpus of the evaluation set"
                )
            corpus = corpus_ids[corpus]
        spans.append(Span(corpus, start, end))
    return spans


def _bundle_chunks(bundle: Path) -> list[Document]:
    """Every chunk a bundle indexed (its sides hold the same chunks; :mod:`indexers.bundle`)."""
    sides = read_bundle_manifest(bundle)["sides"]
    if not sides:
        raise ConfigError(f"{bundle} holds no index; rebuild it with `rag index`")
    index = load_index(bundle / sides[0])
    return index.get(index.ids)


def _corpus_id_map(chunks: Sequence[Document], data: ChunkEvalSet) -> dict[str, str]:
    """Source document id -> corpus id (file stem), checking that the bundle's texts are the set's
    corpora: every chunk's offsets must select its own text in the corpus the questions refer to."""
    mapping: dict[str, str] = {}
    for doc in chunks:
        source = str((doc.meta or {}).get("source_id", doc.id))
        if source not in mapping:
            stem = Path(source).stem
            if Path(source).name != source or Path(source).suffix != ".md" or stem not in data.corpora:
                raise ConfigError(
                    f"the index holds document {source!r}, which is not a corpus of the set "
                    f"({', '.join(sorted(data.corpora))}); corpora/ must hold only <corpus_id>.md files"
                )
            mapping[source] = stem
        start, end = doc.meta.get("start"), doc.meta.get("end")
        text = data.corpora[mapping[source]]
        if not isinstance(start, int) or not isinstance(end, int) or text[start:end] != doc.content:
            raise ConfigError(
                f"chunk {doc.id!r} does not match {mapping[source]}[{start}:{end}] of the evaluation set; "
                "the corpus was read differently (byte-order mark? newlines?) - offsets would be wrong"
            )
    missing = sorted({q.corpus_id for q in data.questions} - set(data.corpora))
    if missing:
        raise ConfigError(
            f"questions refer to corpora that are not in the set: {missing}; "
            f"add corpora/<id>.md for them (known: {sorted(data.corpora)})"
        )
    return mapping


def _progress(items: list[Any], enabled: bool, label: str) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="query")
