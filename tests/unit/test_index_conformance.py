"""Every index type passes the same suite (indexers.testing), including a toy type registered here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from haystack import Document

import indexers.base as base
from indexers import build_index, load_index, register_index
from indexers.docstore import DOCUMENTS_FILE, DocStore, DocStoreBacked, id_list
from indexers.manifest import read_manifest, verify_checksums, write_index_atomically
from indexers.testing import FINGERPRINT, IndexConformance, MakeIndex, hash_embed, index_factory
from rag.core.errors import ConfigError
from rag.core.validation import check_top_k
from rag.encoders.dense import EncoderFingerprint


class TestFlat(IndexConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return index_factory("flat")


class TestHNSW(IndexConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return index_factory("hnsw")


class TestIVFPQ(IndexConformance):
    stored_vectors = "approximate"  # product-quantizer codes: embeddings() are reconstructions

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return index_factory("ivfpq")


class TestBM25(IndexConformance):
    stored_vectors = "none"

    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return index_factory("bm25")


# ---------------------------------------------------------------- a new index type: one module, one line


class ToyIndex(DocStoreBacked):
    """Exact inner-product search over vectors in one .npy file: what a new index type has to write."""

    index_type = "toy"
    needs_encoder: ClassVar[bool] = True

    def __init__(self, fingerprint: EncoderFingerprint, vectors: np.ndarray, docstore: DocStore) -> None:
        self.fingerprint = fingerprint
        self._vectors = vectors
        self._docstore = docstore

    @classmethod
    def check_params(
        cls, index_type: str, params: dict[str, Any] | None, n_documents: int, fingerprint: Any
    ) -> dict[str, Any]:
        if params:
            raise ConfigError(f"the toy index takes no parameters, got {sorted(params)}")
        return {}

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        *,
        embeddings: np.ndarray | None = None,
        index_type: str = "toy",
        params: dict[str, Any] | None = None,
        fingerprint: EncoderFingerprint | None = None,
    ) -> ToyIndex:
        if embeddings is None or fingerprint is None:
            raise ConfigError("the toy index needs embeddings and a fingerprint")
        return cls(fingerprint, np.asarray(embeddings, dtype=np.float32), DocStore(documents))

    @classmethod
    def load(cls, path: str | Path, fingerprint: EncoderFingerprint | None = None) -> ToyIndex:
        manifest = read_manifest(path)
        verify_checksums(path, manifest)
        built_with = EncoderFingerprint.from_dict(manifest["encoder"])
        if fingerprint is not None:
            built_with.check_matches(fingerprint, str(path))
        vectors = np.load(Path(path) / "vectors.npy", allow_pickle=False)
        return cls(built_with, vectors, DocStore.load(Path(path) / DOCUMENTS_FILE))

    def save(self, path: str | Path) -> None:
        def write(folder: Path) -> dict[str, Any]:
            np.save(folder / "vectors.npy", self._vectors, allow_pickle=False)
            self._docstore.save(folder / DOCUMENTS_FILE)
            return {"index_type": self.index_type, "encoder": self.fingerprint.to_dict()}

        write_index_atomically(path, write)

    def add(self, documents: Sequence[Document], embeddings: np.ndarray | None = None) -> None:
        if embeddings is None:
            raise ConfigError("the toy index needs embeddings for new documents")
        self._docstore.add(documents)
        self._vectors = np.vstack([self._vectors, np.asarray(embeddings, dtype=np.float32)])

    def delete(self, ids: Iterable[str]) -> int:
        rows = self._docstore.delete(id_list(ids))
        self._vectors = np.delete(self._vectors, rows, axis=0)
        return len(rows)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        k = check_top_k(top_k)
        scores = np.asarray(queries, dtype=np.float32) @ self._vectors.T
        return [base.ranked(zip(self.ids, map(float, row), strict=True), k) for row in scores]

    def embeddings(self, ids: Sequence[str]) -> np.ndarray:
        self._docstore.positions(ids)  # names unknown ids
        rows = [self._docstore.position(i) for i in ids]
        return self._vectors[rows].reshape(len(rows), self._vectors.shape[1])


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # forgotten after the test
    register_index("toy")(ToyIndex)  # the one registration line


@pytest.mark.usefixtures("toy_registered")
class TestToy(IndexConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return index_factory("toy")


def test_a_registered_type_builds_and_loads_by_name(toy_registered: None, tmp_path: Path) -> None:
    class Encoder:  # the part of DenseEncoder that build_index uses
        fingerprint = FINGERPRINT
        batch_size = 4

        def encode_documents(self, texts: list[str], progress: bool = False) -> np.ndarray:
            return hash_embed(texts)

    chunks = [Document(id="a", content="amber otter"), Document(id="b", content="jade falcon")]
    summary = build_index(chunks, tmp_path / "toy", "TOY", encoder=Encoder(), progress=False)  # type: ignore[arg-type]
    assert summary.index_type == "toy" and read_manifest(tmp_path / "toy")["index_type"] == "toy"
    index = load_index(tmp_path / "toy", FINGERPRINT)
    assert isinstance(index, ToyIndex)
    [[(hit, score)]] = index.search(hash_embed(["jade falcon"]), 1)
    assert hit == "b" and score == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no parameters"):
        build_index(chunks, tmp_path / "toy2", "toy", {"x": 1}, encoder=Encoder())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs an encoder.*'bm25'"):
        build_index(chunks, tmp_path / "toy2", "toy")


def test_registry_refuses_unknown_and_conflicting_types(toy_registered: None, tmp_path: Path) -> None:
    registered = r"'bm25', 'flat', 'hnsw', 'ivfpq', 'multivector', 'toy'"
    with pytest.raises(ConfigError, match=rf"unknown index_type 'annoy'.*{registered}"):
        base.index_class("annoy")
    with pytest.raises(ConfigError, match="'flat' is already registered to indexers.dense:DenseIndex"):
        register_index("flat")(ToyIndex)
    register_index("toy")(ToyIndex)  # the same class again: a module imported twice
    assert base.index_class("IVF-PQ").__name__ == "DenseIndex"  # names are normalized
    index_factory("flat")(corpus_of(3)).save(tmp_path / "idx")
    manifest = tmp_path / "idx" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"index_type": "flat"', '"index_type": "colbert"'))
    with pytest.raises(ConfigError, match=r"manifest.json names index_type 'colbert'.*register_index"):
        load_index(tmp_path / "idx")


def corpus_of(n: int) -> list[Document]:
    return [Document(id=f"c{i}", content=f"word{i} shared") for i in range(n)]
