"""The multi-vector token index: conformance, MaxSim against brute force, codecs, candidates, statistics."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from haystack import Document

from indexers.base import Index, UnsupportedOperationError, load_index
from indexers.docstore import UnknownDocumentError
from indexers.multivector import (
    DecodedDocuments,
    MultiVectorIndex,
    _list_numbers,
    _ragged_ranges,
    maxsim,
    resolve_params,
)
from indexers.testing import DIMENSION, FINGERPRINT, IndexConformance, MakeIndex
from rag.colbert.testing import FakeColBERTEncoder
from rag.core.errors import ConfigError, IndexCorruptError

ENCODER = FakeColBERTEncoder("conformance-hash-words", dim=DIMENSION)


def token_vectors(texts: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The fake encoder's token vectors, made contextual as a real ColBERT's are: each token's vector
    leans towards the mean of its text's. Without that, MaxSim scores a document that holds all of a
    query's words plus more as high as the query's own document ("jade lynx" vs "jade lynx item3")."""
    vectors, ids = ENCODER.encode_documents(list(texts))
    contextual = []
    for v in vectors:
        mixed = v + 0.5 * v.mean(axis=0, keepdims=True)
        contextual.append((mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32))
    return contextual, ids


def factory(**params: Any) -> MakeIndex:
    def make(documents: Sequence[Document]) -> Index:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MultiVectorIndex.build(
                documents,
                embeddings=token_vectors([d.content or "" for d in documents]),
                params=params,
                fingerprint=FINGERPRINT,
            )

    return make


class _MultiVectorConformance(IndexConformance):
    # embeddings() refuses (several vectors per document); token_vectors() is tested below.
    stored_vectors = "none"

    def queries(self, index: Index, texts: Sequence[str]) -> Any:
        # The document-side tokens of each text (no [MASK] padding): a text's own document scores every
        # query token at 1 and so is found first, as one hash vector per text is in the dense suite.
        return token_vectors(texts)[0]

    def document_vectors(self, index: Index, documents: Sequence[Document]) -> Any:
        return token_vectors([d.content or "" for d in documents])


