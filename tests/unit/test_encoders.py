from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from haystack.core.serialization import component_from_dict, component_to_dict

from rag.core.config import EncoderConfig
from rag.core.errors import ConfigError, EncoderMismatchError, ModelNotAvailableError
from rag.core.models import resolve_model
from rag.encoders.components import DocumentEncoder, QueryEncoder
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


# --- the pipeline components: settings declared once, in EncoderConfig ------------------------------


@pytest.mark.parametrize("cls", [QueryEncoder, DocumentEncoder])
def test_component_defaults_are_the_config_defaults(cls: type[QueryEncoder | DocumentEncoder]) -> None:
    defaults = EncoderConfig()
    component = cls()
    for name in ("model", "batch_size", "max_length", "normalize", "device"):
        assert getattr(component, name) == getattr(defaults, name)
        on_encoder = "model_name" if name == "model" else name
        assert getattr(component.encoder, on_encoder) == getattr(defaults, name)
    assert component.encoder.query_prefix == defaults.query_prefix
    assert component.encoder.document_prefix == defaults.document_prefix


@pytest.mark.parametrize("cls", [QueryEncoder, DocumentEncoder])
def test_component_round_trips_through_yaml_with_its_device(
    cls: type[QueryEncoder | DocumentEncoder], tiny_model_dir: Path
) -> None:
    original = cls(model=str(tiny_model_dir), batch_size=4, max_length=64, prefix="q: ", device="cuda:1")
    data = yaml.safe_load(yaml.safe_dump(component_to_dict(original, "encoder")))
    assert data["init_parameters"]["device"] == "cuda:1"
    again = component_from_dict(cls, data, "encoder")
    assert type(again) is cls
    assert component_to_dict(again, "encoder") == component_to_dict(original, "encoder")
    encoder = again.encoder
    assert (encoder.device, encoder.batch_size, encoder.max_length) == ("cuda:1", 4, 64)
    assert (encoder.query_prefix, encoder.document_prefix) == ("q: ", "q: ")


def test_component_settings_are_checked_as_the_config_is() -> None:
    with pytest.raises(ConfigError, match="device must be cpu, cuda, cuda:N"):
        QueryEncoder(device="gpu")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        DocumentEncoder(batch_size=0)
    with pytest.raises(ConfigError, match="max_length must be"):
        QueryEncoder(max_length=-1)


def test_the_query_encoder_runs_on_the_given_device(tiny_model_dir: Path) -> None:
    encoder = QueryEncoder(model=str(tiny_model_dir), device="cpu")
    encoder.warm_up()
    assert str(encoder.encoder.model.device) == "cpu"
    assert len(encoder.run("what causes tides")["embedding"]) == 32
