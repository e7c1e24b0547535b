"""Chunkers: cut a document into passages that know their exact character span in the source.

Every chunker returns ``list[Chunk]`` in source order, and for every chunk ``source[c.start:c.end] ==
c.text``. Token-level evaluation relies on these offsets, so they are computed, never searched for.

Shared rules:

- **Sizes** are measured by a token counter (:mod:`rag.core.tokenizers`; ``"cl100k_base"`` by default)
  or in characters. A chunk holds at most ``size`` tokens, counted on the chunk's own text, except a
  piece that cannot be split further (one token of the fixed chunker; one character of the recursive
  chunker, e.g. an emoji of 3 cl100k tokens when ``size`` is 2).
- **Whitespace.** Chunks that would hold only whitespace are dropped. The recursive and semantic
  chunkers also strip whitespace at both ends of every chunk (as LangChain does), moving ``start`` and
  ``end`` inward. So every *non-whitespace* character of the source lies in at least one chunk; the
  fixed chunker, which does not strip, also covers whitespace between non-whitespace text (and all
  whitespace for tiktoken counters, whose tokens tile the text).
- **Overlap** is the number of tokens (or characters) consecutive chunks may share. The fixed chunker
  shares exactly ``overlap`` tokens; the recursive chunker shares whole pieces whose total is at most
  ``overlap``, as LangChain does.

Chunkers:

- :class:`FixedTokenChunker`: windows of ``size`` tokens starting every ``size - overlap`` tokens (the
  method of Chroma's "Evaluating Chunking Strategies for Retrieval", with exact offsets).
- :class:`RecursiveChunker`: split on the first separator present (paragraphs, lines, sentences,
  words, characters), recurse into pieces still too long, then merge neighbouring pieces up to ``size``
  (LangChain's ``RecursiveCharacterTextSplitter`` method). Separators are kept, so no character is
  lost: by default a separator's whitespace starts the next piece and the rest of it ends the previous
  one; ``separator_placement="start"`` puts all of it at the start of the next piece, and
  ``preset="chroma"`` reproduces the chunks of Chroma's ``RecursiveTokenChunker``.
- :class:`SemanticChunker`: recursive pieces of about ``piece_size`` tokens, embedded, then grouped into
  contiguous chunks of at most ``size`` tokens maximizing within-chunk similarity (the method of
  Chroma's ``ClusterSemanticChunker``).

>>> chunker = RecursiveChunker(size=12, length="chars")
>>> [(c.text, c.start, c.end) for c in chunker.chunk("One two. Three four five.")]
[('One two.', 0, 8), ('Three four', 9, 19), ('five.', 20, 25)]
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from rag.core.config import (
    RECURSIVE_PRESETS,
    SEPARATOR_PLACEMENTS,
    SeparatorPreset,
    check_chunk_overlap,
    check_chunking_config,
)
from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.readers import RESERVED_META_KEYS
from rag.core.tokenizers import DEFAULT_TOKENIZER, TokenCounter, get_token_counter
from rag.core.validation import non_negative_int, positive_int

if TYPE_CHECKING:
    from haystack import Document

    from rag.encoders.dense import DenseEncoder

DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", " ", "")
UNITS = ("tokens", "chars")
METHODS = ("none", "fixed", "recursive", "semantic")


@dataclass(frozen=True)
class Chunk:
    """A passage of a source text: ``source[start:end] == text``."""

    text: str
    start: int
    end: int


@runtime_checkable
class Chunker(Protocol):
    """Cuts a text into chunks with exact offsets; ``config()`` gives settings :func:`make_chunker` reads."""

    def chunk(self, text: str) -> list[Chunk]: ...

    def config(self) -> dict[str, Any]: ...


def _check_size(size: object, name: str = "size") -> int:
    return positive_int(size, f"chunk {name}")


def _check_overlap(overlap: object, size: int) -> int:
    return check_chunk_overlap(non_negative_int(overlap, "chunk overlap"), size)


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Move ``start`` and ``end`` inward past whitespace; an all-whitespace span becomes empty."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


class FixedTokenChunker:
    """Windows of ``size`` tokens; each window starts ``overlap`` tokens before the previous one ended.

    Tokens are those of the whole text (:meth:`TokenCounter.offsets`); a window's span runs from the
    start of its first token to the end of its last. So windows start every ``size - overlap`` tokens
    and consecutive windows share exactly ``overlap`` tokens, as in Chroma's ``FixedTokenChunker``.
    One exception keeps ``count(chunk.text) <= size``: when a window's text, tokenized on its own, has
    more than ``size`` tokens (a multi-byte character split between tokens at the window's end, or a
    rare BPE difference), the window gives back tokens at its end until it fits (never below one token),
    and the next window starts ``overlap`` tokens before the shortened end. Whitespace-only windows are
    dropped; nothing is stripped otherwise.

    :param size: tokens per chunk.
    :param overlap: tokens shared by consecutive chunks (``0 <= overlap < size``).
    :param tokenizer: token counter name (``"chars"`` cuts by characters).
    """

    def __init__(self, size: int, overlap: int = 0, tokenizer: str = DEFAULT_TOKENIZER) -> None:
        self.size = _check_size(size)
        self.overlap = _check_overlap(overlap, self.size)
        self.tokenizer = tokenizer
        self._counter: TokenCounter | None = None

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = get_token_counter(self.tokenizer)
        return self._counter

    def config(self) -> dict[str, Any]:
        unit = "chars" if self.tokenizer == "chars" else "tokens"
        return {
            "method": "fixed",
            "size": self.size,
            "overlap": self.overlap,
            "unit": unit,
            "tokenizer": self.tokenizer,
        }

    def chunk(self, text: str) -> list[Chunk]:
        counter = self.counter
        spans = counter.offsets(text)
        chunks: list[Chunk] = []
        first = 0
        while first < len(spans):
            last = min(first + self.size, len(spans))  # window = tokens first .. last - 1
            while last > first + 1 and counter.count(text[spans[first][0] : spans[last - 1][1]]) > self.size:
                last -= 1
            start, end = spans[first][0], spans[last - 1][1]
            piece = text[start:end]
            if piece and not piece.isspace():
                chunks.append(Chunk(piece, start, end))
            if last == len(spans):
                break
            first = max(last - self.overlap, first + 1)
        return chunks


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    length: int


class RecursiveChunker:
    """Split on the first separator present, recurse into pieces still too long, merge small neighbours.

    :param size: maximum chunk length, in tokens or characters (``length``).
    :param overlap: at most this much of a chunk's end is repeated at the start of the next, in whole
        pieces (``0 <= overlap < size``).
    :param separators: tried in order; ``""`` splits into single characters. ``None``:
        :data:`DEFAULT_SEPARATORS` (or the preset's).
    :param length: ``"tokens"`` (measured by ``tokenizer``) or ``"chars"``.
    :param tokenizer: token counter name, used when ``length == "tokens"``.
    :param separator_placement: ``"end"`` (default): a separator's whitespace starts the piece after the
        cut, its other characters end the piece before it, so ``". "`` leaves the period with its
        sentence; ``"start"``: the whole separator starts the piece after the cut (LangChain's and
        Chroma's ``keep_separator=True``). See :func:`_split_keeping`.
    :param preset: a name in :data:`~rag.core.config.RECURSIVE_PRESETS` that sets separators and
        placement (give neither then). ``"chroma"`` reproduces the chunks of Chroma's
        ``RecursiveTokenChunker``: its separators ``["\\n\\n", "\\n", ".", "?", "!", " ", ""]``,
        ``start`` placement, and its rule that only a piece *shorter* than ``size`` is kept whole.
        ``benchmarks/chroma_chunker_parity.py`` compares the two on Chroma's corpora. Our own guarantees
        still hold under the preset (exact offsets, no chunk over ``size``, no chunk inside the previous
        one), where Chroma's code could differ only on text that breaks them.

    >>> text = "Hi there. How are you? Fine."
    >>> [c.text for c in RecursiveChunker(12, length="chars", separators=[". ", " "]).chunk(text)]
    ['Hi there.', 'How are', 'you? Fine.']
    >>> [c.text for c in RecursiveChunker(12, length="chars", preset="chroma").chunk(text)]
    ['Hi there', '. How are', 'you', '? Fine', '.']
    """

    def __init__(
        self,
        size: int,
        overlap: int = 0,
        separators: Sequence[str] | None = None,
        length: str = "tokens",
        tokenizer: str = DEFAULT_TOKENIZER,
        separator_placement: str | None = None,
        preset: str | None = None,
    ) -> None:
        self.size = _check_size(size)
        self.overlap = _check_overlap(overlap, self.size)
        if preset is not None:
            if preset not in RECURSIVE_PRESETS:
                raise ConfigError(f"unknown separator preset {preset!r}; allowed: {list(RECURSIVE_PRESETS)}")
            if separators is not None or separator_placement is not None:
                raise ConfigError(
                    f"preset {preset!r} sets separators and their placement itself; give neither with it"
                )
            chosen = RECURSIVE_PRESETS[preset]
        else:
            chosen = SeparatorPreset(tuple(DEFAULT_SEPARATORS), "end")
        separators = chosen.separators if separators is None else separators
        if isinstance(separators, str) or not separators or not all(isinstance(s, str) for s in separators):
            raise ConfigError(
                f"separators must be a non-empty list of strings (e.g. {list(DEFAULT_SEPARATORS)}), "
                f"got {separators!r}"
            )
        placement = chosen.placement if separator_placement is None else separator_placement
        if placement not in SEPARATOR_PLACEMENTS:
            raise ConfigError(
                f"separator_placement must be one of {list(SEPARATOR_PLACEMENTS)}, got {placement!r}"
            )
        if length not in UNITS:
            raise ConfigError(f"length must be one of {list(UNITS)}, got {length!r}")
        self.preset = preset
        self.separators = tuple(separators)
        self.separator_placement = placement
        # Longest piece kept whole when splitting; LangChain keeps only pieces shorter than size.
        self._whole_piece_limit = self.size - 1 if chosen.shorter_than_size else self.size
        self.length = length
        self.tokenizer = tokenizer
        self._measure: Callable[[str], int] | None = None

    @property
    def measure(self) -> Callable[[str], int]:
        if self._measure is None:
            self._measure = len if self.length == "chars" else get_token_counter(self.tokenizer).count
        return self._measure

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": "recursive",
            "size": self.size,
            "overlap": self.overlap,
            "unit": self.length,
        }
        if self.length == "tokens":
            out["tokenizer"] = self.tokenizer
        if self.preset is not None:
            out["preset"] = self.preset
            return out
        if self.separators != DEFAULT_SEPARATORS:
            out["separators"] = list(self.separators)
        if self.separator_placement != "end":
            out["separator_placement"] = self.separator_placement
        return out

    def chunk(self, text: str) -> list[Chunk]:
        chunks: list[Chunk] = []
        for start, end in self._split(text, 0, len(text), self.separators):
            # A window whose new piece was only whitespace strips down to a part of the previous chunk.
            if chunks and chunks[-1].start <= start and end <= chunks[-1].end:
                continue
            chunks.append(Chunk(text[start:end], start, end))
        return chunks

    def _split(self, text: str, start: int, end: int, separators: tuple[str, ...]) -> list[tuple[int, int]]:
        segment = text[start:end]
        index = next(
            (i for i, sep in enumerate(separators) if sep == "" or sep in segment), len(separators) - 1
        )
        separator, finer = separators[index], separators[index + 1 :]
        out: list[tuple[int, int]] = []
        fitting: list[_Piece] = []
        for piece_start, piece_end in _split_keeping(segment, separator, start, self.separator_placement):
            length = self.measure(text[piece_start:piece_end])
            if length <= self._whole_piece_limit:
                fitting.append(_Piece(piece_start, piece_end, length))
                continue
            out.extend(self._merge(text, fitting, finer))
            fitting = []
            if finer:
                out.extend(self._split(text, piece_start, piece_end, finer))
            else:  # no finer separator: keep the piece whole rather than lose text
                out.extend(self._emit(text, [_Piece(piece_start, piece_end, length)], finer)[0])
        out.extend(self._merge(text, fitting, finer))
        return out

    def _merge(self, text: str, pieces: list[_Piece], finer: tuple[str, ...]) -> list[tuple[int, int]]:
        """Greedily join neighbouring pieces up to ``size``, keeping up to ``overlap`` of the tail."""
        out: list[tuple[int, int]] = []
        window: list[_Piece] = []
        total = 0
        for piece in pieces:
            if window and total + piece.length > self.size:
                spans, keep_from = self._emit(text, window, finer)
                out.extend(spans)
                total -= sum(p.length for p in window[:keep_from])
                window = window[keep_from:]
                while window and (total > self.overlap or total + piece.length > self.size):
                    total -= window.pop(0).length
            window.append(piece)
            total += piece.length
        if window:
            out.extend(self._emit(text, window, finer)[0])
        return out

    def _emit(
        self, text: str, window: list[_Piece], finer: tuple[str, ...]
    ) -> tuple[list[tuple[int, int]], int]:
        """Stripped spans for a window of pieces, and the index of the window's first piece that may be
        carried over as overlap (the first piece of the last span).

        Token counts are not additive (BPE merges across piece boundaries, and stripping can even add a
        token: " mau0:" has fewer tokens than "mau0:"), so the exact length is checked: a window too long
        gives back pieces at its end, which form the next span; a single piece still too long is split
        with the ``finer`` separators (and nothing of it is carried over).
        """
        out: list[tuple[int, int]] = []
        first = 0
        keep_from = 0
        while first < len(window):
            last = len(window)
            while True:
                start, end = _strip_span(text, window[first].start, window[last - 1].end)
                fits = start == end or self.measure(text[start:end]) <= self.size
                if fits or last == first + 1:
                    break
                last -= 1
            if not fits and finer:
                out.extend(self._split(text, window[first].start, window[first].end, finer))
                keep_from = last
            else:
                if start < end:
                    out.append((start, end))
                keep_from = first
            first = last
        return out, keep_from


def _split_keeping(
    segment: str, separator: str, offset: int, placement: str = "end"
) -> list[tuple[int, int]]:
    """Spans of ``segment`` cut at every ``separator``, shifted by ``offset``; no character is lost.

    ``placement="end"``: the separator's leading non-whitespace characters end the piece before the cut
    and its whitespace starts the piece after it: ``". "`` leaves the period with its sentence and the
    space with the next one. BPE tokenizers attach spaces to the following word (``" word"`` is one
    token), so piece token counts then add up to about the count of the joined text.
    ``placement="start"``: the whole separator starts the piece after the cut (``"."`` of ``"a. b"`` gives
    ``"a"``, ``". b"``), as LangChain's splitter with ``keep_separator=True``.

    >>> _split_keeping("a. b", ". ", 0), _split_keeping("a. b", ". ", 0, "start")
    ([(0, 2), (2, 4)], [(0, 1), (1, 4)])
    """
    if separator == "":
        return [(offset + i, offset + i + 1) for i in range(len(segment))]
    if placement == "start":
        keep_left = 0
    else:
        keep_left = next((i for i, ch in enumerate(separator) if ch.isspace()), len(separator))
    cuts = [0]
    position = 0
    while (found := segment.find(separator, position)) != -1:
        cuts.append(found + keep_left)
        position = found + len(separator)
    cuts.append(len(segment))
    return [(offset + a, offset + b) for a, b in zip(cuts, cuts[1:], strict=False) if a < b]


class SemanticChunker:
    """Contiguous groups of small pieces that are similar to each other, each group at most ``size`` tokens.

    The text is cut into pieces of at most ``piece_size`` tokens by :class:`RecursiveChunker`; every piece
    is embedded; the cosine similarity of every pair of pieces is centred by subtracting the mean
    similarity of all distinct pairs (so joining unrelated pieces costs, as in Chroma's
    ``ClusterSemanticChunker``). Dynamic programming then picks the split into contiguous groups that
    maximizes the sum, over groups, of the centred similarities of the pairs inside each group, subject to
    every group's text holding at most ``size`` tokens. A chunk spans from its first piece's start to its
    last piece's end (whitespace between pieces included).

    :param size: maximum tokens per chunk.
    :param encoder: a :class:`rag.encoders.dense.DenseEncoder`, or a model name to load one lazily.
    :param tokenizer: token counter name.
    :param piece_size: maximum tokens per piece (``<= size``).
    """

    def __init__(
        self,
        size: int,
        encoder: DenseEncoder | str = DEFAULT_DENSE_MODEL,
        tokenizer: str = DEFAULT_TOKENIZER,
        piece_size: int = 50,
    ) -> None:
        self.size = _check_size(size)
        self.piece_size = _check_size(piece_size, "piece_size")
        if self.piece_size > self.size:
            raise ConfigError(f"piece_size ({piece_size}) must not exceed size ({size})")
        if isinstance(encoder, str):
            if not encoder:
                raise ConfigError("encoder model name must be a non-empty string")
            self.model = encoder
            self._encoder: DenseEncoder | None = None
        elif hasattr(encoder, "encode_documents") and hasattr(encoder, "model_name"):
            self.model = str(encoder.model_name)
            self._encoder = encoder
        else:
            raise ConfigError(f"encoder must be a DenseEncoder or a model name, got {type(encoder).__name__}")
        self.tokenizer = tokenizer
        self._pieces = RecursiveChunker(self.piece_size, 0, length="tokens", tokenizer=tokenizer)

    @property
    def encoder(self) -> DenseEncoder:
        if self._encoder is None:
            from rag.encoders.dense import DenseEncoder

            self._encoder = DenseEncoder(self.model)
        return self._encoder

    def config(self) -> dict[str, Any]:
        return {
            "method": "semantic",
            "size": self.size,
            "unit": "chars" if self.tokenizer == "chars" else "tokens",
            "tokenizer": self.tokenizer,
            "model": self.model,
            "piece_size": self.piece_size,
        }

    def chunk(self, text: str) -> list[Chunk]:
        pieces = self._pieces.chunk(text)
        if len(pieces) <= 1:
            return pieces
        vectors = np.asarray(self.encoder.encode_documents([p.text for p in pieces]), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1.0, norms)
        similarity = vectors @ vectors.T
        similarity -= similarity[np.triu_indices(len(pieces), k=1)].mean()
        count = get_token_counter(self.tokenizer).count
        groups = _best_grouping(
            similarity,
            fits=lambda first, last: count(text[pieces[first].start : pieces[last].end]) <= self.size,
        )
        return [
            Chunk(text[pieces[first].start : pieces[last].end], pieces[first].start, pieces[last].end)
            for first, last in groups
        ]


def _best_grouping(similarity: np.ndarray, fits: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """Contiguous groups ``(first, last)`` (inclusive) maximizing the summed pairwise similarity inside
    groups. ``fits(first, last)`` must be monotone: once a group is too big, extending it stays too big.
    A single piece always forms a valid group."""
    n = similarity.shape[0]
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    start_of = [0] * n  # best[i + 1] ends with the group start_of[i] .. i
    for last in range(n):
        reward = 0.0
        for first in range(last, -1, -1):
            if first < last:
                if not fits(first, last):
                    break
                reward += float(similarity[first, first + 1 : last + 1].sum())
            score = best[first] + reward
            if score > best[last + 1]:
                best[last + 1] = score
                start_of[last] = first
    groups = []
    last = n - 1
    while last >= 0:
        groups.append((start_of[last], last))
        last = start_of[last] - 1
    return groups[::-1]


_KEYS = {
    "none": ("method",),
    "fixed": ("method", "size", "overlap", "unit", "tokenizer"),
    "recursive": ("method", "size", "overlap", "unit", "tokenizer", "separators"),
    "semantic": ("method", "size", "unit", "tokenizer", "model", "piece_size"),
}


def make_chunker(config: Mapping[str, Any] | None) -> Chunker | None:
    """Build a chunker from a config mapping; ``None`` or ``{"method": "none"}`` means no chunking.

    Keys: ``method`` (``none | fixed | recursive | semantic``), ``size``, ``overlap`` (fixed, recursive),
    ``unit`` (``tokens`` default, or ``chars``), ``tokenizer`` (when unit is tokens), ``separators``
    (recursive), ``model`` and ``piece_size`` (semantic). Every chunker's ``config()`` round-trips. The
    mapping is checked by :func:`~rag.core.config.check_chunking_config`, the check the config loader runs.

    >>> make_chunker({"method": "fixed", "size": 100, "overlap": 20}).config()["tokenizer"]
    'cl100k_base'
    """
    if config is None:
        return None
    settings = check_chunking_config(config)
    method = settings["method"]
    if method == "none":
        return None
    size = settings["size"]
    unit = settings.get("unit", "tokens")
    tokenizer = settings.get("tokenizer") or (DEFAULT_TOKENIZER if unit == "tokens" else "chars")
    if method == "fixed":
        return FixedTokenChunker(size, settings.get("overlap", 0), tokenizer)
    if method == "recursive":
        return RecursiveChunker(
            size,
            settings.get("overlap", 0),
            settings.get("separators"),
            unit,
            tokenizer if unit == "tokens" else DEFAULT_TOKENIZER,
            separator_placement=settings.get("separator_placement"),
            preset=settings.get("preset"),
        )
    model = settings.get("model", DEFAULT_DENSE_MODEL)
    return SemanticChunker(size, model, tokenizer, settings.get("piece_size", 50))


_CHUNK_ID_SUFFIX = re.compile(r"#[0-9]+\Z")


def chunk_documents(documents: Sequence[Document], chunker: Chunker | None) -> list[Document]:
    """One new Document per chunk, with id ``f"{doc.id}#{k}"`` (k from 0) and meta = a copy of the
    document's meta plus ``source_id``, ``start``, ``end`` (character offsets in the source content) and
    ``chunk_index``. With ``chunker=None`` each document becomes one chunk keeping its id, spanning its
    whole content. A document whose text yields no chunk (only whitespace) yields no Document. Inputs are
    never modified.

    Rules that keep ids and metadata unambiguous (each refused with a :class:`ConfigError` that names the
    document and the fix):

    - Document ids must be unique.
    - With a chunker, a document id may not end in ``#`` and digits (``d03#0``): it could equal a chunk
      id of another document (``d03`` chunked), now or after a later ``rag add``, and ``rag delete``
      would remove both. So no chunk id ever equals a document id or another chunk id. Without a
      chunker no id is generated and any id is accepted.
    - A document's meta may already hold a bookkeeping key (:data:`RESERVED_META_KEYS`) only with the
      value chunking would write; a different value is refused, never overwritten. (The readers refuse
      user fields with these names at read time, naming the file and line.)
    """
    from haystack import Document  # heavy (imports torch): not needed to build or check a chunker

    _check_ids(documents, chunked=chunker is not None)
    out: list[Document] = []
    for doc in documents:
        content = doc.content
        if content is None:
            raise ValueError(f"document {doc.id!r} has no text content; only text documents can be chunked")
        if chunker is None:
            meta = _chunk_meta(doc, doc.id, Chunk(content, 0, len(content)), 0)
            out.append(Document(id=doc.id, content=content, meta=meta))
            continue
        for k, piece in enumerate(chunker.chunk(content)):
            chunk_id = f"{doc.id}#{k}"
            out.append(Document(id=chunk_id, content=piece.text, meta=_chunk_meta(doc, chunk_id, piece, k)))
    return out


def _chunk_meta(doc: Document, chunk_id: str, piece: Chunk, k: int) -> dict[str, Any]:
    meta = copy.deepcopy(doc.meta)
    ours = {"source_id": doc.id, "start": piece.start, "end": piece.end, "chunk_index": k}
    for key, value in ours.items():
        if key in meta and meta[key] != value:
            raise ConfigError(
                f"document {doc.id!r}: meta[{key!r}] = {meta[key]!r} would be overwritten by the chunk "
                f"bookkeeping value {value!r} (chunk {chunk_id!r}); the keys {list(RESERVED_META_KEYS)} are "
                f"reserved: rename that field (for example to 'user_{key}')"
            )
    meta.update(ours)
    return meta


def _check_ids(documents: Sequence[Document], chunked: bool) -> None:
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            raise ConfigError(f"document id {doc.id!r} appears twice; document ids must be unique")
        seen.add(doc.id)
    if not chunked:
        return
    bad = [doc.id for doc in documents if _CHUNK_ID_SUFFIX.search(doc.id)]
    if not bad:
        return
    first = bad[0]
    base, _, k = first.rpartition("#")
    clash = (
        f"chunk {k} of document {base!r}, also in this corpus, gets the same id"
        if base in seen
        else f"chunk {k} of a document {base!r}, added now or later, would get the same id"
    )
    shown = ", ".join(repr(i) for i in bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
    raise ConfigError(
        f"document id {first!r} ends in '#<digits>', the form of chunk ids ('<document id>#<k>'): {clash}, "
        f"so deleting one would delete both. Rename such documents (e.g. {first!r} -> "
        f"{base + '_' + k!r}) or index without chunking (chunking: method: none). "
        f"{len(bad)} document id(s) of this form: {shown}"
    )
