"""BM25 index (bm25s): scoring, title convention, add/delete, persistence, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from haystack import Document

from indexers.bm25 import BM25Index
from indexers.build import load_index
from rag.core.errors import ConfigError

DOCS = [
    Document(id="cats", content="Cats purr and sleep most of the day.", meta={"title": "Felines"}),
    Document(id="dogs", content="Dogs bark at the mailman and chase balls.", meta={"title": "Canines"}),
    Document(id="fish", content="Goldfish swim in small bowls.", meta={}),
    Document(id="mix", content="Both dogs and cats can live together peacefully.", meta={"title": "Pets"}),
]


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in hits]


def test_ranking_stemming_and_only_matching_documents():
    index = BM25Index.build(DOCS)
    barking, swimming, nothing = index.search(["barking dog", "swimming", "zebra the"], top_k=10)
    assert ids(barking) == ["dogs", "mix"]  # "barking" -> "bark", "dog" matches "dogs" after stemming
    assert barking[0][1] > barking[1][1] > 0
    assert ids(swimming) == ["fish"]
    assert nothing == []  # unknown word plus a stopword: no document matches
    assert ids(index.search(["dogs"], top_k=1)[0]) == ["dogs"]


def test_title_is_indexed_with_content():
    index = BM25Index.build(DOCS)
    assert ids(index.search(["felines"], top_k=5)[0]) == ["cats"]


def test_scores_match_bm25s_directly():
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    texts = [f"{d.meta['title']} {d.content}" if d.meta.get("title") else d.content for d in DOCS]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    options = {"stopwords": "en", "stemmer": stemmer, "show_progress": False}
    reference.index(bm25s.tokenize(texts, **options), show_progress=False)
    query = bm25s.tokenize(["cats and dogs"], return_ids=False, **options)
    expected = reference.get_scores(query[0])
    hits = dict(BM25Index.build(DOCS).search(["cats and dogs"], top_k=4)[0])
    for row, doc in enumerate(DOCS):
        assert hits.get(doc.id, 0.0) == pytest.approx(float(expected[row]))


def test_params_survive_save_load_and_reindexing(tmp_path):
    # Round trip, add and delete in general: the shared suite (indexers.testing).
    index = BM25Index.build(DOCS, {"k1": 1.2, "b": 0.5})
    index.save(tmp_path / "bm25")
    loaded = load_index(tmp_path / "bm25")
    assert isinstance(loaded, BM25Index) and (loaded.params["k1"], loaded.params["b"]) == (1.2, 0.5)
    assert loaded.delete(["dogs"]) == 1
    loaded.add([Document(id="parrot", content="Parrots talk and bark like dogs.")])
    assert ids(loaded.search(["bark"], 5)[0]) == ["parrot"] and loaded.params["b"] == 0.5


def test_files_hold_no_pickle(tmp_path):
    BM25Index.build(DOCS).save(tmp_path / "bm25")
    manifest = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    assert manifest["index_type"] == "bm25" and manifest["counts"]["documents"] == 4
    names = set(manifest["checksums"])
    assert "documents.jsonl" in names
    npy = [n for n in names if n.endswith(".npy")]
    assert npy, names
    for name in npy:
        np.load(tmp_path / "bm25" / name, allow_pickle=False)  # raises if the file held objects
    for name in names - set(npy):
        text = (tmp_path / "bm25" / name).read_text(encoding="utf-8")
        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            json.loads(line)


def test_argument_errors():
    with pytest.raises(ConfigError, match="'k2'"):
        BM25Index.build(DOCS, {"k2": 1})
    with pytest.raises(ConfigError, match="method"):
        BM25Index.build(DOCS, {"method": "tfidf"})
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Index.build(DOCS, {"stemmer": "klingon"})
    with pytest.raises(ConfigError, match="stopwords"):
        BM25Index.build(DOCS, {"stopwords": "klingon"})
    with pytest.raises(ConfigError, match="'cats'"):
        BM25Index.build([*DOCS, DOCS[0]])
    index = BM25Index.build(DOCS, {"stemmer": None, "stopwords": None})
    assert ids(index.search(["barking"], 3)[0]) == []  # no stemming: "barking" is not "bark"
    with pytest.raises(ConfigError, match="takes no embeddings"):
        BM25Index.build(DOCS, embeddings=np.ones((4, 2)))
    with pytest.raises(ConfigError, match="list of strings"):
        index.search("cats", 3)


def test_documents_without_any_term_index_and_match_nothing(tmp_path):
    # Single letters are dropped by the tokenizer, so no document keeps a term (bm25s itself would crash).
    index = BM25Index.build([Document(id="b", content="x y z"), Document(id="c", content="a")])
    assert index.search(["x y"], 5) == [[]]
    index.save(tmp_path / "idx")
    again = BM25Index.load(tmp_path / "idx")
    assert len(again) == 2 and again.search(["x"], 5) == [[]]
    again.add([Document(id="d", content="tides and the moon")])
    assert [hit[0] for hit in again.search(["moon"], 5)[0]] == ["d"]
