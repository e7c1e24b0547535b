"""The conformance suite every index type must pass, as a pytest mixin.

A test class inherits :class:`IndexConformance` and supplies one fixture, ``make_index``: a function that
builds an index of its type from a list of documents (:func:`index_factory` makes one for any registered
type). Documents are embedded by :func:`hash_embed`, a bag of hashed words, so identical texts get
identical vectors and tie exactly, as duplicate chunks do in real corpora::

    class TestFlat(IndexConformance):
        @pytest.fixture
        def make_index(self):
            return index_factory("flat")

A type whose queries are neither strings nor hash vectors overrides :meth:`IndexConformance.queries` and
:meth:`IndexConformance.document_vectors`. ``stored_vectors`` says what ``embeddings()`` promises:
``"exact"``, ``"approximate"`` (close to the vectors given) or ``"none"`` (the type refuses with
:class:`~indexers.base.UnsupportedOperationError`).
"""

from __future__ import annotations

import re
import shutil
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from haystack import Document

from indexers.base import Index, UnsupportedOperationError, index_class, load_index
from indexers.docstore import UnknownDocumentError
from indexers.manifest import MANIFEST_NAME, read_manifest
from rag.core.errors import ConfigError, IndexCorruptError
from rag.encoders.dense import EncoderFingerprint

DIMENSION = 64
FINGERPRINT = EncoderFingerprint("conformance-hash-words", DIMENSION, "mean", True, 64)
# Small enough for a 45-document corpus (nbits 4 trains 16 centroids per sub-quantizer).
SMALL_PARAMS: dict[str, dict[str, Any]] = {"ivfpq": {"nlist": 1, "m": 16, "nbits": 4, "nprobe": 1}}

_COLORS = ["amber", "cobalt", "crimson", "jade", "ochre", "violet", "silver"]
_ANIMALS = ["otter", "falcon", "lynx", "heron", "badger"]
TIE_TEXT = "identical twin passage"
# Inserted out of id order, more of them than one extra fetched hit: a correct tie-break must look past
# the first hit beyond the cut-off and sort by id.
TIE_IDS = ["tie-3", "tie-1", "tie-4", "tie-0", "tie-2"]

MakeIndex = Callable[[Sequence[Document]], Index]


def hash_embed(texts: Sequence[str]) -> np.ndarray:
    """Unit vectors of hashed word counts (crc32 buckets): identical texts give identical rows."""
    out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, zlib.crc32(word.encode("utf-8")) % DIMENSION] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def corpus() -> list[Document]:
    """40 documents, each with one word of its own (``itemN``), then the five-way tie group."""
    docs = [
        Document(
            id=f"d{i:02d}",
            content=f"{_COLORS[i % len(_COLORS)]} {_ANIMALS[i % len(_ANIMALS)]} item{i}",
            meta={"title": f"T{i}", "n": i, "tags": ["x", i]},
        )
        for i in range(40)
    ]
    return docs + [Document(id=doc_id, content=TIE_TEXT, meta={}) for doc_id in TIE_IDS]


def index_factory(index_type: str, params: dict[str, Any] | None = None) -> MakeIndex:
    """``make_index`` for a registered type: builds through its class, with :func:`hash_embed` vectors."""
    cls = index_class(index_type)
    chosen = SMALL_PARAMS.get(index_type) if params is None else params

    def make(documents: Sequence[Document]) -> Index:
        vectors = hash_embed([doc.content or "" for doc in documents]) if cls.needs_encoder else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IVF-PQ warns that a few dozen training vectors are few
            return cls.build(
                documents,
                embeddings=vectors,
                index_type=index_type,
                params=chosen,
                fingerprint=FINGERPRINT if cls.needs_encoder else None,
            )

    return make


def hit_ids(hits: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in hits]


