"""TempScale: 1/tau folded into the query projection equals softmax((QK^T/sqrt(d) + M) / tau) by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from haystack import Document
from transformers import (
    BertConfig,
    BertModel,
    MPNetConfig,
    MPNetModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from indexers.build import build_index, load_index
from rag.core.config import EncoderConfig, RagConfig
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.encoders.dense import DenseEncoder
from rag.encoders.tempscale import apply_tempscale, self_attention_layers, use_explicit_tempscale

ARCHITECTURES = {
    "bert": (BertConfig, BertModel),  # also MiniLM, a small BERT
    "roberta": (RobertaConfig, RobertaModel),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel),
}


def tiny(arch: str, attention: str) -> torch.nn.Module:
    config_class, model_class = ARCHITECTURES[arch]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        # Large random weights: peaked attention, so that a temperature visibly changes the outputs.
        initializer_range=0.5,
        attn_implementation=attention,
    )
    return model_class(config).eval()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (3, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding: the mask term M of the formula is not all zeros
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def hidden(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state * inputs["attention_mask"][..., None]


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_tau_1_is_the_identity(arch: str, attention: str) -> None:
    model = tiny(arch, attention)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = hidden(model, batch())
    apply_tempscale(model, 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(hidden(model, batch()), out)


@pytest.mark.parametrize("tau", [0.7, 1.3])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_folded_matches_the_explicit_formula(arch: str, attention: str, tau: float) -> None:
    base = tiny(arch, attention)
    folded = apply_tempscale(copy.deepcopy(base), tau)
    explicit = use_explicit_tempscale(copy.deepcopy(base), tau)
    assert folded.config._attn_implementation == attention  # folding keeps the fast kernel
    inputs = batch()
    want = hidden(explicit, inputs)
    assert torch.allclose(hidden(folded, inputs), want, atol=1e-5)
    # The temperature matters at this scale, so the comparison above can fail.
    assert (hidden(base, inputs) - want).abs().max() > 1e-2
    assert len(self_attention_layers(folded)) == 2
    assert folded.config.tempscale_tau == tau


def test_the_explicit_formula_at_tau_1_is_the_model() -> None:
    base = tiny("bert", "eager")
    explicit = use_explicit_tempscale(copy.deepcopy(base), 1.0)
    assert torch.allclose(hidden(explicit, batch()), hidden(base, batch()), atol=1e-6)


def test_a_sentence_transformer_is_folded_through_its_encoder(tiny_model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["a short text", "a somewhat longer text about the tides of the sea"]
    plain = SentenceTransformer(str(tiny_model_dir), device="cpu")
    # The tiny model's small random weights give near-uniform attention: a strong tau shows through.
    folded = apply_tempscale(SentenceTransformer(str(tiny_model_dir), device="cpu"), 0.05)
    explicit = use_explicit_tempscale(SentenceTransformer(str(tiny_model_dir), device="cpu"), 0.05)
    want = explicit.encode(texts)
    np.testing.assert_allclose(folded.encode(texts), want, atol=1e-5)
    assert np.abs(plain.encode(texts) - want).max() > 1e-3


def test_folding_twice_is_refused() -> None:
    model = apply_tempscale(tiny("bert", "sdpa"), 0.8)
    with pytest.raises(ConfigError, match=r"already has TempScale tau=0.8"):
        apply_tempscale(model, 0.9)


def test_an_architecture_with_a_relative_position_bias_is_refused() -> None:
    config = MPNetConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    model = MPNetModel(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"model type 'mpnet' \(MPNet adds a relative position bias"):
        apply_tempscale(model, 0.8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-folded
    with pytest.raises(ConfigError, match="holds none"):
        apply_tempscale(torch.nn.Linear(2, 2), 0.8)


@pytest.mark.parametrize("bad", [0, -1, 0.0, float("inf"), float("nan"), "0.9", True, None])
def test_tau_must_be_a_positive_number(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"tempscale.tau must be a number greater than 0"):
        EncoderConfig(tempscale={"tau": bad})
    with pytest.raises(ConfigError, match="greater than 0"):
        apply_tempscale(tiny("bert", "sdpa"), bad)  # type: ignore[arg-type]


def test_the_config_section_is_checked_with_the_file_and_key() -> None:
    config = RagConfig.from_dict({"encoder": {"tempscale": {"tau": 0.9}}}, source="c.yaml")
    assert config.encoder.tempscale == {"tau": 0.9}
    with pytest.raises(ConfigError, match=r"c.yaml: encoder.tempscale.tau must be a number greater than 0"):
        RagConfig.from_dict({"encoder": {"tempscale": {"tau": 0}}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"encoder.tempscale: unknown key\(s\) 'temperature'"):
        RagConfig.from_dict({"encoder": {"tempscale": {"temperature": 0.9}}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"encoder.tempscale must be a mapping or null, got 0.9"):
        RagConfig.from_dict({"encoder": {"tempscale": 0.9}}, source="c.yaml")


def test_the_encoder_records_tau_and_an_index_refuses_another(tiny_model_dir: Path, tmp_path: Path) -> None:
    plain = DenseEncoder(str(tiny_model_dir))
    scaled = DenseEncoder(str(tiny_model_dir), tempscale={"tau": 0.05})
    assert scaled.fingerprint.tempscale_tau == 0.05 and plain.fingerprint.tempscale_tau is None
    assert scaled.config()["tempscale"] == {"tau": 0.05}
    # tau = 1 changes nothing, so it is interchangeable with no TempScale.
    identity = DenseEncoder(str(tiny_model_dir), tempscale={"tau": 1})
    assert identity.fingerprint == plain.fingerprint
    texts = ["the moon pulls the oceans", "bees dance to point at flowers"]
    np.testing.assert_array_equal(identity.encode_documents(texts), plain.encode_documents(texts))
    # Each tau loads its own model: the cached plain model is not folded behind its users' backs.
    assert np.abs(scaled.encode_documents(texts) - plain.encode_documents(texts)).max() > 2e-5  # noise: 1e-7

    chunks = [Document(id=str(i), content=t) for i, t in enumerate(texts)]
    build_index(chunks, tmp_path / "i", "flat", encoder=scaled, progress=False)
    load_index(tmp_path / "i", DenseEncoder(str(tiny_model_dir), tempscale={"tau": 0.05}).fingerprint)
    with pytest.raises(EncoderMismatchError, match=r"tempscale_tau: index has 0.05, encoder has None"):
        load_index(tmp_path / "i", plain.fingerprint)
    with pytest.raises(EncoderMismatchError, match=r"tempscale_tau: index has 0.05, encoder has 0.8"):
        load_index(tmp_path / "i", DenseEncoder(str(tiny_model_dir), tempscale={"tau": 0.8}).fingerprint)


def test_the_folded_model_survives_onnx_export(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")  # torch.onnx.export's exporter

    class LastHidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    base = tiny("bert", "sdpa")
    inputs = batch()
    folded = apply_tempscale(copy.deepcopy(base), 0.7)
    want = hidden(use_explicit_tempscale(copy.deepcopy(base), 0.7), inputs).numpy()
    path = tmp_path / "folded.onnx"
    args = (inputs["input_ids"], inputs["attention_mask"])
    torch.onnx.export(
        LastHidden(folded), args, str(path), input_names=["input_ids", "attention_mask"], verbose=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    got = got * inputs["attention_mask"].numpy()[..., None]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_dense_pipeline_encodes_queries_with_the_configs_tau(tiny_model_dir: Path, tmp_path: Path) -> None:
    from rag.encoders.components import QueryEncoder
    from rag.pipelines import build_bundle, build_pipeline

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "the moon pulls the oceans"}\n{"id": "b", "text": "bees dance"}\n')
    config = RagConfig.from_dict({"encoder": {"model": str(tiny_model_dir), "tempscale": {"tau": 0.05}}})
    build_bundle(config, corpus, tmp_path / "bundle", progress=False)
    pipeline = build_pipeline(config, tmp_path / "bundle")
    encoders = [c for _, c in pipeline.walk() if isinstance(c, QueryEncoder)]
    assert encoders and all(c.encoder.tempscale_tau == 0.05 for c in encoders)
