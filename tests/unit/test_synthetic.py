"""Excerpt location on perturbed text, and synthetic generation with a scripted fake LLM.

The HTTP client it runs on in practice is tested in test_llm.py, generation through it included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluation.datasets import load_chunk_eval, save_chunk_eval
from evaluation.locate import locate_excerpt
from evaluation.synthetic import generate_questions, parse_reply
from rag.core.errors import ConfigError

CORPUS = (
    "The lighthouse was built in 1852 on the northern cliff.\n"
    "Its lamp burned whale oil until 1880, when kerosene replaced it.\n\n"
    "The keeper, Anna Berg, kept the light for forty years.\n"
    "In 1925 the station was automated and the keeper's house became a museum."
)

# --- locate_excerpt -----------------------------------------------------------------------------------


def test_locate_exact() -> None:
    excerpt = "The keeper, Anna Berg, kept the light for forty years."
    start, end, method = locate_excerpt(CORPUS, excerpt) or (0, 0, "")
    assert method == "exact"
    assert CORPUS[start:end] == excerpt


def test_locate_whitespace_and_case_changes() -> None:
    # The LLM re-wrapped the line break into a space and changed case.
    excerpt = "ITS LAMP burned whale oil until 1880,   when kerosene replaced it. The keeper"
    hit = locate_excerpt(CORPUS, excerpt)
    assert hit is not None
    start, end, method = hit
    assert method == "normalized"
    assert (
        CORPUS[start:end] == "Its lamp burned whale oil until 1880, when kerosene replaced it.\n\nThe keeper"
    )


def test_locate_typo_is_fuzzy_and_widened_to_words() -> None:
    excerpt = "In 1925 the staton was automated and the keepers house became a museum."
    hit = locate_excerpt(CORPUS, excerpt)
    assert hit is not None
    start, end, method = hit
    assert method == "fuzzy"
    assert CORPUS[start:end] == "In 1925 the station was automated and the keeper's house became a museum."


def test_locate_typo_early_in_excerpt_widens_the_end() -> None:
    # The window has the excerpt's (shorter) length, so it stops inside "light".
    hit = locate_excerpt(CORPUS, "Th keeper, Anna Berg, kept the light")
    assert hit is not None
    assert (CORPUS[hit[0] : hit[1]], hit[2]) == ("The keeper, Anna Berg, kept the light", "fuzzy")


def test_locate_gives_up() -> None:
    assert locate_excerpt(CORPUS, "Bananas are rich in potassium and grow in the tropics.") is None
    assert locate_excerpt(CORPUS, "   ") is None
    assert locate_excerpt(CORPUS, "In 1925 the staton was automated", fuzzy_threshold=None) is None


# --- parsing replies ----------------------------------------------------------------------------------


def test_parse_reply_variants() -> None:
    good = {"question": "When?", "references": ["In 1925"]}
    assert parse_reply(json.dumps(good)) == ("When?", ["In 1925"])
    wrapped = "<think>maybe {not json}</think>Sure:\n```json\n" + json.dumps(good) + "\n```"
    assert parse_reply(wrapped) == ("When?", ["In 1925"])
    assert parse_reply("no json here") is None
    assert parse_reply('{"question": "When?", "references": []}') is None
    assert parse_reply('{"question": "", "references": ["x"]}') is None
    assert parse_reply('{"question": "When?", "references": [3]}') is None


# --- generation with a fake LLM -----------------------------------------------------------------------


class ScriptedLLM:
    """Returns scripted replies in order and records the messages it was sent."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def complete(self, messages: list[dict[str, str]]) -> str:
        self.calls.append(messages)
        return self.replies[len(self.calls) - 1]


def _reply(question: str, *references: str) -> str:
    return json.dumps({"question": question, "references": list(references)})


def test_generation_drops_and_counts_each_reason() -> None:
    replies = [
        _reply("When was the lighthouse built?", "The lighthouse was built in 1852 on the northern cliff."),
        "Here is a question: When was it automated?",  # not JSON
        _reply("What did the lamp burn?", "Its lamp burned olive oil from Spain."),  # not in the text
        _reply("When was this lighthouse built?", "The lighthouse was built in 1852"),  # near-duplicate
        _reply("Too many?", "a", "b", "c"),  # more than max_excerpts
        "<think>The keeper part.</think>"
        + _reply(
            "Who kept the light and for how long?",
            "the keeper, anna berg, kept the light for   forty years.",  # case and spaces perturbed
            "In 1925 the staton was automated",  # typo
        ),
    ]
    llm = ScriptedLLM(replies)
    report = generate_questions({"lighthouse": CORPUS}, llm, n=2, slice_chars=10_000, max_excerpts=2)
    assert [q.question for q in report.questions] == [
        "When was the lighthouse built?",
        "Who kept the light and for how long?",
    ]
    assert report.dropped == {
        "bad_json": 1,
        "too_many_excerpts": 1,
        "unlocated_excerpt": 1,
        "duplicate": 1,
        "poor_excerpt": 0,
    }
    assert report.attempts == 6
    assert report.located == {"exact": 1, "normalized": 1, "fuzzy": 1}
    second = report.questions[1]
    assert [r.content for r in second.references] == [
        "The keeper, Anna Berg, kept the light for forty years.",
        "In 1925 the station was automated",
    ]
    for ref in second.references:
        assert CORPUS[ref.start : ref.end] == ref.content
    # Accepted questions are shown to the LLM afterwards, so it does not repeat them.
    assert "When was the lighthouse built?" in llm.calls[1][-1]["content"]
    assert "When was the lighthouse built?" not in llm.calls[0][-1]["content"]


