"""ColBERT model, encoder and loaders: markers, [MASK] augmentation, truncation, skiplist, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.colbert.testing import FakeColBERTEncoder, build_tiny_bert
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


# --- the real model, on a tiny random BERT (weights do not matter; the vocabulary does) ---

SAMPLE_DOCS = ["Tides, are caused; by the moon.", "", "!!! ..."]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def saved_colbert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rag.colbert.model import build_colbert, save_colbert

    model = build_colbert(str(tiny_bert), dim=16, query_maxlen=12, doc_maxlen=10)
    return save_colbert(model, tmp_path_factory.mktemp("colbert") / "model")


def reference_vectors(
    bert_dir: Path, weight: np.ndarray, ids: list[int], attend: int | None = None
) -> np.ndarray:
    """Brute force: BERT's last hidden states of ``ids``, projected by ``weight``, L2-normalised.
    ``attend``: how many leading positions the attention sees (query [MASK]s are not attended)."""
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(bert_dir).eval()
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    if attend is not None:
        mask[0, attend:] = 0
    with torch.no_grad():
        hidden = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state[0].numpy()
    projected = hidden @ weight.T
    return projected / np.linalg.norm(projected, axis=1, keepdims=True)


def test_pylate_layout_files(saved_colbert: Path) -> None:
    import json

    modules = json.loads((saved_colbert / "modules.json").read_text())
    assert [(m["path"], m["type"]) for m in modules] == [
        ("", "sentence_transformers.models.Transformer"),
        ("1_Dense", "pylate.models.Dense.Dense"),
    ]
    config = json.loads((saved_colbert / "config_sentence_transformers.json").read_text())
    assert config["query_prefix"] == "[Q] " and config["document_prefix"] == "[D] "
    assert config["query_length"] == 12 and config["document_length"] == 10
    assert config["attend_to_expansion_tokens"] is False and "," in config["skiplist_words"]
    # PyLate's Dense(**config) must accept every key we write.
    dense = json.loads((saved_colbert / "1_Dense" / "config.json").read_text())
    pylate_dense_args = {"in_features", "out_features", "bias", "activation_function", "use_residual"}
    assert set(dense) <= pylate_dense_args and dense["bias"] is False
    assert (
        not list(saved_colbert.rglob("*.bin")) and (saved_colbert / "1_Dense" / "model.safetensors").is_file()
    )


def test_markers_augmentation_and_skiplist(saved_colbert: Path) -> None:
    from safetensors.numpy import load_file

    from rag.colbert.encoder import ColBERTEncoder

    enc = ColBERTEncoder(saved_colbert, query_maxlen=12, doc_maxlen=10)
    tok = enc.tokenizer
    q_id, d_id = tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")
    assert q_id != tok.unk_token_id and d_id != tok.unk_token_id and q_id != d_id
    weight = load_file(str(saved_colbert / "1_Dense" / "model.safetensors"))["linear.weight"]

    # Query: [CLS] [Q] words [SEP] then [MASK] up to query_maxlen, as PyLate inserts the marker id.
    words = tok("moon tides?", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, q_id, *words, tok.sep_token_id]
    ids += [tok.mask_token_id] * (12 - len(ids))
    [q] = enc.encode_queries(["moon tides?"])
    assert q.shape == (12, 16) and q.dtype == np.float32
    np.testing.assert_allclose(
        q, reference_vectors(saved_colbert, weight, ids, attend=len(words) + 3), atol=1e-5
    )

    # Documents: [CLS] [D] words [SEP] cut at doc_maxlen, punctuation dropped after the cut.
    vecs, token_ids = enc.encode_documents(SAMPLE_DOCS)
    assert tok.convert_ids_to_tokens(token_ids[0].tolist()) == [
        "[CLS]",
        "[D] ",
        "tides",
        "are",
        "caused",
        "by",
        "the",
        "[SEP]",
    ]
    full = [
        tok.cls_token_id,
        d_id,
        *tok(SAMPLE_DOCS[0], add_special_tokens=False)["input_ids"][:7],
        tok.sep_token_id,
    ]
    keep = [i for i, t in enumerate(full) if tok.convert_ids_to_tokens(t) not in ",;."]
    np.testing.assert_allclose(vecs[0], reference_vectors(saved_colbert, weight, full)[keep], atol=1e-5)
    assert token_ids[0].dtype == np.int32 and vecs[0].shape == (8, 16)
    # Empty-document rule: an empty or all-punctuation document keeps [CLS] [D] [SEP].
    for v, i in zip(vecs[1:], token_ids[1:], strict=True):
        assert tok.convert_ids_to_tokens(i.tolist()) == ["[CLS]", "[D] ", "[SEP]"] and v.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs[0], axis=1), 1.0, rtol=1e-5)


def test_long_query_truncated_with_warning(saved_colbert: Path) -> None:
    from rag.colbert.encoder import ColBERTEncoder

    enc = ColBERTEncoder(saved_colbert, query_maxlen=12, doc_maxlen=10)
    with pytest.warns(UserWarning, match="longer than query_maxlen=12"):
        [q] = enc.encode_queries(["one two three four five six seven eight nine ten eleven twelve"])
    assert q.shape == (12, 16)
    fp = EncoderFingerprint.from_dict(enc.fingerprint())
    assert fp.model_sha256 and fp.query_marker == "[Q] " and fp.query_max_length == 12 and fp.dimension == 16


def test_round_trip_and_resave_identical(saved_colbert: Path, tmp_path: Path) -> None:
    from rag.colbert.loaders import load_colbert
    from rag.colbert.model import save_colbert

    first = load_colbert(saved_colbert)
    again = load_colbert(save_colbert(first, tmp_path / "copy"))
    a = first.encode_document(SAMPLE_DOCS, convert_to_numpy=True)
    b = again.encode_document(SAMPLE_DOCS, convert_to_numpy=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(
        first.encode_query(["moon"], convert_to_numpy=True)[0],
        again.encode_query(["moon"], convert_to_numpy=True)[0],
    )


def build_stanford_checkpoint(bert_dir: Path, folder: Path, dim: int = 8) -> np.ndarray:
    """An HF_ColBERT folder as colbert-ir/colbertv2.0 lays it out: ``bert.*`` weights and ``linear.weight``
    in one model.safetensors, markers [unused0] / [unused1] in artifact.metadata."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertModel

    bert = BertModel.from_pretrained(bert_dir)
    torch.manual_seed(1)
    linear = torch.randn(dim, bert.config.hidden_size)
    state = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
    state["linear.weight"] = linear
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    bert.config.architectures = ["HF_ColBERT"]
    bert.config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(folder)
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_maxlen": 32,
        "doc_maxlen": 180,
        "mask_punctuation": True,
        "attend_to_mask_tokens": False,
    }
    (folder / "artifact.metadata").write_text(json.dumps(metadata))
    return linear.numpy()


