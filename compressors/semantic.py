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

Word classes (``stopwords``, ``punctuation``): ``impact`` scores them like any word; ``drop_first``
removes them before any scored word (cheaper: they are not embedded); ``keep`` protects them.

Protected words (numbers if ``protect_numbers``, capitalised entities if ``protect_entities``: a word
with a capital letter that does not open its sentence, or with two or more capitals; the query's own
non-stop words if ``protect_query``; any word in ``protected``) go last: they are dropped only when every
other word is gone and the target is still not met, so the target always holds.
"""

from __future__ import annotations

import math
from collections import OrderedDict

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
from compressors.words import WordDrop, compress_words
from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.validation import non_negative_int, positive_int
from rag.encoders.dense import DenseEncoder

MODES = ("greedy", "iterative")
WORD_CLASS_RULES = ("impact", "drop_first", "keep")
DROP_FIRST, SCORED, PROTECTED = 0, 1, 2


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
        if protected is not None and not all(isinstance(w, str) for w in protected):
            raise ConfigError(f"protected must be a list of words, got {protected!r}")
        self.model = model
        self.set_target(ratio, budget, tokenizer)
        self.mode = mode
        self.step = float(step)
        self.stopwords = stopwords
        self.punctuation = punctuation
        self.protect_numbers = protect_numbers
        self.protect_entities = protect_entities
        self.protect_query = protect_query
        self.protected = list(protected or [])
        self.window = positive_int(window, "window")
        self.batch_size = batch_size
        self.device = device
        self.cache_size = non_negative_int(cache_size, "cache_size")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # Built here so that bad encoder settings fail at construction; the model loads in warm_up.
        self._encoder = DenseEncoder(model=model, batch_size=batch_size, device=device)
        self._stop = english_stopwords()
        #: encode calls made (tests check that deletions are scored in batches, not per word)
        self.encode_calls = 0

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
        texts: list[str] = []
        owners: list[tuple[int, int, int, int]] = []  # (doc, unit, full sentence's text, deletion text)
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
                if not chosen:
                    continue
                full = len(texts)
                texts.append(_join(content, d.units, members, skip=None))
                if len(members) == 1:  # a one-word sentence: removing it removes all of its meaning
                    owners.append((i, members[0], -1, -1))
                    continue
                for u in chosen:
                    owners.append((i, u, full, len(texts)))
                    texts.append(_join(content, d.units, members, skip=u))
        if not texts:
            return {}
        vectors = self._embed(texts)
        scores: dict[tuple[int, int], float] = {}
        for i, u, full, without in owners:
            scores[(i, u)] = 1.0 if full < 0 else float(1.0 - vectors[full] @ vectors[without])
        return scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``: the ones not in the cache in one encode call, then cached.
        Cached by text, since the same chunks come back for many queries (and at several ratios)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self.encode_calls += 1
            fresh = self._encoder.encode_documents(missing)
            fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
            found = dict(zip(missing, fresh, strict=True))
        else:
            found = {}
        vectors = np.stack([found[t] if t in found else self._cache[t] for t in texts])
        if self.cache_size:
            for text in texts:
                self._cache[text] = found[text] if text in found else self._cache[text]
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vectors

    # --- dropping ------------------------------------------------------------------------------------

    def _drop(self, docs: list[DocUnits], query: str, target: int, helper: WordDrop) -> None:
        tiers = self._tiers(docs, query)
        first = [(i, u) for i, row in enumerate(tiers) for u, t in enumerate(row) if t == DROP_FIRST]
        last = [(i, u) for i, row in enumerate(tiers) for u, t in enumerate(row) if t == PROTECTED]
        last.reverse()  # protected words, when they must go, go from the end of the context
        if helper.tokens() <= target:
            return
        if first and helper.to_target(first, target) <= target:
            return
        if self.mode == "greedy":
            helper.to_target(self._scored_order(docs, tiers) + last, target)
            return
        initial_need = helper.tokens() - target
        while True:
            need = helper.tokens() - target
            if need <= 0:
                return
            order = self._scored_order(docs, tiers)
            per_round = math.ceil(self.step * initial_need)
            if not order or sum(helper.costs.get(p, 1) for p in order) <= per_round or need <= per_round:
                helper.to_target(order + last, target)
                return
            helper.drop_some(order, per_round)

    def _scored_order(self, docs: list[DocUnits], tiers: list[list[int]]) -> list[tuple[int, int]]:
        candidates = [
            [t == SCORED and d.kept[u] for u, t in enumerate(row)] for d, row in zip(docs, tiers, strict=True)
        ]
        scores = self.impacts(docs, candidates)
        return sorted(scores, key=lambda p: (scores[p], p))


def _join(content: str, units: list[Unit], members: list[int], skip: int | None) -> str:
    kept = [u != skip for u in members]
    chosen = [units[u] for u in members]
    return " ".join(content[s:e] for s, e in pieces(chosen, kept))
