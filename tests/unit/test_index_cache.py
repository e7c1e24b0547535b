"""The process-wide index cache: one load per index and manifest, reload on swap, thread-safe."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from haystack import Document

import indexers.base as base
import indexers.cache as cache
from indexers import cache_key, cached_index, clear_index_cache, register_index
from indexers.testing import FINGERPRINT, corpus, index_factory
from rag.core.errors import ConfigError, EncoderMismatchError, IndexCorruptError
from rag.encoders.dense import EncoderFingerprint


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real loads behind the cache (and starts from an empty cache)."""
    monkeypatch.setattr(cache, "_CACHE", {})
    seen: list[str] = []
    real = cache.load_index

    def counting(location: Any, fingerprint: Any = None) -> Any:
        seen.append(str(location))
        return real(location, fingerprint)

    monkeypatch.setattr(cache, "load_index", counting)
    return seen


def test_one_load_per_index_and_a_swapped_index_is_reloaded(loads: list[str], tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index_factory("flat")(corpus()).save(path)
    first = cached_index(path, FINGERPRINT)
    assert cached_index(str(path)) is first and cached_index(tmp_path / "." / "idx") is first
    assert len(loads) == 1

    index_factory("flat")(corpus()[:3]).save(path)  # a new index in the same place: a new manifest
    second = cached_index(path)
    assert second is not first and second.ids == ["d00", "d01", "d02"] and len(loads) == 2
    assert cache.cached_locations() == [cache_key(path)]  # the old entry is dropped
    clear_index_cache()
    assert cached_index(path) is not second and len(loads) == 3


def test_the_query_encoder_is_checked_on_every_call(loads: list[str], tmp_path: Path) -> None:
    index_factory("flat")(corpus()).save(tmp_path / "idx")
    cached_index(tmp_path / "idx")
    other = EncoderFingerprint(FINGERPRINT.name, FINGERPRINT.dimension, "cls", True, FINGERPRINT.max_length)
    with pytest.raises(EncoderMismatchError, match="pooling"):
        cached_index(tmp_path / "idx", other)
    index_factory("bm25")(corpus()).save(tmp_path / "bm25")
    assert cached_index(tmp_path / "bm25", other).index_type == "bm25"  # BM25 has no encoder to check


def test_concurrent_warm_ups_load_once(loads: list[str], tmp_path: Path) -> None:
    index_factory("hnsw")(corpus()).save(tmp_path / "idx")
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(cached_index(tmp_path / "idx"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len(got) == 6 and all(index is got[0] for index in got)


def test_missing_index_is_named(loads: list[str], tmp_path: Path) -> None:
    with pytest.raises(IndexCorruptError, match="does not exist"):
        cached_index(tmp_path / "nothing")
    assert loads == []


def test_uri_locations_are_keyed_by_the_uri_and_opened_by_their_scheme(
    loads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    opened: list[str] = []

    @register_index("mem")
    class MemoryIndex:  # a remote store stands in: no folder, no manifest
        index_type = "mem"
        fingerprint = None

        @classmethod
        def load(cls, location: str, fingerprint: Any = None) -> MemoryIndex:
            opened.append(location)
            return cls()

        ids = ["a"]

        def get(self, ids: list[str]) -> list[Document]:
            return [Document(id=i) for i in ids]

    assert cache_key("mem://host/collection") == ("mem://host/collection", "")
    one = cached_index("mem://host/collection")
    assert isinstance(one, MemoryIndex) and cached_index("mem://host/collection") is one
    assert opened == ["mem://host/collection"]
    assert base.uri_scheme("/data/idx") is None and base.uri_scheme("Qdrant://x/y") == "qdrant"
    with pytest.raises(ConfigError, match=r"no index type opens 'qdrant://x/y' \(URI scheme 'qdrant'\)"):
        cached_index("qdrant://x/y")
