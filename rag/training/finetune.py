"""Short supervised fine-tune of a dense retriever: (query, positive, hard negative) triples and
sentence-transformers' ``MultipleNegativesRankingLoss`` (InfoNCE over in-batch and mined negatives).

``rag train finetune --pairs beir:DIR --base MODEL --out DIR --negatives bm25`` reads the judged pairs of
a BEIR train split through :func:`rag.training.pairs.load_pairs`, adds one negative per pair with
:func:`rag.training.pairs.mine_hard_negatives` and trains with sentence-transformers' own trainer, which
checkpoints, resumes and draws the progress bar. The result is a sentence-transformers folder that
``rag index`` takes as ``encoder.model``.

:func:`fit_sentence_transformer` is the trainer plumbing this module and :mod:`rag.training.contrastive`
share: one place that builds the trainer arguments, the loss log, the resume point and the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError
from rag.core.validation import check_instance
from rag.training.pairs import NEGATIVE_METHODS, TrainingPair

_POSITIVE = {"minimum": 1}


@dataclass(frozen=True)
class TrainSettings:
    """What every sentence-transformers run here takes: steps, batch, learning rate, length, seed."""

    steps: int = field(default=60, metadata=_POSITIVE)
    batch_size: int = field(default=32, metadata=_POSITIVE)
    lr: float = field(default=2e-5, metadata={"minimum": 1e-12, "example": 2e-5})
    # Tokens per text during training; None: the base model's own maximum (256 for MiniLM).
    max_length: int | None = field(default=None, metadata={"minimum": 8, "example": 256})
    save_steps: int | None = field(default=None, metadata={"minimum": 1, "example": 50})
    seed: int = 42
    # Wall-clock cap: training stops (and saves) at the first step past it; None: the step count only.
    max_minutes: float | None = field(default=None, metadata={"minimum": 0.01, "example": 12.0})

    def __post_init__(self) -> None:
        check_instance(self)


@dataclass(frozen=True)
class FinetuneSettings(TrainSettings):
    """The supervised fine-tune: how negatives are mined and how sharp the softmax is."""

    negatives: str = field(default="bm25", metadata={"choices": NEGATIVE_METHODS})
    # Mined ranks passed over before sampling (the top of a ranking is often an unjudged positive).
    skip_top: int = field(default=0, metadata={"minimum": 0})
    # MNRL's scale is 1 / temperature: 20 is temperature 0.05, the contrastive default too.
    scale: float = field(default=20.0, metadata={"minimum": 1e-6})


def load_model(base: str, max_length: int | None = None, pooling: str | None = None) -> Any:
    """A sentence-transformers model from ``base`` (resolved offline), on CPU.

    ``pooling`` ``"mean"`` replaces the model's pooling module by mean pooling when it pools otherwise
    (a plain Hugging Face folder gets mean pooling from sentence-transformers already).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    from rag.training.common import check_base_model

    model = SentenceTransformer(check_base_model(base), device="cpu")
    if max_length is not None:
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise ConfigError(
                f"--max-length {max_length} is beyond {base}'s {limit} positions; use at most {limit}"
            )
        model.max_seq_length = max_length
    if pooling is not None:
        for name, module in model.named_children():
            if isinstance(module, Pooling) and module.pooling_mode != pooling:
                model._modules[name] = Pooling(module.embedding_dimension, pooling_mode=pooling)
    return model


def fit_sentence_transformer(
    model: Any,
    columns: dict[str, list[str]],
    loss: Any,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    resume: bool = False,
    trainer_class: type | None = None,
    summary: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on the text ``columns`` with ``loss``; save it to ``out_dir``; return the summary.

    Checkpoints go to ``out_dir/checkpoint-N`` (the last two are kept); with ``resume`` training goes on
    from the newest of them to ``settings.steps`` in all. The final model is written to ``out_dir``
    itself, so the folder is a sentence-transformers model; ``loss_log.jsonl`` and ``training.json``
    lie beside it.
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from rag.training.common import LossLogCallback, resume_from, training_arguments, write_training_summary

    out = Path(out_dir)
    checkpoint = resume_from(out, resume)
    arguments = SentenceTransformerTrainingArguments(
        **training_arguments(
            out,
            max_steps=settings.steps,
            batch_size=settings.batch_size,
            learning_rate=settings.lr,
            seed=settings.seed,
            save_steps=settings.save_steps,
            disable_tqdm=not progress,
        )
    )
    callbacks: list[Any] = [LossLogCallback(out)]
    if settings.max_minutes is not None:
        from rag.training.common import TimeLimitCallback

        callbacks.append(TimeLimitCallback(settings.max_minutes))
    trainer_class = trainer_class or SentenceTransformerTrainer
    trainer = trainer_class(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=callbacks,
    )
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint)
    minutes = (time.monotonic() - started) / 60
    model.save_pretrained(str(out))
    info = {
        **(summary or {}),
        "steps": trainer.state.global_step,
        "stopped_by_time": trainer.state.global_step < settings.steps,
        "resumed_from": checkpoint,
        "minutes": round(minutes, 3),
        "rows": len(next(iter(columns.values()))),
        "settings": asdict(settings),
    }
    write_training_summary(out, info)
    return info


