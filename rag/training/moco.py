"""The MoCo part of contrastive training: a queue of keys and a momentum encoder (He et al. 2020),
as a sentence-transformers loss, and a trainer that checkpoints them.

sentence-transformers' losses have in-batch negatives but no queue, and its trainer saves only the
model being trained; this module adds the rest. Kept apart from :mod:`rag.training.contrastive` so
that the settings and views there load without torch (the CLI checks its arguments first).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rag.core.errors import InputFormatError

#: The file in each checkpoint folder that holds the momentum encoder and the queue.
MOCO_STATE = "moco_state.safetensors"


class KeyQueue(nn.Module):
    """A FIFO ring of the last ``size`` key embeddings (buffers, so they travel in the state dict)."""

    keys: Tensor
    pointer: Tensor
    filled: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` after the newest entries, overwriting the oldest once the ring is full."""
        if self.size == 0:
            return
        keys = keys.detach()[-self.size :]  # of a batch larger than the queue only the last ones stay
        start = int(self.pointer)
        rows = (torch.arange(len(keys)) + start) % self.size
        self.keys[rows] = keys.to(self.keys.dtype)
        self.pointer.fill_((start + len(keys)) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + len(keys)))

    def contents(self) -> Tensor:
        """The stored keys, oldest first."""
        filled = int(self.filled)
        if filled < self.size:
            return self.keys[:filled]
        return torch.roll(self.keys, -int(self.pointer), dims=0)


@torch.no_grad()
def momentum_update(key_encoder: nn.Module, query_encoder: nn.Module, momentum: float) -> None:
    """theta_k <- m * theta_k + (1 - m) * theta_q, for every parameter (buffers are copied)."""
    for key_param, query_param in zip(key_encoder.parameters(), query_encoder.parameters(), strict=True):
        key_param.mul_(momentum).add_(query_param.detach(), alpha=1.0 - momentum)
    for key_buffer, query_buffer in zip(key_encoder.buffers(), query_encoder.buffers(), strict=True):
        key_buffer.copy_(query_buffer)


class MoCoLoss(nn.Module):
    """InfoNCE of query views against their keys, the batch's other keys and a queue of older keys.

    A sentence-transformers loss: built from the model, called by the trainer with the features of the
    ``anchor`` (query view) and ``positive`` (key view) columns. It keeps the momentum encoder (a frozen
    copy of the model, moved towards it by :func:`momentum_update` before each training forward) and a
    :class:`KeyQueue`. Embeddings are L2-normalised, so the logits are cosines over the temperature.
    """

    def __init__(
        self, model: Any, queue_size: int = 2048, momentum: float = 0.999, temperature: float = 0.05
    ):
        super().__init__()
        self.model = model
        self.momentum = momentum
        self.temperature = temperature
        self.key_encoder = copy.deepcopy(model)
        for param in self.key_encoder.parameters():
            param.requires_grad_(False)  # so the trainer's optimizer leaves it alone
        self.queue = KeyQueue(queue_size, model.get_embedding_dimension())

    def forward(self, sentence_features: Sequence[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        query_features, key_features = sentence_features[0], sentence_features[1]
        queries = F.normalize(self.model(query_features)["sentence_embedding"], dim=-1)
        training = self.model.training
        with torch.no_grad():
            if training:
                momentum_update(self.key_encoder, self.model, self.momentum)
            self.key_encoder.train(training)  # dropout on the keys too, as Contriever's encoder_k
            keys = F.normalize(self.key_encoder(key_features)["sentence_embedding"], dim=-1)
        candidates = torch.cat([keys, self.queue.contents().to(keys.dtype)], dim=0)
        logits = queries @ candidates.T / self.temperature
        loss = F.cross_entropy(logits, torch.arange(len(queries), device=logits.device))
        if training:
            self.queue.enqueue(keys)
        return loss

    def moco_state(self) -> dict[str, Tensor]:
        """The momentum encoder and the queue: what a checkpoint of the model alone would lose."""
        return {
            name: tensor.detach().contiguous().clone()
            for name, tensor in self.state_dict().items()
            if not name.startswith("model.")
        }

    def save_moco_state(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.moco_state(), str(Path(folder) / MOCO_STATE))

    def load_moco_state(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        path = Path(folder) / MOCO_STATE
        if not path.is_file():
            raise InputFormatError(
                f"checkpoint {folder} has no {MOCO_STATE} (the momentum encoder and queue); "
                "it was not written by rag train contrastive: start again without --resume",
                str(path),
            )
        missing, unexpected = self.load_state_dict(load_file(str(path)), strict=False)
        missing = [name for name in missing if not name.startswith("model.")]
        if missing or unexpected:
            raise InputFormatError(
                f"{MOCO_STATE} does not fit this model and queue size (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); resume with the --queue-size of the first run",
                str(path),
            )


def moco_trainer_class() -> type:
    """The trainer, built on first use so that importing this module does not import the trainer."""
    from sentence_transformers import SentenceTransformerTrainer

    class MoCoTrainer(SentenceTransformerTrainer):  # type: ignore[misc,valid-type]
        """Saves the loss's momentum encoder and queue in every checkpoint and restores them on resume
        (sentence-transformers saves only the model being trained)."""

        def _moco_loss(self) -> MoCoLoss:
            if not isinstance(self.loss, MoCoLoss):
                raise TypeError(f"MoCoTrainer trains with a MoCoLoss, got {type(self.loss).__name__}")
            return self.loss

        def get_batch_sampler(
            self, dataset: Any, batch_size: int, drop_last: bool, *args: Any, **kw: Any
        ) -> Any:
            # The rows are already in training order (contrastive_views keeps a passage out of its own
            # batch's negatives); the default sampler would shuffle them back together.
            from sentence_transformers.base.sampler import DefaultBatchSampler
            from torch.utils.data import SequentialSampler

            return DefaultBatchSampler(
                SequentialSampler(range(len(dataset))),  # type: ignore[arg-type]
                batch_size=batch_size,
                drop_last=drop_last,
            )

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict)
            self._moco_loss().save_moco_state(str(output_dir or self.args.output_dir))

        def _load_from_checkpoint(self, checkpoint_path: str, *args: Any) -> None:
            super()._load_from_checkpoint(checkpoint_path)
            self._moco_loss().load_moco_state(checkpoint_path)

    return MoCoTrainer
