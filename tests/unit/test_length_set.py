"""The SQuAD length-controlled set: all buckets cut the same paragraphs; one relevant window a question."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.length_set import build_length_set, load_squad
from rag.core.errors import ConfigError, InputFormatError


def squad(paragraphs: list[int]) -> dict:
    """Articles with the given paragraph counts; paragraph p of article a asks two questions."""
    return {
        "data": [
            {
                "title": f"A{a}",
                "paragraphs": [
                    {
                        "context": f"a{a}p{p}",
                        "qas": [{"id": f"{a}.{p}.{i}", "question": f"q {a} {p} {i}?"} for i in range(2)],
                    }
                    for p in range(n)
                ],
            }
            for a, n in enumerate(paragraphs)
        ]
    }


def test_buckets_cut_the_same_paragraphs_and_point_at_the_window() -> None:
    buckets = build_length_set(squad([9, 4, 17]), lengths=(1, 2, 4), queries=None)
    texts = [sorted(" ".join(b.corpus.values()).split()) for b in buckets]
    assert texts[0] == texts[1] == texts[2] and len(texts[0]) == 8 + 4 + 16  # trailing 1, 0, 1 dropped
    assert [len(b.corpus) for b in buckets] == [28, 14, 7]
    assert all(b.queries == buckets[0].queries for b in buckets) and len(buckets[0].queries) == 56
    four = buckets[2]
    assert four.corpus["2-12-4"] == "a2p12 a2p13 a2p14 a2p15"
    assert dict(four.qrels["2.13.1"]) == {"2-12-4": 1}
    for bucket in buckets:  # the relevant window holds the question's paragraph
        for qid, judged in bucket.qrels.items():
            a, p, _ = qid.split(".")
            (doc,) = judged
            assert f"a{a}p{p}" in bucket.corpus[doc].split()


def test_the_query_sample_is_fixed_by_the_seed() -> None:
    data = squad([8, 8, 8])
    a = build_length_set(data, queries=10, seed=3)[0].queries
    assert a == build_length_set(data, queries=10, seed=3)[0].queries and len(a) == 10
    assert a != build_length_set(data, queries=10, seed=4)[0].queries
    assert len(build_length_set(data, articles=1, queries=None)[0].queries) == 16


def test_bad_settings_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must divide the largest \(8\), got \[3, 8\]"):
        build_length_set(squad([8]), lengths=(3, 8))
    with pytest.raises(ConfigError, match="has 8 paragraphs or more"):
        build_length_set(squad([5, 7]))
    with pytest.raises(ConfigError, match="queries must be a positive integer, got 0"):
        build_length_set(squad([8]), queries=0)
    with pytest.raises(ConfigError, match="SQuAD file not found"):
        load_squad(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"version": "1.1"}')
    with pytest.raises(InputFormatError, match='top-level "data" list'):
        load_squad(tmp_path / "bad.json")
