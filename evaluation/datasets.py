"""Evaluation data sets: BEIR folders and chunk-excerpt sets (Chroma's chunking evaluation layout).

BEIR layout (Thakur et al. 2021)::

    <folder>/corpus.jsonl        {"_id", "title", "text"} per line
    <folder>/queries.jsonl       {"_id", "text"} per line
    <folder>/qrels/<split>.tsv   query-id <TAB> corpus-id <TAB> score, with a header line

Chunk-excerpt layout (Chroma, "Evaluating Chunking Strategies for Retrieval")::

    <folder>/corpora/<corpus_id>.md   one text per corpus; its id is the file stem
    <folder>/questions_df.csv         question, references, corpus_id; references is JSON
                                      [{"content", "start_index", "end_index"}, ...]

Offsets index the corpus text read as UTF-8 with Python's default newline handling (``\\r\\n`` -> ``\\n``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.ir import Qrels
from evaluation.spans import Span
from rag.core.errors import ConfigError, InputFormatError
from rag.core.files import write_file_atomically

__all__ = [
    "BeirDataset",
    "ChunkEvalSet",
    "Excerpt",
    "ExcerptQuestion",
    "load_beir",
    "load_chunk_eval",
    "save_chunk_eval",
]

_CHUNK_EVAL_COLUMNS = ("question", "references", "corpus_id")


# --- BEIR ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDataset:
    """Queries and judgements of one split of a BEIR folder; the corpus stays on disk (``corpus_path``).

    ``queries`` holds only the queries judged in the split, as BEIR's ``GenericDataLoader`` does.
    """

    queries: dict[str, str]
    qrels: Qrels
    corpus_path: Path
    split: str = "test"


def beir_splits(folder: str | Path) -> list[str]:
    """Names of the splits with a ``qrels/<split>.tsv`` file, sorted."""
    qrels_dir = Path(folder) / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load the queries and qrels of one split of a BEIR folder.

    :raises ConfigError: when the folder or one of its files is missing (names every missing file and the
        splits that exist).
    :raises InputFormatError: on a malformed line, or when a judged query is not in ``queries.jsonl``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"BEIR folder not found: {root}")
    corpus = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    missing = [str(p.relative_to(root)) for p in (corpus, queries_path, qrels_path) if not p.is_file()]
    if missing:
        splits = beir_splits(root)
        found = f"splits found: {', '.join(splits)}" if splits else "no qrels/<split>.tsv file at all"
        raise ConfigError(
            f"{root} is not a complete BEIR folder for split {split!r}: "
            f"missing {', '.join(missing)} ({found})"
        )
    qrels = Qrels.from_beir_tsv(qrels_path)
    all_queries = _read_beir_queries(queries_path)
    absent = [qid for qid in qrels if qid not in all_queries]
    if absent:
        raise InputFormatError(
            f"{len(absent)} judged queries of qrels/{split}.tsv are not in queries.jsonl "
            f"(first: {', '.join(absent[:5])})",
            str(queries_path),
        )
    return BeirDataset(
        queries={qid: all_queries[qid] for qid in qrels}, qrels=qrels, corpus_path=corpus, split=split
    )


def _read_beir_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"not a JSON line ({exc.msg})", str(path), lineno) from None
            if not isinstance(record, dict) or not isinstance(record.get("_id"), str | int):
                raise InputFormatError('each line needs an "_id" and a "text"', str(path), lineno)
            text = record.get("text")
            if not isinstance(text, str):
                raise InputFormatError(f'query {record["_id"]!r} has no "text" string', str(path), lineno)
            queries[str(record["_id"])] = text
    return queries


# --- chunk-excerpt sets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Excerpt:
    """A gold excerpt: ``content`` is ``corpus[start:end]``."""

    content: str
    start: int
    end: int


@dataclass(frozen=True)
class ExcerptQuestion:
    """A question whose answer is in ``references``, excerpts of corpus ``corpus_id``."""

    question: str
    corpus_id: str
    references: list[Excerpt]

    def spans(self) -> list[Span]:
        """Gold spans, as :func:`evaluation.spans.evaluate_spans` takes them."""
        return [Span(self.corpus_id, ref.start, ref.end) for ref in self.references]


@dataclass(frozen=True)
class ChunkEvalSet:
    """Corpora and excerpt questions. ``mismatches`` describes references whose span does not hold their
    content (empty for a sound set)."""

    corpora: dict[str, str]
    questions: list[ExcerptQuestion]
    mismatches: list[str] = field(default_factory=list)

    @property
    def reference_count(self) -> int:
        return sum(len(q.references) for q in self.questions)


def load_chunk_eval(folder: str | Path) -> ChunkEvalSet:
    """Load a chunk-excerpt set and check every reference against its corpus.

    A reference whose ``corpus[start_index:end_index]`` differs from its ``content``, or whose corpus is not
    in ``corpora/``, is reported in ``mismatches`` (loading goes on).

    :raises ConfigError: when ``corpora/`` or ``questions_df.csv`` is missing.
    :raises InputFormatError: on a missing column or a malformed ``references`` cell.
    """
    root = Path(folder)
    corpora_dir = root / "corpora"
    csv_path = root / "questions_df.csv"
    missing = [
        name for name, p in (("corpora/", corpora_dir), ("questions_df.csv", csv_path)) if not p.exists()
    ]
    if missing:
        raise ConfigError(f"{root} is not a chunk-excerpt set: missing {', '.join(missing)}")
    corpora: dict[str, str] = {}
    for path in sorted(corpora_dir.glob("*.md")):
        with open(path, encoding="utf-8") as f:  # default newline handling, as the offsets assume
            corpora[path.stem] = f.read()
    if not corpora:
        raise ConfigError(f"no corpus file (*.md) in {corpora_dir}")

    questions: list[ExcerptQuestion] = []
    mismatches: list[str] = []
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in _CHUNK_EVAL_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise InputFormatError(
                f"missing column(s) {', '.join(absent)}; expected {', '.join(_CHUNK_EVAL_COLUMNS)}",
                str(csv_path),
                1,
            )
        for row in reader:
            line = reader.line_num
            references = _parse_references(row["references"], csv_path, line)
            question = ExcerptQuestion(row["question"], row["corpus_id"], references)
            number = len(questions)
            questions.append(question)
            text = corpora.get(question.corpus_id)
            if text is None:
                mismatches.append(
                    f"question {number} (line {line}): corpus {question.corpus_id!r} is not in {corpora_dir}"
                )
                continue
            for j, ref in enumerate(references):
                if text[ref.start : ref.end] != ref.content:
                    mismatches.append(
                        f"question {number} (line {line}), reference {j}: {question.corpus_id}"
                        f"[{ref.start}:{ref.end}] = {text[ref.start : ref.end][:60]!r}, "
                        f"content = {ref.content[:60]!r}"
                    )
    return ChunkEvalSet(corpora=corpora, questions=questions, mismatches=mismatches)


def _parse_references(cell: str | None, path: Path, line: int) -> list[Excerpt]:
    try:
        raw = json.loads(cell or "")
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"references is not JSON ({exc.msg})", str(path), line) from None
    if not isinstance(raw, list):
        raise InputFormatError("references must be a JSON list", str(path), line)
    out = []
    for item in raw:
        if not isinstance(item, dict) or not {"content", "start_index", "end_index"} <= item.keys():
            raise InputFormatError("each reference needs content, start_index and end_index", str(path), line)
        try:
            start, end = int(item["start_index"]), int(item["end_index"])
        except (TypeError, ValueError):
            raise InputFormatError("start_index and end_index must be integers", str(path), line) from None
        if not 0 <= start <= end:
            raise InputFormatError(f"reference span [{start}, {end}) is not a valid range", str(path), line)
        out.append(Excerpt(str(item["content"]), start, end))
    return out


def save_chunk_eval(eval_set: ChunkEvalSet, folder: str | Path) -> Path:
    """Write ``eval_set`` in the chunk-excerpt layout (``load_chunk_eval`` reads it back unchanged).

    Corpora are written without newline translation. A corpus containing ``\\r`` is refused: reading it
    back with default newline handling would shift every offset after it.

    :returns: the folder.
    """
    root = Path(folder)
    for corpus_id, text in eval_set.corpora.items():
        if not corpus_id or corpus_id != Path(corpus_id).name or corpus_id.startswith("."):
            raise ConfigError(
                f"corpus id {corpus_id!r} cannot be a file name; use letters, digits, '_' or '-'"
            )
        if "\r" in text:
            raise ConfigError(
                f"corpus {corpus_id!r} contains '\\r': normalize newlines to '\\n' before locating excerpts, "
                "or its offsets will not survive saving and loading"
            )
    for question in eval_set.questions:
        if question.corpus_id not in eval_set.corpora:
            raise ConfigError(
                f"question {question.question[:60]!r} names corpus {question.corpus_id!r}, not in corpora"
            )
    corpora_dir = root / "corpora"
    corpora_dir.mkdir(parents=True, exist_ok=True)
    for corpus_id, text in eval_set.corpora.items():
        write_file_atomically(corpora_dir / f"{corpus_id}.md", text)
    rows: list[dict[str, Any]] = [
        {
            "question": q.question,
            "references": json.dumps(
                [{"content": r.content, "start_index": r.start, "end_index": r.end} for r in q.references]
            ),
            "corpus_id": q.corpus_id,
        }
        for q in eval_set.questions
    ]
    _write_csv_atomic(root / "questions_df.csv", rows)
    return root


def _write_csv_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(_CHUNK_EVAL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_file_atomically(path, buffer.getvalue())