def test_stanford_checkpoint_loads_into_the_same_model(tiny_bert: Path, tmp_path: Path) -> None:
    from rag.colbert.encoder import ColBERTEncoder
    from rag.colbert.loaders import checkpoint_layout, load_colbert
    from rag.colbert.model import colbert_settings, save_colbert

    stanford = tmp_path / "stanford"
    weight = build_stanford_checkpoint(tiny_bert, stanford)
    assert checkpoint_layout(stanford) == "stanford"
    enc = ColBERTEncoder(stanford, query_maxlen=8, doc_maxlen=16)
    tok = enc.tokenizer
    assert enc.dim == 8 and enc.query_marker.strip() == "[unused0]"
    q_id, d_id = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")
    [q] = enc.encode_queries(["moon"])
    ids = [tok.cls_token_id, q_id, *tok("moon", add_special_tokens=False)["input_ids"], tok.sep_token_id]
    n = len(ids)
    ids += [tok.mask_token_id] * (8 - n)
    np.testing.assert_allclose(q, reference_vectors(tiny_bert, weight, ids, attend=n), atol=1e-5)
    vecs, token_ids = enc.encode_documents(["the moon."])
    doc = [tok.cls_token_id, d_id, *tok("the moon", add_special_tokens=False)["input_ids"], tok.sep_token_id]
    assert token_ids[0].tolist() == doc
    # Re-saved in our (PyLate) layout it gives the same vectors.
    ours = save_colbert(load_colbert(stanford), tmp_path / "ours")
    assert colbert_settings(load_colbert(ours))["query_marker"].strip() == "[unused0]"
    again = ColBERTEncoder(ours, query_maxlen=8, doc_maxlen=16)
    np.testing.assert_allclose(again.encode_queries(["moon"])[0], q, atol=1e-6)
    np.testing.assert_allclose(again.encode_documents(["the moon."])[0][0], vecs[0], atol=1e-6)


def test_pickles_and_plain_encoders_refused(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    from rag.colbert.loaders import load_colbert
    from rag.core.errors import ConfigError, ModelNotAvailableError

    with pytest.raises(ConfigError, match="not a ColBERT checkpoint.*rag train colbert"):
        load_colbert(tiny_bert)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelNotAvailableError, match="only as pickles"):
        load_colbert(pickled)
