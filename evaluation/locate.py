"""Find where an excerpt (typically copied by an LLM, not always faithfully) sits in a corpus.

Three tries, from strict to loose:

1. ``exact``: the excerpt occurs verbatim (first occurrence).
2. ``normalized``: the excerpt's words, in order, separated by any whitespace, ignoring case (a regex of the
   escaped words joined by ``\\s+``, ``re.IGNORECASE``). Catches re-wrapped lines, doubled spaces, case.
3. ``fuzzy``: the best window of the corpus by rapidfuzz's ``partial_ratio`` (normalized Indel similarity
   of the excerpt against every corpus window of its length, case-insensitive), accepted when the score is
   at least ``fuzzy_threshold`` (0-100). The window has the excerpt's length, so a typo that changes the
   length cuts it short or shifts it: it is widened to whole words at both ends, and to a punctuation mark
   that ends (or starts) the excerpt right after (before) it.

>>> locate_excerpt("The quick brown fox.", "QUICK  brown")
(4, 15, 'normalized')
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz

from rag.core.errors import ConfigError

__all__ = ["locate_excerpt"]

# How far a fuzzy match may be widened to reach a word boundary.
_MAX_WORD_EXTENSION = 30


def locate_excerpt(
    corpus: str, excerpt: str, fuzzy_threshold: float | None = 90.0
) -> tuple[int, int, str] | None:
    """``(start, end, method)`` of ``excerpt`` in ``corpus``, or ``None`` when it cannot be found.

    ``corpus[start:end]`` is the located text (the corpus's own spelling, which may differ from the
    excerpt's). ``method`` is ``"exact"``, ``"normalized"`` or ``"fuzzy"``. An empty or blank excerpt is
    never found. ``fuzzy_threshold=None`` turns the fuzzy step off.
    """
    if fuzzy_threshold is not None and not 0 < fuzzy_threshold <= 100:
        raise ConfigError(f"fuzzy_threshold must be in (0, 100] or None, got {fuzzy_threshold!r}")
    words = excerpt.split()
    if not words:
        return None
    start = corpus.find(excerpt)
    if start >= 0:
        return start, start + len(excerpt), "exact"
    pattern = r"\s+".join(re.escape(word) for word in words)
    match = re.search(pattern, corpus, flags=re.IGNORECASE)
    if match is not None:
        return match.start(), match.end(), "normalized"
    if fuzzy_threshold is None:
        return None
    return _fuzzy(corpus, " ".join(words), fuzzy_threshold)


def _fuzzy(corpus: str, needle: str, threshold: float) -> tuple[int, int, str] | None:
    if len(needle) > len(corpus):
        return None
    # Lower-casing is only safe for offsets when it keeps every length (it does not for a few letters, 'İ').
    haystack = corpus.lower()
    if len(haystack) == len(corpus):
        needle = needle.lower()
    else:
        haystack = corpus
    alignment = fuzz.partial_ratio_alignment(needle, haystack, score_cutoff=threshold)
    if alignment is None:
        return None
    start, end = alignment.dest_start, alignment.dest_end
    # Widen to whole words, then drop whitespace at the edges.
    limit = max(0, start - _MAX_WORD_EXTENSION)
    while start > limit and corpus[start - 1].isalnum() and corpus[start].isalnum():
        start -= 1
    limit = min(len(corpus), end + _MAX_WORD_EXTENSION)
    while end < limit and corpus[end - 1].isalnum() and corpus[end].isalnum():
        end += 1
    # A window cut short by a deletion in the excerpt loses its last (or first) character: take back a
    # closing (or opening) punctuation mark the excerpt has.
    if not needle[-1].isalnum() and end < len(corpus) and corpus[end - 1] != corpus[end] == needle[-1]:
        end += 1
    if not needle[0].isalnum() and start > 0 and corpus[start] != corpus[start - 1] == needle[0]:
        start -= 1
    while start < end and corpus[start].isspace():
        start += 1
    while end > start and corpus[end - 1].isspace():
        end -= 1
    if start >= end:
        return None
    return start, end, "fuzzy"
