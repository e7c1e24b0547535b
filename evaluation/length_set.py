"""A length-controlled retrieval set from SQuAD: the same text cut into documents of 1, 2, 4, 8 paragraphs.

For TempScale (:mod:`rag.encoders.tempscale`) and length-induced collapse: quality against document length,
as LongEmbed measures it, with every other thing held fixed. From each article of a SQuAD v1.1 file,
the first ``max(lengths) * floor(n / max(lengths))`` of its ``n`` paragraphs are kept, so every bucket
cuts exactly the same paragraphs. Bucket ``k`` splits each article's kept paragraphs into consecutive,
non-overlapping windows of ``k`` paragraphs (joined by one space); a window is one document, id
``<article index>-<first paragraph>-<k>``. The queries, one fixed sample of the questions on kept
paragraphs, are the same in every bucket; a question's one relevant document is the window that holds
its paragraph. Documents have no title: the windows of an article share it.

A bucket of ``k`` paragraphs has ``1/k`` as many documents as the 1-paragraph bucket, so compare
settings (e.g. temperatures) within a bucket; across buckets the corpus size changes too.

>>> squad = {"data": [{"title": "T", "paragraphs": [
...     {"context": f"p{i}", "qas": [{"id": f"q{i}", "question": f"what {i}?"}]} for i in range(5)]}]}
>>> buckets = build_length_set(squad, lengths=(1, 2), queries=None)
>>> [(b.paragraphs, len(b.corpus)) for b in buckets]
[(1, 4), (2, 2)]
>>> buckets[1].corpus["0-2-2"], dict(buckets[1].qrels["q3"])
('p2 p3', {'0-2-2': 1})
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.ir import Qrels
from rag.core.errors import ConfigError, InputFormatError
from rag.core.validation import positive_int

DEFAULT_LENGTHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class LengthBucket:
    """One bucket: documents of ``paragraphs`` consecutive paragraphs, the queries and their one relevant
    document each (``qrels``)."""

    paragraphs: int
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels


def load_squad(path: str | Path) -> dict[str, Any]:
    """Read a SQuAD v1.1 JSON file (``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"SQuAD file not found: {path} (e.g. ../shared/data/squad_v1.1/dev-v1.1.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"not a SQuAD JSON file: {exc}", str(path)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputFormatError('a SQuAD file has a top-level "data" list of articles', str(path))
    return data


def build_length_set(
    squad: Mapping[str, Any],
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    articles: int | None = None,
    queries: int | None = 500,
    seed: int = 0,
) -> list[LengthBucket]:
    """The buckets of the module docstring, one per entry of ``lengths`` (in that order).

    :param squad: a loaded SQuAD file (:func:`load_squad`).
    :param articles: use only the first ``articles`` articles (None: all); the cost control.
    :param queries: how many questions to sample (seeded; None: all questions on kept paragraphs).
    """
    if not lengths:
        raise ConfigError("lengths must name at least one paragraph count, e.g. (1, 2, 4, 8)")
    sizes = [positive_int(k, "paragraphs per document") for k in lengths]
    longest = max(sizes)
    if any(longest % k for k in sizes):
        raise ConfigError(f"every paragraph count must divide the largest ({longest}), got {list(sizes)}")
    chosen = list(squad["data"])[: positive_int(articles, "articles") if articles is not None else None]
    kept: list[list[str]] = []  # kept paragraph texts per article
    questions: list[tuple[str, str, int, int]] = []  # (id, question, article, paragraph)
    for a, article in enumerate(chosen):
        paragraphs = article["paragraphs"]
        usable = longest * (len(paragraphs) // longest)
        kept.append([p["context"] for p in paragraphs[:usable]])
        for p, paragraph in enumerate(paragraphs[:usable]):
            questions.extend((qa["id"], qa["question"], a, p) for qa in paragraph["qas"])
    if not questions:
        raise ConfigError(
            f"no article of the {len(chosen)} chosen has {longest} paragraphs or more; use more articles "
            "or shorter documents"
        )
    if queries is not None:
        count = positive_int(queries, "queries")
        questions = random.Random(seed).sample(questions, min(count, len(questions)))
    buckets = []
    for k in sizes:
        corpus = {
            f"{a}-{start}-{k}": " ".join(texts[start : start + k])
            for a, texts in enumerate(kept)
            for start in range(0, len(texts), k)
        }
        qrels = {qid: {f"{a}-{p - p % k}-{k}": 1} for qid, _, a, p in questions}
        buckets.append(LengthBucket(k, corpus, {qid: text for qid, text, _, _ in questions}, Qrels(qrels)))
    return buckets
