"""Training pairs for retrievers: where (query, positive) pairs come from, and hard negatives for them.

Every trainer (``rag train colbert | contrastive | finetune``) reads its pairs through
:func:`load_pairs`, whose source string names one of three kinds:

- ``beir:DIR`` or ``beir:DIR:SPLIT``: the judged (query, document) pairs of a BEIR split (default
  ``train``; SciFact has 809 training queries). Documents are ``title + " " + text``, the text the
  evaluation encodes.
- ``squad:FILE``: each question of a SQuAD-format JSON file with the paragraph that holds its answer.
- ``crop:CORPUS``: pairs without labels: a query-like span of 4-16 consecutive words cropped from each
  passage of any corpus ``rag index`` reads, with the whole passage as the positive.

:func:`mine_hard_negatives` then adds, to each pair, documents that BM25 or a dense encoder ranks high
for the query but that are not its positive.

>>> pairs = cropped_pairs(["the quick brown fox jumps over the lazy dog again and again"], seed=1)
>>> pairs[0].query in pairs[0].positive
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, InputFormatError
from rag.core.validation import positive_int

SOURCE_KINDS = ("beir", "squad", "crop")
NEGATIVE_METHODS = ("bm25", "dense", "none")


@dataclass(frozen=True)
class TrainingPair:
    """A query, the passage that answers it, and optional hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    positive_id: str | None = None


def load_pairs(source: str, limit: int | None = None, seed: int = 0) -> list[TrainingPair]:
    """Pairs from ``beir:DIR[:SPLIT]``, ``squad:FILE`` or ``crop:CORPUS`` (see the module docstring).

    ``limit`` keeps a random sample of that many pairs (drawn with ``seed``), in source order.
    """
    kind, sep, location = source.partition(":") if isinstance(source, str) else ("", "", "")
    if not sep or kind not in SOURCE_KINDS or not location:
        raise ConfigError(
            f"training pairs source {source!r} is not understood; write beir:DIR[:SPLIT] (a BEIR folder), "
            "squad:FILE (a SQuAD-format JSON file) or crop:CORPUS (pairs cropped from any corpus)"
        )
    if kind == "beir":
        folder, split = beir_location(location)
        pairs = beir_pairs(folder, split)
    elif kind == "squad":
        pairs = squad_pairs(location)
    else:
        pairs = cropped_pairs(read_passages(location), seed=seed)
    if not pairs:
        raise InputFormatError(f"training pairs source {source!r} yielded no pairs", location)
    return _sample(pairs, limit, seed)


def beir_location(location: str) -> tuple[Path, str]:
    """``DIR`` or ``DIR:SPLIT``; a colon is a split separator only when ``DIR`` alone is a folder."""
    folder, sep, split = location.rpartition(":")
    if sep and split and Path(folder).is_dir():
        return Path(folder), split
    return Path(location), "train"


def source_passages(source: str, pairs: Sequence[TrainingPair] = ()) -> list[str]:
    """The passages to mine hard negatives from, for pairs of ``source``: a BEIR folder's whole corpus,
    a cropped corpus's passages, else (SQuAD) the distinct positives of ``pairs``, sorted."""
    kind, _, location = source.partition(":")
    if kind == "beir":
        return list(beir_texts(beir_location(location)[0] / "corpus.jsonl").values())
    if kind == "crop":
        return read_passages(location)
    return sorted({pair.positive for pair in pairs})


def _sample(pairs: list[TrainingPair], limit: int | None, seed: int) -> list[TrainingPair]:
    if limit is None or limit >= len(pairs):
        return pairs
    positive_int(limit, "pair limit")
    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def beir_pairs(beir_dir: str | Path, split: str = "train") -> list[TrainingPair]:
    """One pair per judged (query, document) with a positive grade, in qrels order."""
    from evaluation.datasets import load_beir

    dataset = load_beir(beir_dir, split)
    judged = {doc_id for grades in dataset.qrels.values() for doc_id, grade in grades.items() if grade > 0}
    texts = beir_texts(dataset.corpus_path, judged)
    pairs = []
    for query_id, grades in dataset.qrels.items():
        for doc_id, grade in grades.items():
            if grade > 0 and doc_id in texts:
                pairs.append(TrainingPair(dataset.queries[query_id], texts[doc_id], positive_id=doc_id))
    return pairs


def beir_texts(corpus_path: Path, wanted: set[str] | None = None) -> dict[str, str]:
    """``title + " " + text`` of the corpus documents (all of them, or only the ``wanted`` ids)."""
    from rag.core.readers import iter_jsonl
    from rag.encoders.dense import join_title

    texts: dict[str, str] = {}
    for _, record in iter_jsonl(corpus_path):
        doc_id = str(record.get("_id"))
        if wanted is None or doc_id in wanted:
            texts[doc_id] = join_title(record.get("title"), record.get("text") or "")
    return texts


