"""What every compressor shares: the target, the text units, provenance and token accounting.

A compressor reads the documents retrieved for one query (and the query) and returns one document per
input document, in the same order, with the same id, score and meta, whose ``content`` is the kept text.

**Target.** ``ratio`` is kept tokens / original tokens over the whole context of the query (all its
documents together), in (0, 1]; ``budget`` is the tokens the LLM reads of the question plus the
compressed context (the prompt template aside), so the context gets ``budget - tokens(question)``. A
budget not larger than the question is an error, as is a ratio outside (0, 1]. Given both, the tighter
wins; given neither, ``ratio`` 0.5. Tokens are counted by the accounting tokenizer
(:func:`rag.core.tokenizers.get_token_counter`; default ``cl100k_base``).

**Units.** Word compressors drop *words* (:func:`split_words`): a run of letters and marks with inner
apostrophes or hyphens (``don't``, ``COVID-19``), a number (``3.14``, ``12%``), or one grapheme of
anything else (a punctuation mark, an emoji with its modifiers). Scripts written without spaces
(Chinese, Japanese kana) have no words to find without a segmenter, so each Han / kana character is one
word. Right-to-left text (Arabic, Hebrew) is handled in logical order, the order of the string; display
direction does not matter to offsets. Sentences (:func:`split_sentences`) end at ``. ! ?`` followed by
white space (not the period of ``Dr.``, ``e.g.``, ``et al.`` or an initial such as ``P.``), at ``。！？``
and at line breaks.

**Output text and provenance.** The kept units of a document form *pieces*: maximal runs of consecutive
kept units, each copied from the document with its own inner white space; pieces are joined by one
space. ``meta["provenance"]`` lists ``[source_id, start, end]`` for each piece, character offsets into
the *source* document, the contract :mod:`rag.evaluate` scores: a chunk (``meta`` source_id / start /
end) maps into its source document, a document without them into itself, and a document compressed
before (it has ``meta["provenance"]``) through its own spans. So ``source[start:end]`` is exactly a piece
(or, for a piece that straddles two earlier pieces, a part of it: the joining space comes from no
source). A document that keeps nothing has content ``""`` and provenance ``[]``; it stays in the list,
so ranks and ids do not move.

**Accounting.** Every output document carries ``meta["compression"]``: the compressor, the tokenizer,
its own ``tokens_before`` / ``tokens_after``, and the query's totals (``query_tokens_before``,
``query_tokens_after``, ``ratio`` = after / before, ``target_tokens``, ``seconds``). The component also
returns them as ``metrics``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

import regex
from haystack import Document, component

from rag.core.errors import ConfigError
from rag.core.tokenizers import DEFAULT_TOKENIZER, TokenCounter, get_token_counter
from rag.core.validation import check_query, check_top_k, is_int

DEFAULT_RATIO = 0.5

# Han ideographs and kana one character each (no segmenter); numbers; words of letters and marks with
# inner ' ’ or -; any other grapheme (punctuation, symbols, emoji with modifiers and joiners).
_WORDS = regex.compile(
    r"(?P<cjk>[\p{Han}\p{Hiragana}\p{Katakana}])"
    r"|(?P<number>\p{N}+(?:[.,:/]\p{N}+)*%?)"
    r"|(?P<word>[\p{L}\p{M}\p{N}]+(?:['’\-][\p{L}\p{M}\p{N}]+)*)"
    r"|(?P<symbol>(?!\s)\X)"
)
# A sentence ends after . ! ? (and closing quotes/brackets) followed by white space, after 。！？, or at a
# line break. Written by hand: nltk's punkt needs a data download, which fails offline.
_SENTENCE_END = regex.compile(
    # A period after a common abbreviation or an initial (Dr. Smith, P. falciparum, e.g. this) ends none.
    r"(?:(?<!\b(?:Dr|Mr|Mrs|Ms|Prof|Sr|Jr|St|vs|al|Fig|fig|No|Eq|e\.g|i\.e|\p{Lu}))\.+|[!?]+)"
    r"[\"'”’)\]]*(?=\s)|[。！？]+|\n"
)


class CompressorOutput(TypedDict):
    documents: list[Document]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Unit:
    """A span ``[start, end)`` of a document's content that a compressor keeps or drops whole."""

    start: int
    end: int
    kind: str  # word | number | cjk | symbol | sentence
    sentence: int = 0  # index of its sentence in the document


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, without their surrounding white space.

    >>> text = "One. Two!\\nThree"
    >>> [text[s:e] for s, e in split_sentences(text)]
    ['One.', 'Two!', 'Three']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _add_stripped(text, start, match.end(), spans)
        start = match.end()
    _add_stripped(text, start, len(text), spans)
    return spans


