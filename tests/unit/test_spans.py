"""Token-level span metrics: hand-computed cases, Chroma's conventions, token units, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.datasets import Excerpt, ExcerptQuestion
from evaluation.spans import Span, evaluate_spans, precision_omega, span_metrics
from rag.core.errors import ConfigError
from rag.core.tokenizers import get_token_counter

# --- hand-computed cases (characters) -----------------------------------------------------------------


def test_overlapping_chunks_count_twice_in_precision() -> None:
    # I = |[10,20)| = 10; Σ|r| = 15 + 20 = 35 (the overlap [5,15) counts in both chunks).
    m = span_metrics([("d", 10, 20)], [("d", 0, 15), ("d", 5, 25)])
    assert m == pytest.approx({"recall": 1.0, "precision": 10 / 35, "iou": 10 / 35})


def test_excerpt_spanning_two_chunks() -> None:
    excerpt = [("d", 10, 30)]
    first_only = span_metrics(excerpt, [("d", 0, 20)])
    # I = 10, |e| = 20, |r| = 20, unretrieved excerpt part = 10 -> IoU = 10 / (20 + 10).
    assert first_only == pytest.approx({"recall": 0.5, "precision": 0.5, "iou": 1 / 3})
    both = span_metrics(excerpt, [("d", 0, 20), ("d", 20, 40)])
    assert both == pytest.approx({"recall": 1.0, "precision": 0.5, "iou": 0.5})


def test_nothing_retrieved_gives_zeros() -> None:
    assert span_metrics([("d", 0, 10)], []) == {"recall": 0.0, "precision": 0.0, "iou": 0.0}


def test_chunk_equal_to_excerpt_gives_iou_one() -> None:
    assert span_metrics([("d", 3, 17)], [("d", 3, 17)]) == {"recall": 1.0, "precision": 1.0, "iou": 1.0}


def test_two_excerpts_one_found() -> None:
    m = span_metrics([("d", 0, 10), ("d", 20, 30)], [("d", 0, 10)])
    assert m == pytest.approx({"recall": 0.5, "precision": 1.0, "iou": 0.5})


def test_chunk_of_another_corpus_counts_in_precision_only() -> None:
    m = span_metrics([("a", 0, 10)], [("a", 0, 10), ("b", 0, 10)])
    assert m == pytest.approx({"recall": 1.0, "precision": 0.5, "iou": 0.5})


def test_disjoint_retrieval_scores_zero() -> None:
    assert span_metrics([("a", 0, 10)], [("a", 10, 20), ("b", 0, 10)]) == {
        "recall": 0.0,
        "precision": 0.0,
        "iou": 0.0,
    }


def test_overlapping_excerpts_are_summed_as_chroma_does() -> None:
    # Chroma divides by Σ|e_i| = 20, not |∪E| = 15: full retrieval of overlapping excerpts has recall 0.75.
    m = span_metrics([("d", 0, 10), ("d", 5, 15)], [("d", 0, 15)])
    assert m == pytest.approx({"recall": 0.75, "precision": 1.0, "iou": 1.0})


def test_precision_omega_hand_cases() -> None:
    chunking = [("d", 0, 10), ("d", 10, 20), ("d", 20, 30), ("d", 30, 40)]
    # Chunks [10,20) and [20,30) overlap the excerpt: 13 / 20.
    assert precision_omega([("d", 12, 25)], chunking) == pytest.approx(13 / 20)
    # Chroma's closed-interval test also takes the chunks that only touch the excerpt ([0,10), [20,30)).
    assert precision_omega([("d", 10, 20)], chunking) == pytest.approx(10 / 30)
    # Overlapping chunks count once (union), unlike precision's sum: 6 / |[0,30)|.
    assert precision_omega([("d", 12, 18)], [("d", 0, 20), ("d", 10, 30)]) == pytest.approx(6 / 30)
    # Excerpt text outside every chunk stays in the denominator: 5 / |[0,15)|.
    assert precision_omega([("d", 5, 15)], [("d", 0, 10)]) == pytest.approx(5 / 15)
    assert precision_omega([("d", 5, 15)], [("e", 0, 100)]) == 0.0


def test_evaluate_spans_mean_std_and_omega() -> None:
    questions = [
        ExcerptQuestion("q1", "d", [Excerpt("", 0, 10)]),
        ExcerptQuestion("q2", "d", [Excerpt("", 20, 30)]),
    ]
    chunking = [("d", 0, 10), ("d", 10, 20), ("d", 20, 30)]
    report = evaluate_spans(questions, [[("d", 0, 10)], [("d", 10, 20)]], all_chunks=chunking)
    assert report.per_query[0] == {"recall": 1.0, "precision": 1.0, "iou": 1.0, "precision_omega": 0.5}
    assert report.per_query[1] == {"recall": 0.0, "precision": 0.0, "iou": 0.0, "precision_omega": 0.5}
    assert report.mean == pytest.approx({"recall": 0.5, "precision": 0.5, "iou": 0.5, "precision_omega": 0.5})
    # Population standard deviation, as numpy's default (Chroma uses np.std).
    assert report.std == pytest.approx({"recall": 0.5, "precision": 0.5, "iou": 0.5, "precision_omega": 0.0})
    assert report.to_dict()["queries"] == 2
    plain = evaluate_spans([[("d", 0, 10)]], [[("d", 0, 10)]])
    assert "precision_omega" not in plain.mean


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="unit"):
        span_metrics([("d", 0, 1)], [], unit="bytes")
    with pytest.raises(ConfigError, match="corpora"):
        span_metrics([("d", 0, 1)], [], unit="tokens")
    with pytest.raises(ConfigError, match="start <= end"):
        span_metrics([("d", 5, 1)], [])
    with pytest.raises(ConfigError, match="ends after"):
        span_metrics([("d", 0, 50)], [], corpora={"d": "short"})
    with pytest.raises(ConfigError, match="not among the corpora"):
        span_metrics([("x", 0, 1)], [], corpora={"d": "short"})
    with pytest.raises(ConfigError, match="2 retrieval lists"):
        evaluate_spans([[("d", 0, 1)]], [[], []])


# --- token units --------------------------------------------------------------------------------------

WORDS_TEXT = "alpha beta gamma delta epsilon"  # alpha 0-5, beta 6-10, gamma 11-16, delta 17-22, epsilon 23-30


def test_words_tokenizer_units() -> None:
    corpora = {"d": WORDS_TEXT}
    excerpt = [("d", 11, 16)]  # "gamma": token 2
    chunk = [("d", 3, 12)]  # "ha beta g": overlaps alpha, beta and gamma -> 3 tokens
    tokens = span_metrics(excerpt, chunk, unit="tokens", corpora=corpora, tokenizer="words")
    assert tokens == pytest.approx({"recall": 1.0, "precision": 1 / 3, "iou": 1 / 3})
    chars = span_metrics(excerpt, chunk, unit="chars", corpora=corpora)
    assert chars == pytest.approx({"recall": 1 / 5, "precision": 1 / 9, "iou": 1 / 13})


def test_whitespace_only_span_has_no_word_tokens() -> None:
    corpora = {"d": WORDS_TEXT}
    m = span_metrics([("d", 11, 16)], [("d", 5, 6)], unit="tokens", corpora=corpora, tokenizer="words")
    assert m == {"recall": 0.0, "precision": 0.0, "iou": 0.0}


def test_tiktoken_split_characters_are_counted() -> None:
    # Emoji are split across several cl100k tokens, some with zero-width character spans; the whole text
    # must still measure exactly count(text) tokens.
    text = "a🙂🙂 b\U0001f9ea c"
    counter = get_token_counter("cl100k_base")
    assert counter.offsets(text)[0] == (0, 1)
    m = span_metrics([("d", 0, 1)], [("d", 0, len(text))], unit="tokens", corpora={"d": text})
    assert m["precision"] == pytest.approx(1 / counter.count(text))


def test_zero_width_token_counts_with_the_character_before() -> None:
    # cl100k splits the emoji of "a🙂 b" into (1, 2) and a zero-width (2, 2): both belong to [0, 2).
    text = "a🙂 b"
    offsets = get_token_counter("cl100k_base").offsets(text)
    assert (2, 2) in offsets
    inside = sum(1 for _, end in offsets if end <= 2)
    m = span_metrics([("d", 0, 1)], [("d", 0, 2)], unit="tokens", corpora={"d": text})
    assert m["precision"] == pytest.approx(1 / inside)


def test_real_set_excerpts_retrieved_exactly_score_one(shared_data) -> None:
    from evaluation.datasets import load_chunk_eval

    data = load_chunk_eval(shared_data / "chunking_eval")
    report = evaluate_spans(
        data.questions, [q.spans() for q in data.questions], unit="tokens", corpora=data.corpora
    )
    assert report.mean == {"recall": 1.0, "precision": 1.0, "iou": 1.0}


# --- properties ---------------------------------------------------------------------------------------

CORPORA = {"a": "lorem ipsum dolor sit amet, consectetur adipiscing elit sed", "b": "x y z " * 10}


@st.composite
def span_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 6) -> list[Span]:
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        corpus_id = draw(st.sampled_from(sorted(CORPORA)))
        size = len(CORPORA[corpus_id])
        start = draw(st.integers(0, size))
        end = draw(st.integers(start, min(size, start + 25)))
        out.append(Span(corpus_id, start, end))
    return out


@st.composite
def disjoint_excerpts(draw: st.DrawFn) -> list[Span]:
    cuts = sorted(draw(st.sets(st.integers(0, len(CORPORA["a"])), min_size=2, max_size=8)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    return [Span("a", s, e) for s, e in pairs]


def _positions(spans: list[Span]) -> set[tuple[str, int]]:
    return {(c, p) for c, s, e in spans for p in range(s, e)}


def _brute_force(excerpts: list[Span], retrieved: list[Span]) -> dict[str, float]:
    """The documented definitions, evaluated on sets of character positions."""
    gold, hits = _positions(excerpts), _positions(retrieved)
    inter = len(gold & hits)
    sum_e = sum(e - s for _, s, e in excerpts)
    sum_r = sum(e - s for _, s, e in retrieved)
    missed = sum(len(_positions([x]) - hits) for x in excerpts)

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "recall": ratio(inter, sum_e),
        "precision": ratio(inter, sum_r),
        "iou": ratio(inter, sum_r + missed),
    }


def _brute_omega(excerpts: list[Span], chunks: list[Span]) -> float:
    chosen = [c for c in chunks if any(c[0] == x[0] and max(c[1], x[1]) <= min(c[2], x[2]) for x in excerpts)]
    gold, covered = _positions(excerpts), _positions(chosen)
    union = len(covered | gold)
    return len(gold & covered) / union if union else 0.0


@settings(max_examples=150, deadline=None)
@given(span_lists(min_size=1), span_lists())
def test_matches_set_definitions(excerpts: list[Span], retrieved: list[Span]) -> None:
    assert span_metrics(excerpts, retrieved) == pytest.approx(_brute_force(excerpts, retrieved))
    assert precision_omega(excerpts, retrieved) == pytest.approx(_brute_omega(excerpts, retrieved))


@settings(max_examples=100, deadline=None)
@given(span_lists(min_size=1), span_lists(), st.sampled_from(["chars", "tokens"]))
def test_values_between_zero_and_one(excerpts: list[Span], retrieved: list[Span], unit: str) -> None:
    m = span_metrics(excerpts, retrieved, unit=unit, corpora=CORPORA, tokenizer="words")
    omega = precision_omega(excerpts, retrieved, unit=unit, corpora=CORPORA, tokenizer="words")
    assert all(0.0 <= v <= 1.0 for v in [*m.values(), omega])


@settings(max_examples=100, deadline=None)
@given(span_lists(min_size=1), span_lists(max_size=8), st.sampled_from(["chars", "tokens"]))
def test_recall_grows_with_rank(excerpts: list[Span], retrieved: list[Span], unit: str) -> None:
    recalls = [
        span_metrics(excerpts, retrieved[:k], unit=unit, corpora=CORPORA, tokenizer="words")["recall"]
        for k in range(len(retrieved) + 1)
    ]
    assert recalls == sorted(recalls)


@settings(max_examples=100, deadline=None)
@given(disjoint_excerpts(), span_lists())
def test_iou_at_most_precision_and_recall(excerpts: list[Span], retrieved: list[Span]) -> None:
    m = span_metrics(excerpts, retrieved)
    assert m["iou"] <= min(m["precision"], m["recall"]) + 1e-12


@settings(max_examples=60, deadline=None)
@given(span_lists(min_size=1), span_lists())
def test_chars_tokenizer_equals_chars_unit(excerpts: list[Span], retrieved: list[Span]) -> None:
    as_tokens = span_metrics(excerpts, retrieved, unit="tokens", corpora=CORPORA, tokenizer="chars")
    assert as_tokens == pytest.approx(span_metrics(excerpts, retrieved))
