from __future__ import annotations

import numpy as np
import pytest

from rag.core.errors import ConfigError, EncoderMismatchError, ModelNotAvailableError
from rag.core.models import resolve_model
from rag.encoders.dense import DenseEncoder, EncoderFingerprint, join_title


def test_tiny_encoder_shapes_and_fingerprint(tiny_model_dir):
    enc = DenseEncoder(str(tiny_model_dir))
    vecs = enc.encode_documents(["a cat sat", "dogs bark loudly"])
    assert vecs.shape == (2, 32) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    fp = enc.fingerprint
    assert (fp.dimension, fp.pooling, fp.max_length, fp.normalize) == (32, "mean", 128, True)
    assert enc.encode_queries([]).shape == (0, 32)


def test_fingerprint_mismatch_names_field():
    a = EncoderFingerprint("m", 32, "mean", True, 128)
    b = EncoderFingerprint("m", 64, "mean", True, 128)
    assert a.differences(a) == []
    with pytest.raises(EncoderMismatchError, match="dimension: index has 32, encoder has 64"):
        a.check_matches(b)
    assert EncoderFingerprint.from_dict(a.to_dict()) == a


def test_bad_arguments_and_offline_hub_id(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        DenseEncoder(batch_size=0)
    with pytest.raises(ModelNotAvailableError, match="offline"):
        resolve_model("some-org/not-a-cached-model")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))


def test_join_title():
    assert join_title("T", "body") == "T body"
    assert join_title("", "body") == "body"