def triplet_columns(pairs: Sequence[TrainingPair]) -> dict[str, list[str]]:
    """``anchor`` / ``positive`` (/ ``negative``) columns; pairs without a negative are left out when
    others have one, since a column must be full."""
    with_negative = [pair for pair in pairs if pair.negatives]
    if with_negative:
        return {
            "anchor": [pair.query for pair in with_negative],
            "positive": [pair.positive for pair in with_negative],
            "negative": [pair.negatives[0] for pair in with_negative],
        }
    return {"anchor": [pair.query for pair in pairs], "positive": [pair.positive for pair in pairs]}


def finetune(
    pairs_source: str,
    base: str,
    out_dir: str | Path,
    settings: FinetuneSettings | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    corpus_texts: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``pairs_source`` (``beir:DIR[:SPLIT]``, ``squad:FILE``, ``crop:CORPUS``).

    Negatives are mined from ``corpus_texts`` (default: the BEIR folder's corpus, or the pairs'
    positives for other sources) with ``settings.negatives``; the other positives of the same query
    are never taken as its negative.
    """
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from rag.training.pairs import load_pairs, mine_hard_negatives, source_passages

    settings = settings or FinetuneSettings()
    pairs = load_pairs(pairs_source, seed=settings.seed)
    if settings.negatives != "none":
        texts = corpus_texts if corpus_texts is not None else source_passages(pairs_source, pairs)
        # Two candidates each, so that one remains after the query's other positives are struck out.
        mined = mine_hard_negatives(
            pairs,
            texts,
            method=settings.negatives,
            per_query=2,
            skip_top=settings.skip_top,
            seed=settings.seed,
        )
        pairs = _one_negative(mined, texts, settings.seed)
    columns = triplet_columns(pairs)
    log(f"{len(columns['anchor'])} training rows ({', '.join(columns)}) from {pairs_source}")
    model = load_model(base, settings.max_length)
    loss = MultipleNegativesRankingLoss(model, scale=settings.scale)
    summary = {
        "trainer": "finetune",
        "base": base,
        "pairs": pairs_source,
        "loss": "MultipleNegativesRankingLoss",
    }
    return fit_sentence_transformer(
        model, columns, loss, out_dir, settings, resume=resume, summary=summary, progress=progress
    )


def _one_negative(
    pairs: Sequence[TrainingPair], texts: Sequence[str] | dict[str, str] = (), seed: int = 0
) -> list[TrainingPair]:
    """One negative per pair that is not a positive of the same query (SciFact queries have several).

    A pair left without one (BM25 matched nothing else) gets a random corpus passage instead, so that
    no pair is dropped from a full ``negative`` column.
    """
    import random
    from dataclasses import replace

    pool = list(texts.values()) if isinstance(texts, dict) else list(texts)
    rng = random.Random(seed)
    positives: dict[str, set[str]] = {}
    for pair in pairs:
        positives.setdefault(pair.query, set()).add(pair.positive)
    kept = []
    for pair in pairs:
        negatives = tuple(n for n in pair.negatives if n not in positives[pair.query])[:1]
        if not negatives and len(pool) > len(positives[pair.query]):
            while not negatives or negatives[0] in positives[pair.query]:
                negatives = (pool[rng.randrange(len(pool))],)
        kept.append(replace(pair, negatives=negatives))
    return kept


def check_out_dir(out_dir: str | Path, resume: bool) -> None:
    """A new run writes to a new or empty folder; ``--resume`` needs one that holds a checkpoint."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder for the trained model")
    if resume:
        from rag.training.common import resume_from

        resume_from(out, True)
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} is not empty; pass --resume to go on from its checkpoints, or name a new folder"
        )