def test_generation_stops_at_max_attempts() -> None:
    llm = ScriptedLLM(["garbage"] * 5)
    report = generate_questions({"lighthouse": CORPUS}, llm, n=3, max_attempts=5)
    assert report.questions == []
    assert report.dropped["bad_json"] == 5


WORDS = (
    "amber basil cedar delta ember fjord garnet harbor iris juniper kelp lotus maple nectar onyx opal".split()
)


class SliceQuoter:
    """A fake LLM quoting the first full line of the passage it is shown, asking in fresh words each time."""

    def __init__(self) -> None:
        self.passages: list[str] = []

    def complete(self, messages: list[dict[str, str]]) -> str:
        match = re.search(r"<<<\n(.*)\n>>>", messages[-1]["content"], re.DOTALL)
        assert match is not None
        passage = match.group(1)
        self.passages.append(passage)
        line = passage.split("\n")[1]
        k = len(self.passages) % 8
        return _reply(f"{WORDS[2 * k]} {WORDS[2 * k + 1]}?", line)


def test_slices_are_seeded_and_spread_over_corpora(tmp_path: Path) -> None:
    corpora = {
        "numbers": "".join(f"Line {i} says the number {i * 7} is here.\n" for i in range(300)),
        "letters": "".join(f"Row {i} holds the letter {chr(65 + i % 26)} now.\n" for i in range(300)),
    }
    first, again, other = SliceQuoter(), SliceQuoter(), SliceQuoter()
    report = generate_questions(corpora, first, n=6, seed=1, slice_chars=300)
    generate_questions(corpora, again, n=6, seed=1, slice_chars=300)
    generate_questions(corpora, other, n=6, seed=2, slice_chars=300)
    assert first.passages == again.passages
    assert first.passages != other.passages
    assert all(len(p) == 300 for p in first.passages)
    assert sorted(q.corpus_id for q in report.questions) == ["letters"] * 3 + ["numbers"] * 3
    # The generated set saves and loads back with every span holding its content.
    save_chunk_eval(report.to_eval_set(corpora), tmp_path / "synthetic")
    loaded = load_chunk_eval(tmp_path / "synthetic")
    assert len(loaded.questions) == 6
    assert loaded.mismatches == []


class KeywordEncoder:
    """One-hot over a few keywords: questions sharing their keyword are near-identical."""

    words = ("built", "lamp", "keeper", "museum")

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[1.0 if w in t.lower() else 0.0 for w in self.words] + [0.1] for t in texts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def test_embedding_duplicates_and_poor_excerpts() -> None:
    replies = [
        _reply("When was it built?", "The lighthouse was built in 1852 on the northern cliff."),
        _reply("In which year was the tower built, and where?", "on the northern cliff"),  # same keyword
        _reply("Who was the keeper?", "Its lamp burned whale oil until 1880"),  # excerpt off topic
        _reply("What fuel did the lamp burn?", "Its lamp burned whale oil until 1880"),
    ]
    report = generate_questions(
        {"lighthouse": CORPUS},
        ScriptedLLM(replies),
        n=2,
        slice_chars=10_000,
        encoder=KeywordEncoder(),
        min_reference_similarity=0.36,
    )
    assert [q.question for q in report.questions] == ["When was it built?", "What fuel did the lamp burn?"]
    assert report.dropped["duplicate"] == 1
    assert report.dropped["poor_excerpt"] == 1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n": -1}, "n (questions to generate) must be a non-negative integer, got -1"),
        ({"n": True}, "n (questions to generate) must be a non-negative integer, got True"),
        ({"slice_chars": 0}, "slice_chars must be a positive integer, got 0"),
        ({"max_excerpts": 2.0}, "max_excerpts must be a positive integer, got 2.0"),
        ({"max_attempts": -3}, "max_attempts must be a non-negative integer, got -3"),
    ],
)
def test_bad_arguments_name_the_value(arguments: dict[str, Any], named: str) -> None:
    llm = ScriptedLLM([])
    settings: dict[str, Any] = {"n": 1, **arguments}
    with pytest.raises(ConfigError, match=re.escape(named)):
        generate_questions({"lighthouse": CORPUS}, llm, **settings)
    assert llm.calls == []