class IndexConformance:
    """Round trip, add, delete, corruption, search order and ties, ``top_k`` and ``embeddings()``."""

    stored_vectors: ClassVar[Literal["exact", "approximate", "none"]] = "exact"

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        raise NotImplementedError("a conformance test class supplies the make_index fixture")

    # ------------------------------------------------------------ hooks

    def queries(self, index: Index, texts: Sequence[str]) -> Any:
        """What ``index.search`` takes for these query texts."""
        return hash_embed(texts) if index.needs_encoder else list(texts)

    def document_vectors(self, index: Index, documents: Sequence[Document]) -> np.ndarray | None:
        """What ``index.add`` takes beside the documents."""
        return hash_embed([doc.content or "" for doc in documents]) if index.needs_encoder else None

    # ------------------------------------------------------------ helpers

    def search(self, index: Index, texts: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        return index.search(self.queries(index, texts), top_k)

    def finds_itself(self, index: Index, doc: Document) -> bool:
        depth = 1 if self.stored_vectors != "approximate" else 3
        return doc.id in hit_ids(self.search(index, [doc.content or ""], depth)[0])

    # ------------------------------------------------------------ the suite

    def test_implements_the_protocol_and_is_registered(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        assert isinstance(index, Index)
        assert index_class(index.index_type) is type(index)
        assert len(index) == len(docs) and index.ids == [doc.id for doc in docs]
        assert all(self.finds_itself(index, doc) for doc in docs[:10])

    def test_save_load_round_trip(self, make_index: MakeIndex, tmp_path: Path) -> None:
        docs = corpus()
        index = make_index(docs)
        index.save(tmp_path / "idx")
        assert read_manifest(tmp_path / "idx")["index_type"] == index.index_type
        loaded = load_index(tmp_path / "idx", FINGERPRINT)
        assert type(loaded) is type(index) and loaded.ids == index.ids
        assert [(d.id, d.content, d.meta) for d in loaded.get(index.ids)] == [
            (d.id, d.content, d.meta) for d in docs
        ]
        texts = [doc.content or "" for doc in docs[::7]] + [TIE_TEXT, "otter jade"]
        assert self.search(loaded, texts, 6) == self.search(index, texts, 6)
        if self.stored_vectors != "none":
            np.testing.assert_array_equal(loaded.embeddings(index.ids), index.embeddings(index.ids))
        again = type(index).load(tmp_path / "idx")
        assert again.ids == index.ids

    def test_add(self, make_index: MakeIndex, tmp_path: Path) -> None:
        index = make_index(corpus())
        before = list(index.ids)
        # Words of the corpus: IVF-PQ encodes new vectors with codebooks trained on the first ones.
        new = [Document(id="new-b", content="crimson heron otter"), Document(id="new-a", content="jade lynx")]
        index.add(new, self.document_vectors(index, new))
        assert index.ids == [*before, "new-b", "new-a"]
        assert all(self.finds_itself(index, doc) for doc in new)
        with pytest.raises(ConfigError, match="'new-a'"):
            index.add(new[1:], self.document_vectors(index, new[1:]))
        assert len(index) == len(before) + 2
        index.save(tmp_path / "idx")
        assert load_index(tmp_path / "idx").ids == index.ids

    def test_add_refuses_the_wrong_inputs(self, make_index: MakeIndex) -> None:
        index = make_index(corpus())
        new = [Document(id="new", content="scarlet walrus")]
        with pytest.raises(ConfigError, match="embeddings"):
            if index.needs_encoder:
                index.add(new, None)
            else:
                index.add(new, hash_embed(["scarlet walrus"]))
        assert "new" not in index.ids

    def test_delete(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        assert index.delete(["d03", "tie-1", "d03"]) == 2  # a repeat counts once
        assert len(index) == len(docs) - 2
        everything = self.search(index, [doc.content or "" for doc in docs[:5]] + [TIE_TEXT], len(docs))
        assert not {"d03", "tie-1"} & {doc_id for hits in everything for doc_id in hit_ids(hits)}
        with pytest.raises(UnknownDocumentError):
            index.get(["d03"])
        assert index.delete([]) == 0

    def test_unknown_id_refusal_changes_nothing(self, make_index: MakeIndex) -> None:
        index = make_index(corpus())
        ids, results = list(index.ids), self.search(index, [TIE_TEXT, "otter"], 10)
        with pytest.raises(UnknownDocumentError, match="'nope'.*Nothing was deleted"):
            index.delete(["d01", "nope"])
        assert index.ids == ids and self.search(index, [TIE_TEXT, "otter"], 10) == results
        with pytest.raises(ConfigError, match="list of document ids"):
            index.delete("d01")

    def test_delete_everything_then_add(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        assert index.delete(index.ids) == len(docs)
        assert len(index) == 0 and self.search(index, ["otter", TIE_TEXT], 3) == [[], []]
        index.add(docs[:2], self.document_vectors(index, docs[:2]))
        assert index.ids == ["d00", "d01"] and self.finds_itself(index, docs[1])

    def test_corrupted_or_missing_file_is_named(self, make_index: MakeIndex, tmp_path: Path) -> None:
        good = tmp_path / "good"
        make_index(corpus()).save(good)
        names = sorted(read_manifest(good)["checksums"])
        assert names
        for number, name in enumerate([*names, MANIFEST_NAME]):
            folder = tmp_path / f"bad{number}"
            shutil.copytree(good, folder)
            target = folder / name
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0xFF
            target.write_bytes(bytes(data))
            with pytest.raises(IndexCorruptError, match=re.escape(Path(name).name)):
                load_index(folder)
            target.unlink()
            with pytest.raises(IndexCorruptError, match=rf"{re.escape(Path(name).name)} is missing"):
                load_index(folder)

    def test_search_orders_by_score_then_id(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        texts = [TIE_TEXT, "otter jade item3", "violet", "falcon heron lynx"]
        for hits in self.search(index, texts, len(docs)):
            assert hits == sorted(hits, key=lambda hit: (-hit[1], hit[0]))
            assert len(set(hit_ids(hits))) == len(hits) and set(hit_ids(hits)) <= set(index.ids)

    def test_exact_ties_break_by_id_at_the_cut_off(self, make_index: MakeIndex) -> None:
        index = make_index(corpus())
        (two,) = self.search(index, [TIE_TEXT], 2)
        assert hit_ids(two) == ["tie-0", "tie-1"] and two[0][1] == two[1][1]
        (five,) = self.search(index, [TIE_TEXT], 5)
        assert hit_ids(five) == sorted(TIE_IDS) and len({score for _, score in five}) == 1
        (six,) = self.search(index, [TIE_TEXT], 6)
        assert hit_ids(six)[:5] == sorted(TIE_IDS)

    def test_top_k_per_call(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        broad = "otter amber falcon jade"  # matched by 20 documents, also by BM25
        for k in (1, 3, 7):
            wide, tie = self.search(index, [broad, TIE_TEXT], k)
            assert len(wide) == k and min(k, len(TIE_IDS)) <= len(tie) <= k  # BM25 returns matches only
        assert len(self.search(index, [TIE_TEXT], 10 * len(docs))[0]) <= len(docs)
        bad_values: tuple[Any, ...] = (0, -1, True, 2.5, None)
        for bad in bad_values:
            with pytest.raises(ConfigError, match="top_k"):
                self.search(index, [TIE_TEXT], bad)
        assert self.search(index, [], 3) == []

    def test_embeddings(self, make_index: MakeIndex) -> None:
        docs = corpus()
        index = make_index(docs)
        asked = ["d05", "d01", "tie-2", "d05"]
        with pytest.raises(UnknownDocumentError, match="'nope'"):
            index.embeddings(["d01", "nope"])
        if self.stored_vectors == "none":
            with pytest.raises(UnsupportedOperationError, match=re.escape(repr(index.index_type))):
                index.embeddings(asked)
            return
        vectors = index.embeddings(asked)
        assert vectors.shape == (len(asked), DIMENSION) and vectors.dtype == np.float32
        given = hash_embed([doc.content or "" for doc in index.get(asked)])
        np.testing.assert_array_equal(index.embeddings(asked[::-1]), vectors[::-1])
        if self.stored_vectors == "exact":
            np.testing.assert_allclose(vectors, given, atol=1e-6)
        else:
            cosines = (vectors * given).sum(axis=1) / np.linalg.norm(vectors, axis=1)
            assert (cosines > 0.8).all(), cosines
        assert index.embeddings([]).shape == (0, DIMENSION)