def squad_pairs(path: str | Path, limit: int | None = None, seed: int = 0) -> list[TrainingPair]:
    """Each question of a SQuAD v1/v2 file with its paragraph (unanswerable v2 questions are skipped)."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        articles = data["data"]
    except FileNotFoundError:
        raise ConfigError(f"SQuAD file not found: {file}") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputFormatError("not a SQuAD-format JSON file (a {'data': [...]} object)", str(file)) from None
    pairs = []
    for article in articles:
        for number, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                if qa.get("is_impossible") or not qa.get("question"):
                    continue
                paragraph_id = f"{article.get('title', '')}#{number}"
                pairs.append(TrainingPair(qa["question"], context, positive_id=paragraph_id))
    return _sample(pairs, limit, seed)


def read_passages(path: str | Path) -> list[str]:
    """``title + " " + text`` of every document of a corpus that ``rag index`` reads."""
    from rag.core.readers import read_corpus
    from rag.encoders.dense import join_title

    report = read_corpus(path)
    return [join_title(doc.meta.get("title"), doc.content or "") for doc in report.documents if doc.content]


def cropped_pairs(
    passages: Sequence[str], seed: int = 0, min_words: int = 4, max_words: int = 16
) -> list[TrainingPair]:
    """A span of ``min_words``-``max_words`` consecutive words of each passage as its query.

    Passages shorter than ``2 * min_words`` words are skipped: their crop would be most of the passage.
    """
    positive_int(min_words, "min_words")
    if max_words < min_words:
        raise ConfigError(f"max_words ({max_words}) must be at least min_words ({min_words})")
    rng = random.Random(seed)
    pairs = []
    for number, passage in enumerate(passages):
        words = passage.split()
        if len(words) < 2 * min_words:
            continue
        length = rng.randint(min_words, min(max_words, len(words) // 2))
        start = rng.randint(0, len(words) - length)
        pairs.append(TrainingPair(" ".join(words[start : start + length]), passage, positive_id=str(number)))
    return pairs


def mine_hard_negatives(
    pairs: Sequence[TrainingPair],
    corpus_texts: Mapping[str, str] | Sequence[str],
    method: str = "bm25",
    per_query: int = 1,
    skip_top: int = 0,
    depth: int = 30,
    model: Any = None,
    seed: int = 0,
) -> list[TrainingPair]:
    """Each pair with ``per_query`` negatives drawn from the top ``depth`` results of its query.

    The first ``skip_top`` results are passed over (they are often unjudged positives), and so is the
    pair's own positive (by text). ``method`` is ``bm25`` (bm25s, the project's BM25 defaults),
    ``dense`` (``model``: a :class:`rag.encoders.dense.DenseEncoder` or a model name, default the
    bundled MiniLM) or ``none`` (pairs returned unchanged). Negatives are sampled with ``seed``.
    """
    if method not in NEGATIVE_METHODS:
        raise ConfigError(f"hard negative method {method!r} is not one of {', '.join(NEGATIVE_METHODS)}")
    if method == "none":
        return list(pairs)
    positive_int(per_query, "negatives per query")
    positive_int(depth, "mining depth")
    texts = list(corpus_texts.values()) if isinstance(corpus_texts, Mapping) else list(corpus_texts)
    if not texts:
        raise ConfigError("hard negative mining needs a non-empty corpus")
    queries = [pair.query for pair in pairs]
    ranked = (
        _rank_bm25(texts, queries, depth) if method == "bm25" else _rank_dense(texts, queries, depth, model)
    )
    rng = random.Random(seed)
    mined = []
    for pair, rows in zip(pairs, ranked, strict=True):
        pool = [texts[row] for row in rows[skip_top:] if texts[row] != pair.positive]
        chosen = rng.sample(pool, min(per_query, len(pool)))
        mined.append(replace(pair, negatives=pair.negatives + tuple(chosen)))
    return mined


def _rank_bm25(texts: list[str], queries: list[str], depth: int) -> list[list[int]]:
    from haystack import Document

    from indexers.bm25 import BM25Index

    index = BM25Index.build([Document(id=str(row), content=text) for row, text in enumerate(texts)])
    return [[int(doc_id) for doc_id, _ in hits] for hits in index.search(queries, top_k=depth)]


def _rank_dense(texts: list[str], queries: list[str], depth: int, model: Any) -> list[list[int]]:
    import numpy as np

    from rag.encoders.dense import DenseEncoder

    encoder = model if isinstance(model, DenseEncoder) else DenseEncoder(model or DenseEncoder().model_name)
    documents = encoder.encode_documents(texts)
    scores = encoder.encode_queries(queries) @ documents.T
    k = min(depth, len(texts))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ranked: list[list[int]] = []
    for rows, row_scores in zip(top, scores, strict=True):
        ranked.append(sorted((int(j) for j in rows), key=lambda j: (-float(row_scores[j]), j)))
    return ranked
