"""ColBERT model, encoder and loaders: markers, [MASK] augmentation, truncation, skiplist, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from rag.colbert.testing import FakeColBERTEncoder
from rag.encoders.dense import EncoderFingerprint


def test_fake_encoder_layout_and_determinism() -> None:
    enc = FakeColBERTEncoder(dim=8, query_maxlen=8, doc_maxlen=10)
    [q] = enc.encode_queries(["Moon tides"])
    assert q.shape == (8, 8) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    # [CLS] [Q] moon tides [SEP] then [MASK] x3: the three padding rows are the same vector.
    np.testing.assert_array_equal(q[5], q[7])
    vecs, ids = enc.encode_documents(["Tides; and the moon.", "", "!!!"])
    assert enc.tokenizer.decode(ids[0]) == "[CLS] [D] tides and the moon [SEP]"
    # Same word, same vector, in query and document.
    np.testing.assert_array_equal(vecs[0][2], q[3])
    # Empty and all-punctuation documents keep their special tokens.
    assert [len(i) for i in ids[1:]] == [3, 3]
    same = FakeColBERTEncoder(dim=8, query_maxlen=8, doc_maxlen=10)
    again, _ = same.encode_documents(["Tides; and the moon."])
    np.testing.assert_array_equal(again[0], vecs[0])


def test_fake_encoder_truncates_with_warning() -> None:
    enc = FakeColBERTEncoder(dim=4, query_maxlen=5, doc_maxlen=5)
    with pytest.warns(UserWarning, match="truncated to query_maxlen=5"):
        [q] = enc.encode_queries(["one two three four"])
    assert q.shape == (5, 4)
    _, ids = enc.encode_documents(["one two three four"])
    assert enc.tokenizer.decode(ids[0]) == "[CLS] [D] one two [SEP]"
    fp = EncoderFingerprint.from_dict(enc.fingerprint())
    assert fp.query_max_length == 5 and fp.document_marker == "[D] " and fp.dimension == 4
