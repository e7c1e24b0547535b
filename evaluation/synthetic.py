"""Synthetic chunk-excerpt sets: an LLM writes questions and copies the excerpts that answer them.

The procedure of Chroma's ``SyntheticEvaluation`` ("Evaluating Chunking Strategies for Retrieval") and of
Jadon et al. 2025 (synthetic QA with reasoning models): for each attempt, take a random slice of a corpus
(``slice_chars`` characters), show it to the LLM together with up to ``previous_shown`` questions already
accepted for that corpus, and ask for JSON ``{"question": ..., "references": [verbatim excerpts]}``. Each
excerpt is located in the corpus near the slice with :func:`evaluation.locate.locate_excerpt`, and the
stored reference is the corpus's own text at that place.

An attempt is dropped, and counted in ``GenerationReport.dropped`` under its reason, when:

- ``bad_json``: the reply holds no JSON object with a non-empty ``question`` string and a non-empty list of
  ``references`` strings (a ``<think>...</think>`` block and text around the JSON are ignored);
- ``too_many_excerpts``: more than ``max_excerpts`` references (Chroma's limit is 5);
- ``unlocated_excerpt``: some reference cannot be located (exact, whitespace/case-insensitive or fuzzy);
- ``duplicate``: the question repeats one already accepted for the same corpus: the same words ignoring case,
  or, with an ``encoder``, embedding cosine > ``duplicate_threshold`` (default 0.78, Chroma's value), or,
  without one, rapidfuzz ``token_set_ratio`` > ``duplicate_threshold`` (default 90, on 0-100);
- ``poor_excerpt``: only with an ``encoder`` and ``min_reference_similarity`` set: the least similar
  reference has cosine to the question below it (Chroma's ``filter_poor_excerpts``, 0.36 there).

The LLM is anything with ``complete(messages) -> str`` (:class:`rag.core.llm.ChatClient`);
:class:`rag.core.llm.OpenAICompatibleClient` talks to any OpenAI-compatible ``/chat/completions``
endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz, process, utils

from evaluation.datasets import ChunkEvalSet, Excerpt, ExcerptQuestion
from evaluation.locate import locate_excerpt
from rag.core.errors import ConfigError
from rag.core.llm import ChatClient
from rag.core.validation import non_negative_int, positive_int

__all__ = [
    "DROP_REASONS",
    "GenerationReport",
    "TextEncoder",
    "build_messages",
    "generate_questions",
    "parse_reply",
]

logger = logging.getLogger(__name__)

DROP_REASONS = ("bad_json", "too_many_excerpts", "unlocated_excerpt", "duplicate", "poor_excerpt")

# Excerpts are searched in the slice widened by this many characters on each side, in case the LLM
# completes a word cut at the slice edge.
_LOCATE_MARGIN = 200

SYSTEM_PROMPT = """You write test questions for a document search system.
You receive a passage from a document. Write ONE question that a reader of the whole document could ask \
and that the passage answers, then copy the parts of the passage that contain the answer.

Rules:
- The question must make sense on its own: do not refer to "the passage", "the text" or "the excerpt".
- Copy every reference from the passage character for character: same words, spelling, punctuation and \
capitalization. Do not paraphrase, shorten with "...", or glue separate parts together.
- Give from 1 to {max_excerpts} references, each at least a full sentence or a meaningful phrase. Use \
several only when the answer is spread over separate places.
- Do not ask anything close to the earlier questions listed by the user.
- Reply with JSON only, nothing else: {{"question": "...", "references": ["...", "..."]}}"""

USER_PROMPT = """Earlier questions (do not repeat them):
{previous}

