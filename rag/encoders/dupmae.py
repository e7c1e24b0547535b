"""DupMAE's combined retrieval representation: the [CLS] vector next to the reduced ordinary-token vector.

A DupMAE run (``rag train retromae --duplex``) saves a plain sentence-transformers folder with [CLS]
pooling, which ``SentenceTransformer(DIR)`` and ``encoder.model: DIR`` load as is, and its MLM head
under ``DIR/dupmae/``. This module adds the paper's second half of the representation:

- **OT vector**: the MLM head's logits of every ordinary token (not [CLS], [SEP] or padding), max-pooled
  over the positions, a ``|V|``-dim vector (the one the BoW loss trained), through a ReLU so only the
  terms the passage activates count.
- **Reduction**: the ``|V|`` dimensions are split into ``ot_dims`` contiguous buckets of (nearly) equal
  width and each bucket keeps its maximum (max-pooling within buckets, our reading of the paper's
  dimension reduction; default ``ot_dims`` = the hidden size, so the two halves are the same size).
- **Combined**: ``[cls / |cls|, ot / |ot|] / sqrt(2)``: a unit vector whose inner product with another is
  the mean of the two halves' cosines, so neither half dominates by scale.

Why not a sentence-transformers module: sentence-transformers 6 imports a ``modules.json`` class from
outside its own namespace only with ``trust_remote_code=True``, even for a local folder. Keeping the
saved model standard (CLS pooling) means no user has to pass that flag; the duplex vectors come from
:class:`DuplexEncoder` instead. In a pipeline config, ``encoder: {model: DIR, representation: duplex}``
(optionally ``ot_dims: N``) makes :class:`rag.encoders.dense.DenseEncoder` embed documents and queries
with it: the representation is registered here (:func:`load_duplex_model`), and the index's fingerprint
records ``pooling: duplex``, the ``hidden + ot_dims`` dimension and the head's hash.

>>> import torch
>>> reduce_ot(torch.tensor([[0.0, 3.0, 1.0, 5.0, 2.0]]), 2)  # buckets [0, 3, 1] and [5, 2]
tensor([[3., 5.]])

Importing this module is light (torch loads on first use), so the trainer's settings can name
:data:`HEAD_DIR` without it.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.errors import ConfigError
from rag.core.validation import positive_int
from rag.encoders.dense import register_representation

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The folder, inside a DupMAE model folder, that holds the MLM head.
HEAD_DIR = "dupmae"


def ordinary_token_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Sequence[int]
) -> torch.Tensor:
    """True at real, non-special tokens ([CLS], [SEP], [PAD] and the like are False)."""
    import torch

    special = torch.isin(input_ids, torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype))
    return attention_mask.bool() & ~special


def ordinary_token_vector(logits: torch.Tensor, ordinary: torch.Tensor) -> torch.Tensor:
    """DupMAE's |V|-dim OT vector: MLM logits ``[B, L, V]`` max-pooled over the ordinary positions."""
    import torch

    return logits.masked_fill(~ordinary[..., None], torch.finfo(logits.dtype).min).max(dim=1).values


