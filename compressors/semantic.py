"""Semantic compression (TCRA-LLM, Liu et al. 2023): drop the words whose removal moves the meaning least.

A word's *impact* is ``1 - cos(e(sentence), e(sentence without the word))``, with ``e`` a sentence
embedding: the pipeline's own encoder (the config's ``encoder.model``) or any sentence-transformers
model. Words are dropped in order of increasing impact until the target (:mod:`compressors.base`) is met.
Every candidate deletion of every sentence of the query's context is embedded in **one** batched encode
call per scoring round, never one model call per word.

``mode``:

- ``greedy`` (default): impacts are scored once, against the original sentences, and words go in that
  order; one encode call per query.
- ``iterative``: after each round of deletions the shortened sentences are scored again and the next
  round goes by the new impacts; a round drops ``step`` of the tokens to remove (0.25: four rounds).

``query_mode``:

- ``blind``: the paper's method. Every scored word of the context goes in one order, by increasing
  impact; the query plays no part (except through ``protect_query``).
- ``allocate``: the keep budget is shared out by relevance to the query. Each scoring group (a sentence,
  or a window of a long one) gets its cosine similarity to the query's embedding (the query is embedded
  in the same batched call), scaled to ``r`` in [0, 1] over the query's context (most relevant 1, least
  0). Within a group, words are ranked by increasing impact (plus ``query_impact`` times how much the
  deletion lowers the group's similarity to the query), and the word that brings the share of the
  group's tokens dropped so far to ``f`` gets the key ``r - spread * (1 - f)``; words go by increasing
  key. So at any cut, the least relevant sentences are gone whole, the most relevant kept whole, and
  those between keep a share that grows with their relevance, their least meaningful words gone first.
  ``spread`` sets how gradual that is: 0 is extractive (whole sentences by relevance), a large value
  nears one impact order per sentence. Protected words still go after every other word of the context,
  those of the least relevant groups first; with ``protect_in_sentence`` they go last *within their
  group* instead (with its most meaningful word), so an irrelevant sentence does not leave its numbers
  and names behind.

  Measured (benchmarks/compression_evidence.py's setting, 30 tuning questions drawn with another seed,
  gold-evidence recall at ratios 0.8 / 0.5 / 0.35): ``blind`` 0.676 / 0.447 / 0.297; ``allocate``
  (spread 0.25) 0.809 / 0.662 / 0.585, with ``protect_in_sentence`` 0.809 / 0.719 / 0.649; random word
  dropping 0.647 / 0.408 / 0.272. Spread 0.15 to 0.35 changed recall by under 0.01, 0.5 and 1.0 cost
  more at the lower ratios; ``query_impact`` 1 or 3 changed it by under 0.005, so it defaults to 0.
  ``protect_in_sentence`` is off by default: it breaks the promise that protected words go last.

Word classes (``stopwords``, ``punctuation``): ``impact`` scores them like any word; ``drop_first``
removes them before any scored word (cheaper: they are not embedded); ``keep`` protects them.

Protected words (numbers if ``protect_numbers``, capitalised entities if ``protect_entities``: a word
with a capital letter that does not open its sentence, or with two or more capitals; the query's own
non-stop words if ``protect_query``; any word in ``protected``) go last: they are dropped only when every
other word is gone and the target is still not met, so the target always holds (in ``allocate`` mode
with ``protect_in_sentence``: last in their sentence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from haystack import Document, component

from compressors.base import (
    DEFAULT_TOKENIZER,
    Compressor,
    DocUnits,
    Unit,
    pieces,
    split_words,
)
from compressors.vectors import VectorCache
from compressors.words import WordDrop, compress_words
from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.validation import positive_int
from rag.encoders.dense import DenseEncoder

MODES = ("greedy", "iterative")
QUERY_MODES = ("blind", "allocate")
WORD_CLASS_RULES = ("impact", "drop_first", "keep")
DROP_FIRST, SCORED, PROTECTED = 0, 1, 2


@dataclass
class _Scores:
    """What one scoring round measured, by (document, unit)."""

    impact: dict[tuple[int, int], float] = field(default_factory=dict)  # meaning moved by the deletion
    query_loss: dict[tuple[int, int], float] = field(default_factory=dict)  # query similarity it costs
    group: dict[tuple[int, int], int] = field(default_factory=dict)  # the scoring group of each kept unit
    relevance: list[float] = field(default_factory=list)  # each group's similarity to the query


def english_stopwords() -> frozenset[str]:
    """NLTK's English stop words, as bm25s ships them (no nltk data download needed)."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