Passage:
<<<
{passage}
>>>"""


class TextEncoder(Protocol):
    """What duplicate filtering needs from an encoder; :class:`rag.encoders.dense.DenseEncoder` fits."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class GenerationReport:
    """Accepted questions, dropped attempts per reason (:data:`DROP_REASONS`), and how excerpts were found
    (``located``: counts per :func:`~evaluation.locate.locate_excerpt` method)."""

    questions: list[ExcerptQuestion]
    dropped: dict[str, int]
    attempts: int = 0
    located: dict[str, int] = field(default_factory=dict)

    def to_eval_set(self, corpora: Mapping[str, str]) -> ChunkEvalSet:
        """A :class:`ChunkEvalSet` to save with :func:`evaluation.datasets.save_chunk_eval`."""
        used = {q.corpus_id for q in self.questions}
        return ChunkEvalSet(
            corpora={c: corpora[c] for c in corpora if c in used}, questions=list(self.questions)
        )


def build_messages(passage: str, previous: Sequence[str], max_excerpts: int = 5) -> list[dict[str, str]]:
    """The chat messages of one generation attempt."""
    listed = "\n".join(f"- {q}" for q in previous) if previous else "(none)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(max_excerpts=max_excerpts)},
        {"role": "user", "content": USER_PROMPT.format(previous=listed, passage=passage)},
    ]


def parse_reply(reply: str) -> tuple[str, list[str]] | None:
    """``(question, references)`` from an LLM reply, or None when it holds no valid JSON answer.

    Reasoning blocks (``<think>...</think>``), code fences and text around the JSON object are ignored.
    """
    text = re.sub(r"<think>.*?</think>", "", reply, flags=re.DOTALL)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        question = obj.get("question")
        references = obj.get("references", obj.get("excerpts"))
        if not isinstance(question, str) or not question.strip():
            return None
        if not isinstance(references, list) or not references:
            return None
        if not all(isinstance(r, str) and r.strip() for r in references):
            return None
        return question.strip(), list(references)
    return None


def generate_questions(
    corpora: Mapping[str, str],
    client: ChatClient,
    n: int,
    seed: int = 0,
    *,
    slice_chars: int = 4000,
    max_excerpts: int = 5,
    max_attempts: int | None = None,
    fuzzy_threshold: float | None = 90.0,
    encoder: TextEncoder | None = None,
    duplicate_threshold: float | None = None,
    min_reference_similarity: float | None = None,
    previous_shown: int = 20,
) -> GenerationReport:
    """Generate up to ``n`` excerpt questions over ``corpora`` (see the module docstring for the procedure).

    Corpora take turns (the one with the fewest accepted questions goes next), so questions spread evenly.
    Generation stops after ``n`` accepted questions or ``max_attempts`` LLM calls (default ``3 * n + 10``).
    The same seed, corpora and LLM replies give the same slices and the same result.

    :raises rag.core.errors.ChatEndpointError: when the client cannot reach its endpoint (not a drop).
    """
    non_negative_int(n, "n (questions to generate)")
    positive_int(slice_chars, "slice_chars")
    positive_int(max_excerpts, "max_excerpts")
    if max_attempts is not None:
        non_negative_int(max_attempts, "max_attempts")
    non_negative_int(previous_shown, "previous_shown")
    if min_reference_similarity is not None and encoder is None:
        raise ConfigError("min_reference_similarity needs an encoder to compare questions and excerpts")
    ids = [c for c in corpora if corpora[c].strip()]
    if not ids and n > 0:
        raise ConfigError("no non-empty corpus to generate questions from")
    attempts_cap = 3 * n + 10 if max_attempts is None else max_attempts
    if duplicate_threshold is None:
        duplicate_threshold = 0.78 if encoder is not None else 90.0

    rng = random.Random(seed)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    located: dict[str, int] = {}
    accepted: dict[str, list[ExcerptQuestion]] = {c: [] for c in ids}
    vectors: dict[str, list[np.ndarray]] = {c: [] for c in ids}
    tried = dict.fromkeys(ids, 0)
    questions: list[ExcerptQuestion] = []
    attempts = 0
    while len(questions) < n and attempts < attempts_cap:
        corpus_id = min(ids, key=lambda c: (len(accepted[c]), tried[c]))
        tried[corpus_id] += 1
        attempts += 1
        text = corpora[corpus_id]
        start = rng.randint(0, max(0, len(text) - slice_chars))
        end = min(len(text), start + slice_chars)
        previous = [q.question for q in accepted[corpus_id]]
        shown = rng.sample(previous, previous_shown) if len(previous) > previous_shown else previous
        reply = client.complete(build_messages(text[start:end], shown, max_excerpts))

        parsed = parse_reply(reply)
        if parsed is None:
            _drop(dropped, "bad_json", corpus_id, reply[:200])
            continue
        question, excerpts = parsed
        if len(excerpts) > max_excerpts:
            _drop(dropped, "too_many_excerpts", corpus_id, f"{len(excerpts)} references")
            continue
        hits = _locate_all(text, excerpts, start, end, fuzzy_threshold)
        if hits is None:
            _drop(dropped, "unlocated_excerpt", corpus_id, question)
            continue
        references, methods = hits
        vector = None
        if encoder is not None:
            vector = _unit(encoder.encode_queries([question])[0])
        if _is_duplicate(question, vector, accepted[corpus_id], vectors[corpus_id], duplicate_threshold):
            _drop(dropped, "duplicate", corpus_id, question)
            continue
        if encoder is not None and vector is not None and min_reference_similarity is not None:
            ref_vectors = encoder.encode_documents([r.content for r in references])
            worst = float(np.min(np.asarray([_unit(v) for v in ref_vectors]) @ vector))
            if worst < min_reference_similarity:
                _drop(dropped, "poor_excerpt", corpus_id, f"{question} (similarity {worst:.2f})")
                continue
        for method in methods:
            located[method] = located.get(method, 0) + 1
        item = ExcerptQuestion(question, corpus_id, references)
        accepted[corpus_id].append(item)
        if vector is not None:
            vectors[corpus_id].append(vector)
        questions.append(item)
    if len(questions) < n:
        logger.warning(
            "generated %d of %d questions in %d attempts; dropped %s", len(questions), n, attempts, dropped
        )
    return GenerationReport(questions=questions, dropped=dropped, attempts=attempts, located=located)