def reduce_ot(ot: torch.Tensor, dims: int) -> torch.Tensor:
    """Max-pool a ``[B, V]`` OT vector within ``dims`` contiguous buckets of (nearly) equal width.

    Token id ``v`` falls in bucket ``v * dims // V``, so every bucket holds ``V // dims`` or one more
    ids and none is empty (padding to a multiple of ``dims`` would leave empty buckets at the end).
    """
    import torch

    batch, vocab = ot.shape
    if not 0 < dims <= vocab:
        raise ConfigError(f"ot_dims must be between 1 and the vocabulary size {vocab}, got {dims}")
    bucket = (torch.arange(vocab, device=ot.device) * dims // vocab).expand(batch, vocab)
    empty = torch.full((batch, dims), float("-inf"), dtype=ot.dtype, device=ot.device)
    return empty.scatter_reduce(1, bucket, ot, reduce="amax")


class DuplexEncoder:
    """Combined DupMAE vectors (``hidden + ot_dims`` dims) from a folder a ``--duplex`` run saved."""

    def __init__(self, model_dir: str | Path, ot_dims: int | None = None, device: str = "cpu") -> None:
        from safetensors.torch import load_file
        from sentence_transformers import SentenceTransformer
        from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

        folder = Path(model_dir)
        head_file = folder / HEAD_DIR / "head.safetensors"
        if not head_file.is_file():
            raise ConfigError(
                f"{folder} has no {HEAD_DIR}/head.safetensors: it is not a DupMAE checkpoint. "
                "Train one with `rag train retromae --duplex`, or load the folder as a plain dense encoder "
                "(without encoder.representation: duplex)"
            )
        self.model = SentenceTransformer(str(folder), device=device)
        backbone: Any = self.model[0].auto_model
        self.backbone = backbone
        config: Any = backbone.config
        self.transform = BertPredictionHeadTransform(config)
        state = load_file(str(head_file))
        try:
            self.transform.load_state_dict(
                {k.removeprefix("transform."): v for k, v in state.items() if k != "bias"}
            )
            self.bias = state["bias"]
        except (KeyError, RuntimeError) as exc:
            raise ConfigError(
                f"{head_file} does not hold a DupMAE head for this encoder ({exc}); retrain with --duplex"
            ) from exc
        self.transform.eval()
        self.ot_dims = int(config.hidden_size) if ot_dims is None else positive_int(ot_dims, "ot_dims")
        self.special_ids = sorted(set(self.model.tokenizer.all_special_ids))

    @property
    def dimension(self) -> int:
        return int(self.backbone.config.hidden_size) + self.ot_dims

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``[len(texts), dimension]`` float32 unit vectors (see the module docstring)."""
        import numpy as np
        import torch

        with torch.inference_mode():
            out = [
                self._encode_batch(list(texts[s : s + batch_size])) for s in range(0, len(texts), batch_size)
            ]
        if not out:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(out)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        batch = self.model.tokenizer(
            texts, padding=True, truncation=True, max_length=self.model.max_seq_length, return_tensors="pt"
        )
        hidden = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = hidden.last_hidden_state
        cls = F.normalize(hidden[:, 0], dim=-1)
        ordinary = ordinary_token_mask(batch["input_ids"], batch["attention_mask"], self.special_ids)
        logits = F.linear(self.transform(hidden), self.backbone.embeddings.word_embeddings.weight, self.bias)
        # ReLU: only activated terms count (a text without ordinary tokens gets an all-zero OT half)
        pooled = torch.relu(ordinary_token_vector(logits, ordinary))
        ot = F.normalize(reduce_ot(pooled, self.ot_dims), dim=-1)
        return (torch.cat([cls, ot], dim=-1) / math.sqrt(2)).float().cpu().numpy()


def load_duplex(model_dir: str | Path, **kwargs: Any) -> DuplexEncoder:
    """:class:`DuplexEncoder` of a folder ``rag train retromae --duplex`` wrote."""
    return DuplexEncoder(model_dir, **kwargs)


class DuplexModel:
    """A :class:`DuplexEncoder` as :class:`rag.encoders.dense.DenseEncoder` uses a SentenceTransformer.

    ``pooling_mode`` and ``identity_sha256`` (the head's files) go into the encoder fingerprint.
    """

    pooling_mode = "duplex"

    def __init__(self, encoder: DuplexEncoder, identity_sha256: str) -> None:
        self.encoder = encoder
        self.identity_sha256 = identity_sha256

    @property
    def tokenizer(self) -> Any:
        return self.encoder.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        length: Any = self.encoder.model.max_seq_length
        return int(length)

    def get_embedding_dimension(self) -> int:
        return self.encoder.dimension

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = True,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        # Duplex vectors are unit vectors by construction (normalize_embeddings changes nothing); the
        # callers that show progress (rag index) draw their own bar over batches of calls.
        return self.encoder.encode(texts, batch_size)


@register_representation("duplex")
@functools.lru_cache(maxsize=2)
def load_duplex_model(
    name: str,
    device: str = "cpu",
    max_length: int | None = None,
    tempscale_tau: float | None = None,
    ot_dims: int | None = None,
) -> DuplexModel:
    """``encoder.representation: duplex``: the :class:`DuplexModel` of the DupMAE folder ``name``, loaded
    once per process (the query encoder and the retriever checking its fingerprint share it)."""
    from rag.core.models import resolve_model

    folder = Path(resolve_model(name))
    encoder = DuplexEncoder(folder, ot_dims=ot_dims, device=device)
    if max_length is not None:
        encoder.model.max_seq_length = max_length
    if tempscale_tau is not None:
        from rag.encoders.tempscale import apply_tempscale

        apply_tempscale(encoder.model, tempscale_tau)  # folds into encoder.backbone, the same module
    digest = hashlib.sha256()
    for part in sorted(p for p in (folder / HEAD_DIR).iterdir() if p.is_file()):
        digest.update(f"{part.name}\0{hashlib.sha256(part.read_bytes()).hexdigest()}\n".encode())
    return DuplexModel(encoder, digest.hexdigest())


__all__ = [
    "HEAD_DIR",
    "DuplexEncoder",
    "DuplexModel",
    "load_duplex",
    "load_duplex_model",
    "ordinary_token_mask",
    "ordinary_token_vector",
    "reduce_ot",
]
