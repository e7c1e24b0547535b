"""The bundle cache key: ColBERT settings split it, and other bundles' keys do not move."""

from __future__ import annotations

from pathlib import Path

from rag.core.config import RagConfig
from rag.evaluate import index_cache_key


def test_colbert_settings_are_part_of_the_bundle_key(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    first = RagConfig.from_dict({"retrieval": {"mode": "colbert"}, "colbert": {"model": "one"}})
    second = RagConfig.from_dict({"retrieval": {"mode": "colbert"}, "colbert": {"model": "two"}})
    assert index_cache_key(first, corpus) != index_cache_key(second, corpus)
    # A dense bundle ignores the colbert section it does not use.
    dense_one = RagConfig.from_dict({"colbert": {"model": "one"}})
    dense_two = RagConfig.from_dict({"colbert": {"model": "two"}})
    assert index_cache_key(dense_one, corpus) == index_cache_key(dense_two, corpus)