class TestFP16Exhaustive(_MultiVectorConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return factory(codec="fp16", exhaustive=True)


class TestFP16Candidates(_MultiVectorConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return factory(codec="fp16", nlist=4, nprobe=4)


class TestIVFSQ(_MultiVectorConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return factory(codec="ivfsq", nlist=4, nprobe=2)


class TestIVFPQ(_MultiVectorConformance):
    @pytest.fixture
    def make_index(self) -> MakeIndex:
        return factory(codec="ivfpq", nlist=2, nprobe=2, m=32, nbits=4)


# ------------------------------------------------------------------------------------------ data


def clustered(n_docs: int, dim: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token vectors drawn around 40 centres (as real ColBERT vectors cluster), 3-12 per document."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    vectors, ids = [], []
    for _ in range(n_docs):
        n = int(rng.integers(3, 13))
        which = rng.integers(0, 40, n)
        v = centres[which] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
        vectors.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
        ids.append((1000 + which).astype(np.int32))
    return vectors, ids


def build(vectors: tuple[list[np.ndarray], list[np.ndarray]], **params: Any) -> MultiVectorIndex:
    docs = [Document(id=f"d{i:03d}", content=f"doc {i}") for i in range(len(vectors[0]))]
    fp = FINGERPRINT if vectors[0][0].shape[1] == DIMENSION else None
    from rag.encoders.dense import EncoderFingerprint

    fingerprint = fp or EncoderFingerprint("clustered", vectors[0][0].shape[1], "colbert", True, 16)
    return MultiVectorIndex.build(docs, embeddings=vectors, params=params, fingerprint=fingerprint)


def brute_force_maxsim(query: np.ndarray, docs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    out = []
    for doc in docs:
        total = 0.0
        for i, q in enumerate(query):
            total += weights[i] * max(float(np.dot(q, d)) for d in doc)
        out.append(total)
    return np.array(out)


# ------------------------------------------------------------------------------------------ MaxSim


def test_maxsim_matches_brute_force_with_weights_and_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors, _ = clustered(30, 16, seed=1)
    rng = np.random.default_rng(2)
    query = rng.standard_normal((7, 16)).astype(np.float32)
    weights = rng.uniform(0.1, 3.0, 7).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in vectors])])
    decoded = DecodedDocuments(
        np.arange(30), np.concatenate(vectors), offsets, np.zeros(offsets[-1], np.int32)
    )
    expected = brute_force_maxsim(query, vectors, weights)
    np.testing.assert_allclose(maxsim(query, decoded, weights), expected, rtol=1e-5)
    # Tiny token batches: documents split across batches must still score the same.
    monkeypatch.setattr("indexers.multivector.MAXSIM_TOKEN_BATCH", 5)
    np.testing.assert_allclose(maxsim(query, decoded, weights), expected, rtol=1e-5)
    np.testing.assert_allclose(
        maxsim(query, decoded), brute_force_maxsim(query, vectors, np.ones(7)), rtol=1e-5
    )


def test_exhaustive_search_equals_brute_force_ranking() -> None:
    vectors = clustered(50, 16, seed=3)
    index = build(vectors, codec="fp16", exhaustive=True)
    query = vectors[0][7][:3]
    expected = brute_force_maxsim(
        query, [v.astype(np.float16).astype(np.float32) for v in vectors[0]], np.ones(3)
    )
    hits = index.search([query], top_k=50)[0]
    assert [h[0] for h in hits] == [f"d{i:03d}" for i in sorted(range(50), key=lambda i: (-expected[i], i))]
    np.testing.assert_allclose([h[1] for h in hits], sorted(expected, reverse=True), rtol=1e-4)


def test_candidates_with_every_list_probed_equal_exhaustive() -> None:
    vectors = clustered(120, 16, seed=4)
    index = build(vectors, codec="ivfsq", nlist=8)
    queries = [v[:4] for v in vectors[0][:10]]
    assert index.search(queries, 10, nprobe=8, candidates=1000) == index.search(queries, 10, exhaustive=True)
    # A cap below the candidate count keeps the best by the centroid approximation: still top_k hits.
    narrow = index.search(queries, 5, nprobe=8, candidates=5)
    assert all(len(hits) == 5 for hits in narrow)


@pytest.mark.parametrize("exhaustive", [True, False])
@pytest.mark.parametrize("keep", [True, False])
def test_extended_search_reuses_the_first_pass_and_equals_the_full_search(
    exhaustive: bool, keep: bool
) -> None:
    # ColBERT-PRF's second pass: first-pass scores plus the extra tokens' part must be the full search.
    vectors = clustered(150, 16, seed=12)
    index = build(vectors, codec="fp16", nlist=16, nprobe=2, candidates=40)
    rng = np.random.default_rng(12)
    query = vectors[0][5][:3] + 0.1 * rng.standard_normal((3, 16)).astype(np.float32)
    extra = vectors[0][9][:2].copy()
    weights = np.array([2.5, 0.7], dtype=np.float32)
    settings = {"exhaustive": exhaustive, "keep_decoded": keep}
    first = index.search_one(query, 10, **settings)
    full = index.search_one(np.concatenate([query, extra]), 10, np.r_[np.ones(3), weights], **settings)
    extended = index.search_extended(first, extra, weights, 10, **settings)
    assert [d for d, _ in extended] == [d for d, _ in full.hits]
    np.testing.assert_allclose([s for _, s in extended], [s for _, s in full.hits], rtol=1e-5)
    # Some second-pass candidates were not in the first pass: they were decoded and scored whole.
    if not exhaustive:
        assert set(full.candidates.rows) - set(first.candidates.rows)
    rows = full.candidates.rows
    np.testing.assert_allclose(index.extended_scores(first, rows, extra, weights), full.scores, rtol=1e-5)
    with pytest.raises(ValueError, match="weight 1"):
        index.extended_scores(full, rows, extra, weights)
    assert index.search_extended(first, np.zeros((0, 16), np.float32), [], 10, **settings) == first.hits


def test_ragged_ranges() -> None:
    starts, ends = np.array([3, 0, 7, 7, 10]), np.array([5, 2, 7, 9, 11])
    expected = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    np.testing.assert_array_equal(_ragged_ranges(starts, ends), expected)
    assert len(_ragged_ranges(np.array([4]), np.array([4]))) == 0


# ------------------------------------------------------------------------------------------ codecs


@pytest.mark.parametrize(
    ("codec", "params", "min_cosine", "code_bytes"),
    [
        ("fp16", {}, 0.99999, 2 * 32 + 1),
        ("ivfsq", {}, 0.999, 32 + 1),
        ("ivfpq", {"m": 8, "nbits": 8}, 0.80, 8 + 1),
    ],
)
def test_compression_round_trip_error_bounds(
    codec: str, params: dict[str, Any], min_cosine: float, code_bytes: int
) -> None:
    vectors = clustered(300, 32, seed=5)
    index = build(vectors, codec=codec, nlist=16, **params)
    assert index.bytes_per_token()["codec"] == code_bytes  # the list number takes 1 byte below 256 lists
    decoded = index.token_vectors(index.ids)
    original, restored = np.concatenate(vectors[0]), np.concatenate(decoded)
    cosines = (original * restored).sum(1) / np.linalg.norm(restored, axis=1)
    assert cosines.min() >= min_cosine, cosines.min()
    if codec == "fp16":
        assert np.abs(original - restored).max() <= 1e-3  # a float16 copy: half a unit in the last place
    else:
        assert np.abs(original - restored).mean() < 0.1


def test_list_numbers_read_from_codes_are_the_quantizer_assignment() -> None:
    vectors = clustered(400, 16, seed=6)
    for nlist in (8, 300):  # one byte and two bytes of list number
        index = build(vectors, codec="ivfsq", nlist=nlist)
        flat = np.concatenate(vectors[0])
        _, assigned = index._codec.quantizer.search(flat, 1)
        np.testing.assert_array_equal(
            _list_numbers(index._codes, index._codec.coarse_code_size()), assigned[:, 0]
        )


# ------------------------------------------------------------------------------------------ statistics


def test_document_frequencies_and_idf_are_hand_computed() -> None:
    vectors = [
        np.eye(4, dtype=np.float32)[[0, 1, 2]],
        np.eye(4, dtype=np.float32)[[0, 3]],
        np.eye(4, dtype=np.float32)[[1]],
    ]
    ids = [np.array([7, 7, 9], np.int32), np.array([7, 8], np.int32), np.array([9], np.int32)]
    from rag.encoders.dense import EncoderFingerprint

    fp = EncoderFingerprint("stats", 4, "colbert", True, 8)
    docs = [Document(id=name, content=name) for name in "abc"]
    index = MultiVectorIndex.build(docs, embeddings=(vectors, ids), params={"codec": "fp16"}, fingerprint=fp)
    # token 7: documents a, b (twice in a counts once); 8: b; 9: a, c; 5: none.
    np.testing.assert_array_equal(index.document_frequency(np.array([7, 8, 9, 5])), [2, 1, 2, 0])
    np.testing.assert_allclose(index.idf(np.array([7, 8, 5])), np.log([4 / 3, 4 / 2, 4 / 1]))
    index.delete(["a"])
    np.testing.assert_array_equal(index.document_frequency(np.array([7, 8, 9])), [1, 1, 1])
    np.testing.assert_allclose(index.idf(np.array([7])), np.log(3 / 2))
    # Nearest stored tokens of e_3: document b's token 8 first.
    assert index.nearest_token_ids(np.eye(4, dtype=np.float32)[[3]], k=1)[0, 0] == 8


def test_token_vectors_and_ids_survive_save_add_delete(tmp_path: Path) -> None:
    vectors = clustered(60, 16, seed=7)
    index = build(vectors, codec="ivfsq", nlist=4)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded, MultiVectorIndex)
    for a, b in zip(
        loaded.token_vectors(["d005", "d001"]), index.token_vectors(["d005", "d001"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    loaded.delete(["d000", "d010"])
    more = clustered(3, 16, seed=8)
    loaded.add([Document(id=f"n{i}", content="x") for i in range(3)], more)
    np.testing.assert_array_equal(loaded.token_ids(["n2"])[0], more[1][2])
    np.testing.assert_array_equal(loaded.token_ids(["d011"])[0], vectors[1][11])
    assert loaded.n_tokens == sum(len(v) for v in vectors[0]) - len(vectors[0][0]) - len(
        vectors[0][10]
    ) + sum(len(v) for v in more[0])
    queries = [v[:3] for v in more[0]]
    assert [hits[0][0] for hits in loaded.search(queries, 1, exhaustive=True)] == ["n0", "n1", "n2"]


# ------------------------------------------------------------------------------------------ bad input


def test_bad_inputs_are_clear_errors() -> None:
    vectors = clustered(20, 16, seed=9)
    index = build(vectors, codec="fp16")
    with pytest.raises(ConfigError, match=r"\(query tokens, 16\) matrix, got shape \(3, 8\)"):
        index.search([np.zeros((3, 8), np.float32)], 3)
    with pytest.raises(ConfigError, match="weight vectors"):
        index.search([vectors[0][0]], 3, weights=[None, None])
    with pytest.raises(ConfigError, match="unknown search setting"):
        index.search([vectors[0][0]], 3, nprob=3)
    with pytest.raises(UnsupportedOperationError, match="token_vectors"):
        index.embeddings(["d001"])
    with pytest.raises(UnknownDocumentError, match="'nope'"):
        index.token_vectors(["nope"])
    docs = [Document(id="a", content="x")]
    with pytest.raises(ConfigError, match="no token vectors"):
        MultiVectorIndex.build(
            docs,
            embeddings=([np.zeros((0, 16), np.float32)], [np.zeros(0, np.int32)]),
            fingerprint=index.fingerprint,
        )
    with pytest.raises(ConfigError, match="needs embeddings"):
        MultiVectorIndex.build(docs, embeddings=None, fingerprint=index.fingerprint)
    with pytest.raises(ConfigError, match="codec must be one of"):
        resolve_params({"codec": "pq"}, 1000, 16)
    with pytest.raises(ConfigError, match="must divide the dimension 16"):
        resolve_params({"codec": "ivfpq", "m": 5}, 1000, 16)
    with pytest.raises(ConfigError, match="at least 256 token vectors"):
        resolve_params({"codec": "ivfpq"}, 100, 16)
    with pytest.raises(ConfigError, match="unknown multivector index parameter|nprob"):
        resolve_params({"nprob": 2}, 100, 16)


def test_inconsistent_arrays_on_disk_are_named(tmp_path: Path) -> None:
    index = build(clustered(10, 16, seed=10), codec="fp16")
    index.save(tmp_path / "idx")
    # Rewrite token_ids with one entry too few and fix the checksum: the size check still refuses it.
    import json

    from indexers.manifest import sha256_file

    ids = np.load(tmp_path / "idx" / "token_ids.npy")
    np.save(tmp_path / "idx" / "token_ids.npy", ids[:-1])
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["checksums"]["token_ids.npy"] = sha256_file(tmp_path / "idx" / "token_ids.npy")
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="do not agree in size"):
        load_index(tmp_path / "idx")


def test_keep_decoded_gathers_the_same_vectors() -> None:
    vectors = clustered(80, 16, seed=11)
    index = build(vectors, codec="ivfsq", nlist=4)
    queries = [v[:4] for v in vectors[0][:8]]
    slow = index.search(queries, 10, keep_decoded=False)
    fast = index.search(queries, 10, keep_decoded=True)  # float16 copy of the decoded tokens
    assert [[h[0] for h in hits] for hits in fast] == [[h[0] for h in hits] for hits in slow]
    np.testing.assert_allclose(
        [h[1] for hits in fast for h in hits], [h[1] for hits in slow for h in hits], atol=1e-2
    )
    assert index._decoded is not None and index._decoded.dtype == np.float16
    index.delete(["d000"])  # an update drops the copy, so nothing stale is scored
    assert index._decoded is None
