"""FAISS dense indexes: build, search, add, delete, save, load, and the errors around them."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from haystack import Document

from indexers.build import load_index
from indexers.dense import DenseIndex, resolve_params
from indexers.docstore import UnknownDocumentError
from indexers.manifest import read_manifest
from rag.core.errors import ConfigError, EncoderMismatchError, IndexCorruptError

FP_DIM = 32
N = 600  # enough for IVF-PQ to train 256 centroids per sub-quantizer
TYPES = ["flat", "hnsw", "ivfpq"]


@pytest.fixture(scope="module")
def fp():
    from rag.encoders.dense import EncoderFingerprint

    return EncoderFingerprint("tiny", FP_DIM, "mean", True, 128)


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, FP_DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_docs(n: int, prefix: str = "d") -> list[Document]:
    return [
        Document(id=f"{prefix}{i}", content=f"text {i}", meta={"title": f"T{i}", "n": i}) for i in range(n)
    ]


def build(fp, kind: str, n: int = N, seed: int = 0) -> tuple[DenseIndex, np.ndarray]:
    vectors = unit_vectors(n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IVF-PQ warns that 600 training vectors are few
        index = DenseIndex.build(make_docs(n), vectors, fp, kind)
    return index, vectors


def top_ids(results: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in results]


def test_flat_matches_brute_force_numpy(fp):
    index, vectors = build(fp, "flat")
    queries = unit_vectors(20, seed=7)
    expected = queries @ vectors.T
    results = index.search(queries, top_k=10)
    for q, hits in enumerate(results):
        order = np.argsort(-expected[q], kind="stable")[:10]
        assert top_ids(hits) == [f"d{i}" for i in order]
        np.testing.assert_allclose([s for _, s in hits], expected[q, order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_find_each_vector_itself(fp, kind):
    index, vectors = build(fp, kind)
    results = index.search(vectors[:100], top_k=5)
    recall = np.mean([f"d{i}" in top_ids(hits) for i, hits in enumerate(results)])
    assert recall >= 0.95
    if kind == "hnsw":  # HNSW stores exact vectors: scores are exact inner products
        for i, hits in enumerate(results[:10]):
            for doc_id, score in hits:
                j = int(doc_id[1:])
                assert score == pytest.approx(float(vectors[i] @ vectors[j]), abs=1e-5)


@pytest.mark.parametrize("kind", TYPES)
def test_save_load_add_delete_round_trip(fp, kind, tmp_path):
    index, vectors = build(fp, kind)
    path = tmp_path / "idx"
    index.save(path)
    loaded = DenseIndex.load(path, fp)
    assert len(loaded) == N and loaded.index_type == kind and loaded.params == index.params
    queries = vectors[:15]
    assert loaded.search(queries, 5) == index.search(queries, 5)
    assert loaded.get(["d3"])[0].meta == {"title": "T3", "n": 3}

    deleted = ["d0", "d5", "d599", "d5"]  # a repeat counts once
    assert loaded.delete(deleted) == 3
    new_docs = make_docs(4, prefix="new")
    new_vectors = unit_vectors(4, seed=99)
    loaded.add(new_docs, new_vectors)
    loaded.save(path)

    again = DenseIndex.load(path, fp)
    assert len(again) == N - 3 + 4
    assert again.ids[:3] == ["d1", "d2", "d3"] and again.ids[-4:] == ["new0", "new1", "new2", "new3"]
    everything = again.search(np.vstack([vectors[[0, 5, 599]], new_vectors]), top_k=len(again))
    for hits in everything:
        assert not {"d0", "d5", "d599"} & set(top_ids(hits))
    for k, hits in enumerate(everything[3:]):
        assert top_ids(hits)[0] == f"new{k}"
    with pytest.raises(UnknownDocumentError):
        again.get(["d0"])
    manifest = read_manifest(path)
    assert manifest["counts"] == {"documents": N + 1, "vectors": N + 1}


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_delete_everything_then_add(fp, kind, tmp_path):
    index, _ = build(fp, kind, n=5)
    assert index.delete(index.ids) == 5
    assert len(index) == 0 and index.search(unit_vectors(2, 1), 3) == [[], []]
    index.save(tmp_path / "empty")
    index = DenseIndex.load(tmp_path / "empty")
    index.add(make_docs(2, "x"), unit_vectors(2, 3))
    assert sorted(top_ids(index.search(unit_vectors(1, 3), 5)[0])) == ["x0", "x1"]


def test_manifest_records_encoder_type_params_and_counts(fp, tmp_path):
    index, _ = build(fp, "hnsw", n=10)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"] == fp.to_dict()
    assert manifest["index_type"] == "hnsw"
    assert manifest["params"] == {"m": 32, "ef_construction": 200, "ef_search": 128}
    assert manifest["counts"]["documents"] == 10
    assert set(manifest["checksums"]) == {"index.faiss", "labels.npy", "documents.jsonl"}
    # Nothing pickled: the arrays load with pickling disabled, the documents are plain JSON lines.
    assert np.load(tmp_path / "idx" / "labels.npy", allow_pickle=False).dtype == np.int64
    lines = (tmp_path / "idx" / "documents.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "d0", "content": "text 0", "meta": {"title": "T0", "n": 0}}


def test_query_encoder_mismatch_names_the_field(fp, tmp_path):
    from rag.encoders.dense import EncoderFingerprint

    index, _ = build(fp, "flat", n=5)
    index.save(tmp_path / "idx")
    other = EncoderFingerprint("tiny", FP_DIM, "mean", True, 256)
    with pytest.raises(EncoderMismatchError, match="max_length: index has 128, encoder has 256"):
        DenseIndex.load(tmp_path / "idx", other)
    with pytest.raises(EncoderMismatchError, match="pooling: index has 'mean', encoder has 'cls'"):
        load_index(tmp_path / "idx", EncoderFingerprint("tiny", FP_DIM, "cls", True, 128))


@pytest.mark.parametrize("name", ["index.faiss", "labels.npy", "documents.jsonl"])
def test_corrupted_or_missing_file_is_named(fp, tmp_path, name):
    index, _ = build(fp, "flat", n=5)
    path = tmp_path / "idx"
    index.save(path)
    target = path / name
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    escaped = re.escape(name)
    with pytest.raises(IndexCorruptError, match=rf"{escaped}.*[Rr]ebuild"):
        DenseIndex.load(path)
    target.unlink()
    with pytest.raises(IndexCorruptError, match=rf"{escaped} is missing"):
        DenseIndex.load(path)


def test_argument_errors(fp):
    index, _ = build(fp, "flat", n=5)
    with pytest.raises(ConfigError, match=r"'d1', 'd2'"):
        index.add(make_docs(3), unit_vectors(3, 1))
    with pytest.raises(ConfigError, match="'z'"):
        index.add([Document(id="z", content="a"), Document(id="z", content="b")], unit_vectors(2, 1))
    with pytest.raises(UnknownDocumentError, match="'nope'.*Nothing was deleted"):
        index.delete(["d1", "nope"])
    assert len(index) == 5  # the valid id in the failed call was not deleted
    with pytest.raises(ConfigError, match="list of document ids"):
        index.delete("d1")
    with pytest.raises(ConfigError, match="top_k"):
        index.search(unit_vectors(1, 1), top_k=0)
    with pytest.raises(EncoderMismatchError, match="dimension 16"):
        index.search(np.ones((1, 16), dtype=np.float32), top_k=1)
    with pytest.raises(ConfigError, match="reshape"):
        index.search(np.ones(FP_DIM, dtype=np.float32), top_k=1)
    with pytest.raises(ConfigError, match="3 rows for 2 documents"):
        index.add(make_docs(2, "q"), unit_vectors(3, 1))
    with pytest.raises(ConfigError, match="index_type"):
        DenseIndex.build(make_docs(2), unit_vectors(2, 1), fp, "annoy")
    with pytest.raises(ConfigError, match="efsearch"):
        DenseIndex.build(make_docs(2), unit_vectors(2, 1), fp, "hnsw", {"efsearch": 3})
    assert index.search(unit_vectors(1, 2), top_k=50)[0].__len__() == 5  # top_k above the size is fine


def test_ivfpq_params_adapt_to_the_corpus(fp):
    with pytest.raises(ConfigError, match="at least 256 vectors"):
        resolve_params("ivfpq", None, 100, FP_DIM)
    with pytest.warns(UserWarning, match="nlist=15"):
        params = resolve_params("IVF-PQ", {"nlist": 1000}, N, FP_DIM)
    assert params == {"nlist": 15, "m": 8, "nbits": 8, "nprobe": 15}
    with pytest.raises(ConfigError, match="must divide the dimension 32"):
        resolve_params("ivfpq", {"m": 5}, N, FP_DIM)
    assert resolve_params("ivfpq", None, 100_000, 384) == {"nlist": 1265, "m": 96, "nbits": 8, "nprobe": 16}