def _locate_all(
    text: str, excerpts: list[str], start: int, end: int, fuzzy_threshold: float | None
) -> tuple[list[Excerpt], list[str]] | None:
    """Located excerpts sorted by position (each span once) and the method that found each, or None."""
    lo = max(0, start - _LOCATE_MARGIN)
    window = text[lo : min(len(text), end + _LOCATE_MARGIN)]
    found: dict[tuple[int, int], Excerpt] = {}
    methods = []
    for excerpt in excerpts:
        hit = locate_excerpt(window, excerpt, fuzzy_threshold)
        if hit is None:
            return None
        s, e, method = hit
        methods.append(method)
        # Keyed by span: an excerpt given twice is kept once.
        found[(lo + s, lo + e)] = Excerpt(text[lo + s : lo + e], lo + s, lo + e)
    return [found[key] for key in sorted(found)], methods


def _is_duplicate(
    question: str,
    vector: np.ndarray | None,
    previous: list[ExcerptQuestion],
    previous_vectors: list[np.ndarray],
    threshold: float,
) -> bool:
    if not previous:
        return False
    key = " ".join(question.casefold().split())
    if any(" ".join(p.question.casefold().split()) == key for p in previous):
        return True
    if vector is not None and previous_vectors:
        return bool(np.max(np.stack(previous_vectors) @ vector) > threshold)
    best = process.extractOne(
        question, [p.question for p in previous], scorer=fuzz.token_set_ratio, processor=utils.default_process
    )
    return best is not None and best[1] > threshold


def _unit(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _drop(dropped: dict[str, int], reason: str, corpus_id: str, detail: str) -> None:
    dropped[reason] += 1
    logger.debug("dropped (%s) for corpus %s: %s", reason, corpus_id, detail)