def _add_stripped(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


def split_words(text: str, start: int = 0, end: int | None = None, sentence: int = 0) -> list[Unit]:
    """The word units of ``text[start:end]`` (module docstring, "Units"), in content offsets.

    >>> text = "Don't pay 12.5% 🙂!"
    >>> [(text[u.start:u.end], u.kind) for u in split_words(text)]
    [("Don't", 'word'), ('pay', 'word'), ('12.5%', 'number'), ('🙂', 'symbol'), ('!', 'symbol')]
    """
    stop = len(text) if end is None else end
    return [Unit(m.start(), m.end(), str(m.lastgroup), sentence) for m in _WORDS.finditer(text, start, stop)]


def sentence_words(text: str) -> list[Unit]:
    """Every word unit of ``text``, each tagged with the index of its sentence."""
    units: list[Unit] = []
    for index, (start, end) in enumerate(split_sentences(text)):
        units.extend(split_words(text, start, end, index))
    return units


# --- the target ------------------------------------------------------------------------------------------


def check_ratio(ratio: Any) -> float | None:
    """``ratio`` if it is a number in (0, 1] (or None), else a ConfigError naming it."""
    if ratio is None:
        return None
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ConfigError(
            f"ratio must be a number in (0, 1] (kept tokens / original tokens), got {ratio!r}; "
            "write e.g. ratio: 0.5"
        )
    return float(ratio)


def check_budget(budget: Any) -> int | None:
    if budget is None:
        return None
    if not is_int(budget) or budget < 1:
        raise ConfigError(
            f"budget must be a positive integer (tokens of the question plus the compressed context), "
            f"got {budget!r}; write e.g. budget: 512"
        )
    return int(budget)


def target_tokens(before: int, query_tokens: int, ratio: float | None, budget: int | None) -> int:
    """The most context tokens to keep (module docstring, "Target")."""
    if ratio is None and budget is None:
        ratio = DEFAULT_RATIO
    limits = []
    if ratio is not None:
        limits.append(math.floor(ratio * before + 1e-9))
    if budget is not None:
        if budget <= query_tokens:
            raise ConfigError(
                f"budget {budget} tokens is not larger than the question ({query_tokens} tokens), so no "
                "context fits; raise budget (it counts the question plus the compressed context) or use ratio"
            )
        limits.append(budget - query_tokens)
    return min(limits)


# --- provenance ------------------------------------------------------------------------------------------


@dataclass
class Origin:
    """Where the characters of a document's content come from: ``segments`` of
    ``(content_start, content_end, source_id, source_start)``, sorted and disjoint; characters outside
    them (the spaces joining earlier pieces) come from no source."""

    segments: list[tuple[int, int, str, int]] = field(default_factory=list)

    @classmethod
    def of(cls, doc: Document) -> Origin:
        meta = doc.meta or {}
        text = doc.content or ""
        if "provenance" in meta:
            return cls._from_provenance(doc, text, meta["provenance"])
        source, start = meta.get("source_id"), meta.get("start")
        if source is not None and isinstance(start, int) and not isinstance(start, bool):
            return cls([(0, len(text), str(source), start)])
        return cls([(0, len(text), str(doc.id), 0)])

    @classmethod
    def _from_provenance(cls, doc: Document, text: str, provenance: Any) -> Origin:
        # A compressed document's content is its pieces joined by one space, piece i = provenance[i].
        segments, position = [], 0
        for entry in provenance if isinstance(provenance, list | tuple) else [None]:
            if not isinstance(entry, list | tuple) or len(entry) != 3 or not all(map(is_int, entry[1:])):
                raise ConfigError(
                    f"document {doc.id!r}: meta['provenance'] must be a list of [source_id, start, end], "
                    f"got {provenance!r}"
                )
            source, start, end = entry
            segments.append((position, position + end - start, str(source), int(start)))
            position += end - start + 1
        if max(position - 1, 0) != len(text):
            raise ConfigError(
                f"document {doc.id!r}: its content ({len(text)} characters) is not its provenance pieces "
                "joined by spaces; drop meta['provenance'] or keep the content a compressor wrote"
            )
        return cls(segments)

    def spans(self, start: int, end: int) -> list[list[Any]]:
        """``[source_id, start, end]`` of the characters of content ``[start, end)`` that have a source."""
        out: list[list[Any]] = []
        first = max(bisect.bisect_right([s[0] for s in self.segments], start) - 1, 0)
        for c_start, c_end, source, s_start in self.segments[first:]:
            if c_start >= end:
                break
            lo, hi = max(start, c_start), min(end, c_end)
            if hi > lo:
                out.append([source, s_start + lo - c_start, s_start + hi - c_start])
        return out


def pieces(units: Sequence[Unit], kept: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive kept units, as content spans (inner white space included)."""
    runs: list[tuple[int, int]] = []
    open_start: int | None = None
    last_end = 0
    for unit, keep in zip(units, kept, strict=True):
        if keep:
            if open_start is None:
                open_start = unit.start
            last_end = unit.end
        elif open_start is not None:
            runs.append((open_start, last_end))
            open_start = None
    if open_start is not None:
        runs.append((open_start, last_end))
    return runs


def compressed_document(doc: Document, runs: Sequence[tuple[int, int]]) -> Document:
    """``doc`` holding only the text of ``runs``, joined by single spaces, with its provenance."""
    text = doc.content or ""
    origin = Origin.of(doc)
    provenance = [span for start, end in runs for span in origin.spans(start, end)]
    meta = {**(doc.meta or {}), "provenance": provenance}
    content = " ".join(text[start:end] for start, end in runs)
    return Document(id=doc.id, content=content, meta=meta, score=doc.score)


# --- dropping units to a target --------------------------------------------------------------------------


@dataclass
class DocUnits:
    """One document's units and whether each is kept."""

    doc: Document
    units: list[Unit]
    kept: list[bool]

    def text(self) -> str:
        content = self.doc.content or ""
        return " ".join(content[s:e] for s, e in pieces(self.units, self.kept))


def unit_costs(counter: TokenCounter, text: str, units: Sequence[Unit]) -> list[int]:
    """Tokens of ``text`` attributed to each unit: a token belongs to the unit it starts in, or, when it
    starts in white space between units (``" word"`` tokens), to the next unit. An estimate of what
    dropping the unit saves; the drop loop checks the exact count."""
    costs = [0] * len(units)
    if not units:
        return costs
    ends = [u.end for u in units]
    for start, _end in counter.offsets(text):
        index = bisect.bisect_right(ends, start)
        costs[min(index, len(units) - 1)] += 1
    return costs


def drop_to_target(
    docs: list[DocUnits],
    order: Sequence[tuple[int, int]],
    target: int,
    count: Callable[[str], int],
    costs: dict[tuple[int, int], int],
) -> int:
    """Drop the units of ``order`` ((doc, unit) pairs, first dropped first) until the documents hold at most
    ``target`` tokens, dropping as few as that takes (so the target is met within one unit). Returns the
    token count reached. Mutates ``docs[i].kept``."""

    def total() -> int:
        return sum(count(d.text()) for d in docs)

    def set_dropped(m: int, value: bool) -> None:
        for i, u in order[:m]:
            docs[i].kept[u] = value

    current = total()
    if current <= target:
        return current
    # Jump with the estimated costs, then step to the exact smallest number of drops.
    need, m = current - target, 0
    while m < len(order) and need > 0:
        need -= costs.get(order[m], 1)
        m += 1
    set_dropped(m, False)
    current = total()
    while current > target and m < len(order):
        i, u = order[m]
        docs[i].kept[u] = False
        m += 1
        current = total()
    while m > 0:
        i, u = order[m - 1]
        docs[i].kept[u] = True
        trial = total()
        if trial > target:
            docs[i].kept[u] = False
            break
        current, m = trial, m - 1
    return current


# --- accounting ------------------------------------------------------------------------------------------


def check_documents(documents: Any, query: Any, top_k: int | None = None) -> tuple[list[Document], str]:
    """The documents and query of a compressor call, checked. Documents that hold no text at all are an
    error (an empty context); no documents at all (a query nothing matched) is not: the compressors
    return an empty list, with accounting of zero tokens. ``top_k`` keeps the first ``top_k`` documents."""
    query = check_query(query)
    if not isinstance(documents, list | tuple) or not all(isinstance(d, Document) for d in documents):
        raise ConfigError(f"documents must be a list of haystack Documents, got {type(documents).__name__}")
    if documents and not any((d.content or "").strip() for d in documents):
        raise ConfigError(
            f"nothing to compress for query {query[:80]!r}: the context is empty ({len(documents)} "
            "documents, none with text); check the retrieval stage before the compressor"
        )
    return list(documents if top_k is None else documents[: check_top_k(top_k)]), query


def account(
    name: str,
    tokenizer: str,
    originals: Sequence[Document],
    outputs: Sequence[Document],
    target: int,
    started: float,
) -> CompressorOutput:
    """Attach the token accounting (module docstring) to the outputs and return the component result."""
    count = get_token_counter(tokenizer).count
    before = [count(d.content or "") for d in originals]
    after = [count(d.content or "") for d in outputs]
    metrics = {
        "compressor": name,
        "tokenizer": tokenizer,
        "query_tokens_before": sum(before),
        "query_tokens_after": sum(after),
        "ratio": sum(after) / sum(before) if sum(before) else 1.0,  # nothing to cut: nothing cut
        "target_tokens": target,
        "seconds": time.perf_counter() - started,
    }
    documents = []
    for doc, b, a in zip(outputs, before, after, strict=True):
        meta = {
            **doc.meta,
            "compression": {**metrics, "tokens_before": b, "tokens_after": a},
        }
        documents.append(Document(id=doc.id, content=doc.content, meta=meta, score=doc.score))
    return {"documents": documents, "metrics": metrics}


def check_tokenizer(tokenizer: Any) -> str:
    """A tokenizer name that loads (a bad one fails at construction, not at the first query)."""
    get_token_counter(tokenizer)
    return str(tokenizer)


class Compressor:
    """What every compressor component shares: the target settings and ``run``.

    A subclass (decorated with ``@component``) calls :meth:`set_target` in its constructor and
    implements :meth:`compress`, which returns one document per input document (module docstring);
    ``run`` checks the input, resolves the target and does the accounting.
    """

    method: ClassVar[str]  # its name in reports and meta["compression"]
    ratio: float | None
    budget: int | None
    tokenizer: str

    def set_target(self, ratio: Any, budget: Any, tokenizer: Any) -> None:
        # Stored under the constructor's names: Haystack serializes a component from them.
        self.ratio = check_ratio(ratio)
        self.budget = check_budget(budget)
        self.tokenizer = check_tokenizer(tokenizer)

    @component.output_types(documents=list[Document], metrics=dict)
    def run(
        self,
        documents: list[Document],
        query: str,
        ratio: float | None = None,
        budget: int | None = None,
        top_k: int | None = None,
    ) -> CompressorOutput:
        """Compress the first ``top_k`` (default all) documents retrieved for ``query``; ``ratio`` /
        ``budget`` given here replace the constructor's."""
        started = time.perf_counter()
        ratio, budget = check_ratio(ratio), check_budget(budget)
        if ratio is None and budget is None:
            ratio, budget = self.ratio, self.budget
        documents, query = check_documents(documents, query, top_k)
        counter = get_token_counter(self.tokenizer)
        before = sum(counter.count(d.content or "") for d in documents)
        target = target_tokens(before, counter.count(query), ratio, budget)
        outputs = self.compress(documents, query, target)
        return account(self.method, self.tokenizer, documents, outputs, target, started)

    def compress(self, documents: list[Document], query: str, target: int) -> list[Document]:
        """The compressed documents, holding at most ``target`` tokens in all."""
        raise NotImplementedError


__all__ = [
    "DEFAULT_RATIO",
    "DEFAULT_TOKENIZER",
    "Compressor",
    "CompressorOutput",
    "DocUnits",
    "Origin",
    "Unit",
    "account",
    "check_budget",
    "check_documents",
    "check_ratio",
    "check_tokenizer",
    "compressed_document",
    "drop_to_target",
    "pieces",
    "sentence_words",
    "split_sentences",
    "split_words",
    "target_tokens",
    "unit_costs",
]
