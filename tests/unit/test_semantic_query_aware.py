"""Semantic compression's query modes: ``allocate`` (keep budget shared by relevance) and ``blind``."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import regex
from haystack import Document

from compressors.base import split_words
from compressors.semantic import SemanticCompressor
from rag.core.errors import ConfigError
from rag.core.tokenizers import get_token_counter

RELEVANT = "Aspirin relieves a tension headache within an hour for most adults."
OTHER = "The valley stayed dry in 1987."
TEXT = f"{OTHER} {RELEVANT} {OTHER.replace('valley', 'coastal')}"
QUERY = "Does aspirin relieve a headache?"


class BagEncoder:
    """A fake sentence encoder: each word hashed to one of 64 dimensions (a bag of words), so a text is
    similar to a query in proportion to the words they share. Records the size of every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        vectors[:, 0] = 0.1
        for row, text in enumerate(texts):
            for word in regex.findall(r"\w+", text.lower()):
                vectors[row, 1 + zlib.crc32(word.encode()) % 63] += 1.0
        return vectors

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode_documents(texts)


def fake(**settings: object) -> SemanticCompressor:
    compressor = SemanticCompressor(**settings)  # type: ignore[arg-type]
    compressor._encoder = BagEncoder()  # type: ignore[assignment]
    return compressor


def words(text: str | None) -> list[str]:
    text = text or ""
    return [text[u.start : u.end] for u in split_words(text)]


def test_allocate_keeps_the_relevant_sentence_and_cuts_the_others() -> None:
    documents = [Document(id="d", content=TEXT)]
    out = fake(ratio=0.4, query_mode="allocate", protect_query=False).run(documents, QUERY)
    kept = out["documents"][0].content
    relevant = set(words(RELEVANT))
    kept_words = words(kept)
    # Apart from the protected number (it goes last), all that is kept comes from the relevant sentence,
    # and most of that sentence is kept.
    assert all(w in relevant for w in kept_words if w != "1987")
    assert sum(w in kept_words for w in relevant) > 0.6 * len(relevant)
    # The query-blind mode spreads its cuts over the context instead.
    blind = fake(ratio=0.4, query_mode="blind", protect_query=False).run(documents, QUERY)
    blind_words = words(blind["documents"][0].content)
    assert sum(w in relevant for w in blind_words) < sum(w in relevant for w in kept_words)


def test_allocate_scores_everything_in_one_batched_call_with_the_query() -> None:
    compressor = fake(ratio=0.5, query_mode="allocate", cache_size=0)
    compressor.run([Document(id="a", content=TEXT), Document(id="b", content=RELEVANT)], QUERY)
    calls = compressor._encoder.calls  # type: ignore[attr-defined]
    assert len(calls) == 1 and QUERY in calls[0] and len(calls[0]) > 20  # sentences, deletions, query


@pytest.mark.parametrize("mode", ["allocate", "blind"])
@pytest.mark.parametrize("ratio", [0.8, 0.5, 0.35, 0.1])
def test_target_met_within_one_word_and_provenance_exact(mode: str, ratio: float) -> None:
    source = TEXT + "\n" + RELEVANT.upper() + " 42 units, Dr. Smith said."
    cut = source.index("\n")
    documents = [
        Document(id=f"c{k}", content=source[s:e], meta={"source_id": "src", "start": s, "end": e})
        for k, (s, e) in enumerate([(0, cut), (cut + 1, len(source))])
    ]
    out = fake(ratio=ratio, query_mode=mode).run(documents, QUERY)
    metrics = out["metrics"]
    assert metrics["query_tokens_after"] <= metrics["target_tokens"]
    count = get_token_counter("cl100k_base").count
    for doc in out["documents"]:
        spans = doc.meta["provenance"]
        assert " ".join(source[s:e] for _, s, e in spans) == doc.content
        assert all(a[2] <= b[1] for a, b in zip(spans, spans[1:], strict=False))
    # Within one word: putting back any dropped word of the kept text would overshoot (the drop loop
    # drops as few as the target takes), so the cut is at most one word's tokens past the target.
    widest = max(count(" " + w) for doc in documents for w in words(doc.content or ""))
    assert metrics["query_tokens_after"] > metrics["target_tokens"] - widest - 1


def test_protected_words_go_last_or_with_their_sentence() -> None:
    documents = [Document(id="d", content=TEXT)]
    # The default keeps the contract: protected words go after every other word of the context ...
    default = fake(ratio=0.35).run(documents, QUERY)["documents"][0].content or ""
    assert "1987" in default
    # ... with protect_in_sentence, last within their own sentence, so they go with an irrelevant one.
    inside = fake(ratio=0.35, protect_in_sentence=True).run(documents, QUERY)["documents"][0].content or ""
    assert "1987" not in inside and "Aspirin" in inside


def test_blind_mode_does_not_depend_on_the_query() -> None:
    documents = [Document(id="d", content=TEXT)]
    compressor = fake(ratio=0.5, query_mode="blind", protect_query=False)
    first = compressor.run(documents, QUERY)["documents"][0].content
    assert compressor.run(documents, "When was the summer dry?")["documents"][0].content == first


def test_bad_query_settings_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="query_mode must be one of blind, allocate"):
        SemanticCompressor(query_mode="smart")
    with pytest.raises(ConfigError, match="spread must be a number >= 0"):
        SemanticCompressor(spread=-1)
    with pytest.raises(ConfigError, match="query_impact must be a number >= 0"):
        SemanticCompressor(query_impact="high")  # type: ignore[arg-type]
