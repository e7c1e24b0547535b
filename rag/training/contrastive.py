"""Contriever-style contrastive training without labels (Izacard et al. 2021), with a MoCo queue.

A positive pair is two views of one passage: each an **independent random crop** (a span of 10%-50%
of its words) with **random word deletion** (each word dropped with probability 0.1). The query view
goes through the model being trained, the key view through a **momentum encoder** (an exponential
moving average of the model, never trained by gradient). The loss is InfoNCE with a temperature over
the batch's keys (the positive and the in-batch negatives) and a **queue** of keys from earlier
batches, which gives many more negatives than a CPU batch holds. Embeddings are mean-pooled.

sentence-transformers' trainer runs the loop (checkpoints, resume, progress bar); what it does not
have is written here: the views (:func:`crop_span`, :func:`delete_words`, :func:`contrastive_views`)
and, in :mod:`rag.training.moco` (which needs torch; this module does not, so the CLI checks its
arguments first), the queue (``KeyQueue``), the loss that holds the momentum encoder (``MoCoLoss``) and
a trainer that saves and restores both with each checkpoint, so that a resumed run continues exactly
where it stopped.

>>> import random
>>> start, end = crop_span(10, random.Random(0), 0.1, 0.5)
>>> 0 <= start < end <= 10 and 1 <= end - start <= 5
True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, InputFormatError
from rag.training.finetune import TrainSettings, fit_sentence_transformer, load_model


@dataclass(frozen=True)
class ContrastiveSettings(TrainSettings):
    """Contriever's settings (its paper's defaults, except the queue, sized for a CPU run)."""

    steps: int = field(default=300, metadata={"minimum": 1})
    batch_size: int = field(default=32, metadata={"minimum": 2})
    lr: float = field(default=1e-5, metadata={"minimum": 1e-12, "example": 1e-5})
    # Contriever used 131072 keys over 500k steps; 2048 is 64 batches of 32, a few minutes of keys here.
    queue_size: int = field(default=2048, metadata={"minimum": 0})
    momentum: float = field(default=0.999, metadata={"minimum": 0.0, "maximum": 1.0})
    temperature: float = field(default=0.05, metadata={"minimum": 1e-6})
    crop_min: float = field(default=0.1, metadata={"minimum": 1e-6, "maximum": 1.0})
    crop_max: float = field(default=0.5, metadata={"minimum": 1e-6, "maximum": 1.0})
    delete_prob: float = field(default=0.1, metadata={"minimum": 0.0, "maximum": 0.99})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop_min > self.crop_max:
            raise ConfigError(
                f"crop_min ({self.crop_min}) must not exceed crop_max ({self.crop_max}); "
                "write e.g. --crop-min 0.1 --crop-max 0.5"
            )


# --- the two views ------------------------------------------------------------------------------


def crop_span(n_words: int, rng: random.Random, ratio_min: float, ratio_max: float) -> tuple[int, int]:
    """``(start, end)`` of a random span holding a ``ratio_min``-``ratio_max`` share of ``n_words``.

    The span has at least one word and never leaves the passage (Contriever's ``randomcrop``).
    """
    if n_words < 1:
        raise ValueError("cannot crop an empty passage")
    length = min(n_words, max(1, int(n_words * rng.uniform(ratio_min, ratio_max))))
    start = rng.randint(0, n_words - length)
    return start, start + length


def delete_words(words: Sequence[str], rng: random.Random, prob: float) -> list[str]:
    """``words`` with each one dropped with probability ``prob``; one word is kept if all would go."""
    if not words:
        return []
    kept = [word for word in words if rng.random() >= prob]
    return kept or [words[rng.randrange(len(words))]]


def make_view(words: Sequence[str], rng: random.Random, settings: ContrastiveSettings) -> str:
    """One view of a passage: a random crop, then random word deletion."""
    start, end = crop_span(len(words), rng, settings.crop_min, settings.crop_max)
    return " ".join(delete_words(words[start:end], rng, settings.delete_prob))


def contrastive_views(
    passages: Sequence[str], rows: int, settings: ContrastiveSettings, seed: int = 0
) -> dict[str, list[str]]:
    """``rows`` (query view, key view) pairs, in training order: passages in shuffled passes, two
    independent views each, and no passage twice within one batch of ``settings.batch_size`` rows.

    A passage twice in a batch would be its own negative. All views are drawn up front from ``seed`` and
    the trainer reads the rows in order (:mod:`rag.training.moco`), so a resumed run trains on exactly
    the batches an uninterrupted one would.
    """
    split = [passage.split() for passage in passages]
    usable = [i for i, words in enumerate(split) if words]
    if not usable:
        raise InputFormatError("the corpus has no passage with words to crop", "--corpus")
    distinct = len(usable) >= settings.batch_size  # a corpus smaller than a batch must repeat
    rng = random.Random(seed)
    order: list[int] = []
    anchors: list[str] = []
    positives: list[str] = []
    while len(anchors) < rows:
        batch: list[int] = []
        deferred: list[int] = []
        while len(batch) < min(settings.batch_size, rows - len(anchors)):
            if not order:
                order = usable[:]
                rng.shuffle(order)
            row = order.pop()
            if distinct and row in batch:
                deferred.append(row)  # a new pass began inside this batch: keep it for the next
                continue
            batch.append(row)
        order.extend(deferred)
        for row in batch:
            anchors.append(make_view(split[row], rng, settings))
            positives.append(make_view(split[row], rng, settings))
    return {"anchor": anchors, "positive": positives}


def train_contrastive(
    passages: Sequence[str],
    base: str,
    out_dir: str | Path,
    settings: ContrastiveSettings | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    summary: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Continue training ``base`` contrastively on ``passages``; write a sentence-transformers folder.

    Returns the summary written to ``out_dir/training.json`` (steps, minutes, settings).
    """
    from rag.training.moco import MoCoLoss, moco_trainer_class

    settings = settings or ContrastiveSettings()
    columns = contrastive_views(passages, settings.steps * settings.batch_size, settings, seed=settings.seed)
    log(f"{len(columns['anchor'])} view pairs from {len(passages)} passages")
    model = load_model(base, settings.max_length, pooling="mean")
    loss = MoCoLoss(model, settings.queue_size, settings.momentum, settings.temperature)
    info = {
        "trainer": "contrastive",
        "base": base,
        "loss": "MoCoLoss (InfoNCE, in-batch + queue)",
        **(summary or {}),
    }
    return fit_sentence_transformer(
        model,
        columns,
        loss,
        out_dir,
        settings,
        resume=resume,
        trainer_class=moco_trainer_class(),
        summary=info,
        progress=progress,
    )
