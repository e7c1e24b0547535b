"""FAISS dense indexes: build, search, add, delete, save, load, and the errors around them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from haystack import Document

from indexers.build import load_index
from indexers.dense import DenseIndex, resolve_params
from indexers.manifest import read_manifest
from rag.core.errors import ConfigError, EncoderMismatchError

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
def test_updates_at_full_size_keep_search_and_manifest_consistent(fp, kind, tmp_path):
    # The shared suite (indexers.testing) covers round trip, add and delete on a small corpus; here IVF-PQ
    # is trained on enough vectors for its default nbits, and the counts in the manifest are checked.
    index, vectors = build(fp, kind)
    path = tmp_path / "idx"
    index.save(path)
    loaded = DenseIndex.load(path, fp)
    assert loaded.params == index.params and loaded.search(vectors[:15], 5) == index.search(vectors[:15], 5)
    assert loaded.delete(["d0", "d5", "d599"]) == 3
    new_vectors = unit_vectors(4, seed=99)
    loaded.add(make_docs(4, prefix="new"), new_vectors)
    loaded.save(path)
    again = DenseIndex.load(path, fp)
    assert again.ids[:3] == ["d1", "d2", "d3"] and again.ids[-4:] == ["new0", "new1", "new2", "new3"]
    for k, hits in enumerate(again.search(new_vectors, top_k=5)):
        assert top_ids(hits)[0] == f"new{k}"
    assert read_manifest(path)["counts"] == {"documents": N + 1, "vectors": N + 1}


def test_a_large_tie_is_fetched_whole_before_the_cut(fp):
    # 30 identical vectors inserted in descending id order: one extra hit is not enough, the fetch doubles.
    twin = unit_vectors(1, seed=3)
    others = unit_vectors(20, seed=4)
    docs = [Document(id=f"t{i:02d}", content="same") for i in reversed(range(30))] + make_docs(20, "o")
    index = DenseIndex.build(docs, np.vstack([np.repeat(twin, 30, axis=0), others]), fp, "flat")
    tied, plain = index.search(np.vstack([twin, others[:1]]), top_k=3)
    assert top_ids(tied) == ["t00", "t01", "t02"]
    assert top_ids(plain)[0] == "o0"
    assert top_ids(index.search(twin, top_k=31)[0])[:30] == [f"t{i:02d}" for i in range(30)]


@pytest.mark.parametrize("kind", TYPES)
def test_embeddings_survive_deletes_and_reloads(fp, kind, tmp_path):
    index, vectors = build(fp, kind)
    before = index.embeddings(["d1", "d7"])  # for IVF-PQ this builds its label -> code map
    if kind == "ivfpq":  # reconstructions from 8-bit codes: close, not equal
        assert (np.sum(before * vectors[[1, 7]], axis=1) > 0.7).all()
    else:
        np.testing.assert_array_equal(before, vectors[[1, 7]])
    assert index.delete(["d0", "d5"]) == 2
    np.testing.assert_array_equal(index.embeddings(["d1", "d7"]), before)
    index.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    np.testing.assert_array_equal(loaded.embeddings(["d7", "d1"]), before[::-1])
    assert loaded.delete(["d1"]) == 1
    np.testing.assert_array_equal(loaded.embeddings(["d7"]), before[1:])


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


def test_argument_errors(fp):
    index, _ = build(fp, "flat", n=5)
    with pytest.raises(ConfigError, match=r"'d1', 'd2'"):
        index.add(make_docs(3), unit_vectors(3, 1))
    with pytest.raises(ConfigError, match="'z'"):
        index.add([Document(id="z", content="a"), Document(id="z", content="b")], unit_vectors(2, 1))
    with pytest.raises(ConfigError, match="needs embeddings"):
        DenseIndex.build(make_docs(2), None, fp)
    with pytest.raises(ConfigError, match="needs fingerprint"):
        DenseIndex.build(make_docs(2), unit_vectors(2, 1))
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