@component
class SemanticCompressor(Compressor):
    """Drops the least meaningful words of the retrieved documents (module docstring).

    :param model: sentence-transformers model for the sentence embeddings (folder, package or hub id).
    :param ratio: kept / original tokens of the query's context, in (0, 1].
    :param budget: tokens of the question plus the compressed context.
    :param tokenizer: the accounting tokenizer (the LLM's; default ``cl100k_base``).
    :param window: a sentence longer than this many words is scored in windows of this many words
        (the context a deletion is measured in); keeps scoring linear in the text length.
    :param batch_size: texts per forward pass of the encoder.
    :param cache_size: sentence embeddings kept between calls (by text; 0: none). Retrieved chunks
        recur across queries, and impacts of the greedy mode do not depend on the query.
    :param query_mode: ``allocate`` (keep budget shared by relevance to the query) or ``blind`` (the
        paper's query-blind order); module docstring.
    :param spread: in ``allocate`` mode, how gradually relevance turns into words kept (0: whole
        sentences, as extractive compression).
    :param query_impact: in ``allocate`` mode, weight of the query-similarity loss beside the impact.
    :param protect_in_sentence: in ``allocate`` mode, protected words go last within their sentence
        instead of last in the whole context.
    """

    method = "semantic"

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        ratio: float | None = None,
        budget: int | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        mode: str = "greedy",
        step: float = 0.25,
        query_mode: str = "allocate",
        spread: float = 0.25,
        query_impact: float = 0.0,
        protect_in_sentence: bool = False,
        stopwords: str = "impact",
        punctuation: str = "impact",
        protect_numbers: bool = True,
        protect_entities: bool = True,
        protect_query: bool = True,
        protected: list[str] | None = None,
        window: int = 32,
        batch_size: int = 64,
        device: str = "cpu",
        cache_size: int = 50_000,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"semantic compression mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name, value in (("stopwords", stopwords), ("punctuation", punctuation)):
            if value not in WORD_CLASS_RULES:
                raise ConfigError(f"{name} must be one of {', '.join(WORD_CLASS_RULES)}, got {value!r}")
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 1:
            raise ConfigError(
                f"step must be a number in (0, 1] (share of the tokens to drop per round), got {step!r}"
            )
        if query_mode not in QUERY_MODES:
            raise ConfigError(
                f"semantic compression query_mode must be one of {', '.join(QUERY_MODES)}, got {query_mode!r}"
            )
        for name, number in (("spread", spread), ("query_impact", query_impact)):
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {number!r}")
        if protected is not None and not all(isinstance(w, str) for w in protected):
            raise ConfigError(f"protected must be a list of words, got {protected!r}")
        self.model = model
        self.set_target(ratio, budget, tokenizer)
        self.mode = mode
        self.step = float(step)
        self.query_mode = query_mode
        self.spread = float(spread)
        self.query_impact = float(query_impact)
        self.protect_in_sentence = protect_in_sentence
        self.stopwords = stopwords
        self.punctuation = punctuation
        self.protect_numbers = protect_numbers
        self.protect_entities = protect_entities
        self.protect_query = protect_query
        self.protected = list(protected or [])
        self.window = positive_int(window, "window")
        self.batch_size = batch_size
        self.device = device
        self._vectors = VectorCache(cache_size)
        self.cache_size = self._vectors.size
        # Built here so that bad encoder settings fail at construction; the model loads in warm_up.
        self._encoder = DenseEncoder(model=model, batch_size=batch_size, device=device)
        self._stop = english_stopwords()

    def warm_up(self) -> None:
        _ = self._encoder.model

    def compress(self, documents: list[Document], query: str, target: int) -> list[Document]:
        return compress_words(documents, query, target, self.tokenizer, self._drop)

    # --- word classes --------------------------------------------------------------------------------

    def _tiers(self, docs: list[DocUnits], query: str) -> list[list[int]]:
        query_words = set()
        if self.protect_query:
            query_words = {
                query[u.start : u.end].lower()
                for u in split_words(query)
                if u.kind != "symbol" and query[u.start : u.end].lower() not in self._stop
            }
        extra = {w.lower() for w in self.protected}
        tiers = []
        for d in docs:
            text = d.doc.content or ""
            row = []
            for k, unit in enumerate(d.units):
                row.append(
                    self._tier(
                        text,
                        unit,
                        k == 0 or d.units[k - 1].sentence != unit.sentence,
                        query_words,
                        extra,
                    )
                )
            tiers.append(row)
        return tiers

    def _tier(self, text: str, unit: Unit, opens: bool, query_words: set[str], extra: set[str]) -> int:
        word = text[unit.start : unit.end]
        lower = word.lower()
        if lower in extra or lower in query_words:
            return PROTECTED
        if unit.kind == "number" and self.protect_numbers:
            return PROTECTED
        if unit.kind == "word" and self.protect_entities:
            capitals = sum(1 for ch in word if ch.isupper())
            if capitals >= 2 or (capitals == 1 and word[0].isupper() and not opens):
                return PROTECTED
        rule = None
        if unit.kind == "symbol":
            rule = self.punctuation
        elif lower in self._stop:
            rule = self.stopwords
        if rule == "drop_first":
            return DROP_FIRST
        if rule == "keep":
            return PROTECTED
        return SCORED

    # --- impacts -------------------------------------------------------------------------------------

    def impacts(self, docs: list[DocUnits], candidates: list[list[bool]]) -> dict[tuple[int, int], float]:
        """Impact of deleting each candidate unit from its sentence as it now stands (kept units only),
        every deletion of every sentence embedded in one batched call."""
        return self._score(docs, candidates, None).impact

    def _score(self, docs: list[DocUnits], candidates: list[list[bool]], query: str | None) -> _Scores:
        """Impacts of the candidates and, given ``query``, each scoring group's similarity to the query and
        how much each deletion lowers it: sentences, deletions and the query in one batched encode call."""
        texts: list[str] = []
        owners: list[tuple[int, int, int, int]] = []  # (doc, unit, full sentence's text, deletion text)
        scores = _Scores()
        group_texts: list[int] = []  # the text index of each group's full text
        for i, d in enumerate(docs):
            content = d.doc.content or ""
            by_sentence: dict[int, list[int]] = {}
            for u, unit in enumerate(d.units):
                if d.kept[u]:
                    by_sentence.setdefault(unit.sentence, []).append(u)
            groups = [
                members[k : k + self.window]
                for members in by_sentence.values()
                for k in range(0, len(members), self.window)
            ]
            for members in groups:
                chosen = [u for u in members if candidates[i][u]]
                if not chosen and query is None:
                    continue
                full = len(texts)
                texts.append(_join(content, d.units, members, skip=None))
                for u in members:
                    scores.group[(i, u)] = len(group_texts)
                group_texts.append(full)
                if len(members) == 1:  # a one-word sentence: removing it removes all of its meaning
                    owners.extend((i, u, full, -1) for u in chosen)
                    continue
                for u in chosen:
                    owners.append((i, u, full, len(texts)))
                    texts.append(_join(content, d.units, members, skip=u))
        # The query only matters when there are groups to rank or deletions to weigh against it.
        with_query = query is not None and (len(group_texts) > 1 or self.query_impact > 0)
        if with_query:
            texts.append(str(query))
        if not texts:
            return scores
        vectors = self._embed(texts)
        similarity = vectors @ vectors[-1] if with_query else np.ones(len(texts))
        scores.relevance = [float(similarity[t]) for t in group_texts]
        for i, u, full, without in owners:
            if without < 0:
                scores.impact[(i, u)] = 1.0
                scores.query_loss[(i, u)] = float(similarity[full])
            else:
                scores.impact[(i, u)] = float(1.0 - vectors[full] @ vectors[without])
                scores.query_loss[(i, u)] = float(similarity[full] - similarity[without])
        return scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``, the ones not cached in one encode call (:mod:`compressors.vectors`)."""
        return self._vectors.unit_vectors(self._encoder, texts)

    # --- dropping ------------------------------------------------------------------------------------

    def _drop(self, docs: list[DocUnits], query: str, target: int, helper: WordDrop) -> None:
        tiers = self._tiers(docs, query)
        first = [(i, u) for i, row in enumerate(tiers) for u, t in enumerate(row) if t == DROP_FIRST]
        if helper.tokens() <= target:
            return
        if first and helper.to_target(first, target) <= target:
            return
        if self.mode == "greedy":
            helper.to_target(self._order(docs, tiers, query, helper), target)
            return
        initial_need = helper.tokens() - target
        while True:
            need = helper.tokens() - target
            if need <= 0:
                return
            order = self._order(docs, tiers, query, helper)
            per_round = math.ceil(self.step * initial_need)
            if not order or sum(helper.costs.get(p, 1) for p in order) <= per_round or need <= per_round:
                helper.to_target(order, target)
                return
            helper.drop_some(order, per_round)

    def _order(
        self, docs: list[DocUnits], tiers: list[list[int]], query: str, helper: WordDrop
    ) -> list[tuple[int, int]]:
        """Every kept unit not dropped first, in the order to drop them (module docstring)."""
        candidates = [
            [t == SCORED and d.kept[u] for u, t in enumerate(row)] for d, row in zip(docs, tiers, strict=True)
        ]
        protected = [
            (i, u)
            for i, row in enumerate(tiers)
            for u, t in enumerate(row)
            if t == PROTECTED and docs[i].kept[u]
        ]
        protected.reverse()  # protected words, when they must go, go from the end of the context
        if self.query_mode == "blind":
            impact = self._score(docs, candidates, None).impact
            return sorted(impact, key=lambda p: (impact[p], p)) + protected
        scores = self._score(docs, candidates, query)
        low, high = min(scores.relevance, default=0.0), max(scores.relevance, default=0.0)
        relevance = [(r - low) / (high - low) if high > low else 1.0 for r in scores.relevance]
        members: dict[int, list[tuple[int, int]]] = {}
        for p in scores.impact:
            members.setdefault(scores.group[p], []).append(p)
        keys: dict[tuple[int, int], tuple[float, int]] = {}
        for g, units in members.items():
            weight = {p: scores.impact[p] + self.query_impact * max(scores.query_loss[p], 0.0) for p in units}
            units.sort(key=lambda p: (weight[p], p))
            total = sum(helper.costs.get(p, 1) for p in units) or 1
            dropped = 0
            for p in units:
                dropped += helper.costs.get(p, 1)
                # At cut level c (the keys below c are gone) a group of relevance r has lost the share
                # 1 - (r - c) / spread of its scored tokens, clipped to [0, 1]: nothing while r >= c +
                # spread, everything once r <= c; the least meaningful words go first.
                keys[p] = (relevance[g] - self.spread * (1.0 - dropped / total), 0)
        # Protected words: last in their group, or (the default) after every other word of the context,
        # those of the least relevant groups first.
        last = 1 if self.protect_in_sentence else 2
        for p in protected:
            keys[p] = (
                relevance[scores.group[p]] + (0.0 if self.protect_in_sentence else 1.0 + self.spread),
                last,
            )
        return sorted(keys, key=lambda p: (*keys[p], p))


def _join(content: str, units: list[Unit], members: list[int], skip: int | None) -> str:
    kept = [u != skip for u in members]
    chosen = [units[u] for u in members]
    return " ".join(content[s:e] for s, e in pieces(chosen, kept))
