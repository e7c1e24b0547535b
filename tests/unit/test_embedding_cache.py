from __future__ import annotations

import numpy as np

from rag.encoders.cache import cached_embeddings, embeddings_key
from rag.encoders.dense import DenseEncoder


def test_cache_computes_once_and_keys_on_texts(tmp_path, tiny_model_dir):
    encoder = DenseEncoder(str(tiny_model_dir))
    calls = []

    def compute(texts):
        def run():
            calls.append(texts)
            return encoder.encode_documents(texts)

        return run

    first = cached_embeddings(tmp_path, encoder, ["a b", "c"], compute(["a b", "c"]))
    again = cached_embeddings(tmp_path, encoder, ["a b", "c"], compute(["a b", "c"]))
    assert np.array_equal(first, again) and len(calls) == 1
    cached_embeddings(tmp_path, encoder, ["a b", "d"], compute(["a b", "d"]))
    assert len(calls) == 2
    assert embeddings_key(encoder, ["x"]) != embeddings_key(
        DenseEncoder(str(tiny_model_dir), document_prefix="p: "), ["x"]
    )
    # a damaged file is recomputed, not trusted
    (tmp_path / f"{embeddings_key(encoder, ['a b', 'c'])}.npy").write_bytes(b"junk")
    cached_embeddings(tmp_path, encoder, ["a b", "c"], compute(["a b", "c"]))
    assert len(calls) == 3
    assert cached_embeddings(None, encoder, ["q"], compute(["q"])).shape == (1, 32) and len(calls) == 4
