"""ColBERT training: (query, positive, hard negative) with MaxSim, or distillation of a teacher's scores.

``rag train colbert --base MODEL --out DIR --pairs beir:DIR --negatives bm25`` builds a ColBERT model on
the encoder ``MODEL`` (:func:`rag.colbert.model.build_colbert`: a new ``dim`` projection, ``[Q]`` /
``[D]`` markers; a ColBERT checkpoint as ``MODEL`` is trained further instead) and fine-tunes encoder
and projection together with sentence-transformers' ``MultiVectorEncoderTrainer``, which checkpoints,
resumes and draws the progress bar. Two losses:

- **contrastive** (default): ``MultiVectorMultipleNegativesRankingLoss``, a cross-entropy over the MaxSim
  scores of each query against its positive, its mined hard negative and every other document of the
  batch (in-batch negatives; the batch sampler keeps duplicates out of a batch);
- **distillation** (``--distill TEACHER``): ``MultiVectorDistillKLDivLoss``, the KL divergence between
  the softmax of the student's MaxSim scores and of the teacher's scores over the same candidates (the
  positive and the mined negatives), as PyLate's ``Distillation`` loss. The teacher is a dense
  bi-encoder (``dense`` names the bundled MiniLM); its cosines are divided by ``teacher_temperature``.

The trainer's collator tokenizes column 0 as queries (``[MASK]``-expanded to ``query_maxlen``) and the
other columns as documents (cut at ``doc_maxlen``, punctuation masked); the markers are given to it as
per-column prompts, which is how sentence-transformers inserts them (the model's own ``prompts`` are
applied at inference only). Checkpoints go to ``OUT/checkpoint-N``; the final model is written to
``OUT`` itself in PyLate's layout, beside ``loss_log.jsonl`` and ``training.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rag.colbert import DEFAULT_DIM, DEFAULT_DOC_MAXLEN, DEFAULT_QUERY_MAXLEN
from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.training.finetune import TrainSettings
from rag.training.pairs import NEGATIVE_METHODS, TrainingPair

TEACHER_ALIASES = {"dense": DEFAULT_DENSE_MODEL}


@dataclass(frozen=True)
class ColBERTSettings(TrainSettings):
    """ColBERT's settings; the lengths and dim are ColBERTv2's, the rest sized for a CPU run."""

    steps: int = field(default=300, metadata={"minimum": 1})
    batch_size: int = field(default=32, metadata={"minimum": 2})
    lr: float = field(default=3e-5, metadata={"minimum": 1e-12, "example": 3e-5})
    dim: int = field(default=DEFAULT_DIM, metadata={"minimum": 1})
    query_maxlen: int = field(default=DEFAULT_QUERY_MAXLEN, metadata={"minimum": 3})
    doc_maxlen: int = field(default=DEFAULT_DOC_MAXLEN, metadata={"minimum": 3})
    negatives: str = field(default="bm25", metadata={"choices": NEGATIVE_METHODS})
    # Mined negatives per query: the contrastive loss uses the first, distillation all of them.
    negatives_per_query: int = field(default=1, metadata={"minimum": 1})
    skip_top: int = field(default=0, metadata={"minimum": 0})
    # MaxSim sums up to query_maxlen cosines, already a wide logit range: PyLate trains at scale 1.
    scale: float = field(default=1.0, metadata={"minimum": 1e-6})
    distill: str | None = None
    # The teacher's cosines span about [-1, 1]; / 0.05 gives them the spread of the student's MaxSim.
    teacher_temperature: float = field(default=0.05, metadata={"minimum": 1e-6})
    # Wall-clock budget of the training loop: it stops (and saves) at the first step past it. With a
    # time budget, a "constant_with_warmup" schedule keeps the learning rate meaningful wherever it stops.
    max_minutes: float | None = field(default=None, metadata={"minimum": 1e-3, "example": 20.0})
    schedule: str = field(default="linear", metadata={"choices": ("linear", "constant_with_warmup")})
    warmup_steps: int | None = field(default=None, metadata={"minimum": 0, "example": 5})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill is not None and self.negatives == "none":
            raise ConfigError(
                "--distill scores each query's positive against mined negatives, so it needs --negatives "
                "bm25 or dense, not none"
            )


def teacher_name(distill: str) -> str:
    return TEACHER_ALIASES.get(distill, distill)


def training_columns(pairs: Sequence[TrainingPair], n_negatives: int) -> dict[str, list[str]]:
    """``query``, ``positive`` and ``negative_1..n`` columns (pairs short of ``n`` negatives are left out
    when ``n`` > 0, since a column must be full)."""
    rows = [p for p in pairs if len(p.negatives) >= n_negatives] if n_negatives else list(pairs)
    if not rows:
        raise ConfigError(
            f"no training pair has {n_negatives} hard negative(s); mine more (a larger corpus) or use "
            "--negatives none"
        )
    columns = {"query": [p.query for p in rows], "positive": [p.positive for p in rows]}
    for k in range(n_negatives):
        columns[f"negative_{k + 1}"] = [p.negatives[k] for p in rows]
    return columns


def drop_known_positives(pairs: Sequence[TrainingPair]) -> list[TrainingPair]:
    """Strike from each pair's negatives every positive of the same query (SciFact has several)."""
    positives: dict[str, set[str]] = {}
    for pair in pairs:
        positives.setdefault(pair.query, set()).add(pair.positive)
    return [replace(p, negatives=tuple(n for n in p.negatives if n not in positives[p.query])) for p in pairs]


def teacher_scores(teacher: str, columns: dict[str, list[str]], batch_size: int = 64) -> list[list[float]]:
    """The dense teacher's cosine of each query with each of its documents (positive, negatives)."""
    import numpy as np

    from rag.encoders.dense import DenseEncoder

    encoder = DenseEncoder(teacher_name(teacher), batch_size=batch_size)
    queries = encoder.encode_queries(columns["query"])
    doc_columns = [name for name in columns if name != "query"]
    # Each distinct document text is encoded once, however many rows it appears in.
    texts = sorted({t for name in doc_columns for t in columns[name]})
    row = {t: i for i, t in enumerate(texts)}
    docs = encoder.encode_documents(texts)
    scores = np.stack(
        [np.einsum("ij,ij->i", queries, docs[[row[t] for t in columns[name]]]) for name in doc_columns],
        axis=1,
    )
    return [[float(s) for s in r] for r in scores]


def build_or_load(base: str, settings: ColBERTSettings, progress: bool = False) -> Any:
    """A ColBERT checkpoint as ``base`` is trained further; any other encoder gets a new projection."""
    import torch

    from rag.colbert.loaders import checkpoint_layout, load_colbert
    from rag.colbert.model import build_colbert, set_lengths
    from rag.core.models import resolve_model

    torch.manual_seed(settings.seed)  # the new projection's and marker embeddings' initial values
    if checkpoint_layout(resolve_model(base)) != "encoder":
        model = load_colbert(base, progress=progress)
        set_lengths(model, settings.query_maxlen, settings.doc_maxlen)
        return model
    return build_colbert(
        base,
        dim=settings.dim,
        query_maxlen=settings.query_maxlen,
        doc_maxlen=settings.doc_maxlen,
        progress=progress,
    )


def fit_colbert(
    model: Any,
    columns: dict[str, list[str]],
    out_dir: str | Path,
    settings: ColBERTSettings,
    *,
    resume: bool = False,
    progress: bool = True,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``columns`` (``label``: teacher scores, for distillation); save to ``out_dir``."""
    from datasets import Dataset
    from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments
    from sentence_transformers.multi_vector_encoder.losses import (
        MultiVectorDistillKLDivLoss,
        MultiVectorMultipleNegativesRankingLoss,
    )

    from rag.colbert.model import colbert_settings, save_colbert
    from rag.training.common import (
        LossLogCallback,
        TimeLimitCallback,
        read_loss_log,
        resume_from,
        training_arguments,
        write_training_summary,
    )

    out = Path(out_dir)
    checkpoint = resume_from(out, resume)
    distill = "label" in columns
    loss = (
        MultiVectorDistillKLDivLoss(
            model, student_temperature=1.0, teacher_temperature=settings.teacher_temperature
        )
        if distill
        else MultiVectorMultipleNegativesRankingLoss(model, scale=settings.scale)
    )
    markers = colbert_settings(model)
    prompts = {name: markers["document_marker"] for name in columns if name not in ("query", "label")}
    prompts["query"] = markers["query_marker"]
    arguments = MultiVectorEncoderTrainingArguments(
        **training_arguments(
            out,
            max_steps=settings.steps,
            batch_size=settings.batch_size,
            learning_rate=settings.lr,
            seed=settings.seed,
            save_steps=settings.save_steps,
            disable_tqdm=not progress,
            prompts=prompts,
            # In-batch negatives must not be copies of the positive (SciFact queries share documents).
            batch_sampler="no_duplicates",
            lr_scheduler_type=settings.schedule,
            **({} if settings.warmup_steps is None else {"warmup_steps": settings.warmup_steps}),
        )
    )
    limit = TimeLimitCallback(settings.max_minutes) if settings.max_minutes else None
    trainer = MultiVectorEncoderTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=[LossLogCallback(out)] + ([limit] if limit else []),
    )
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint)
    minutes = (time.monotonic() - started) / 60
    save_colbert(model, out)
    log = read_loss_log(out)
    info = {
        **(summary or {}),
        "loss": type(loss).__name__,
        "steps": trainer.state.global_step,
        "resumed_from": checkpoint,
        "stopped_by_time_limit": bool(limit and limit.stopped_at),
        "minutes": round(minutes, 3),
        "rows": len(columns["query"]),
        "columns": [name for name in columns if name != "label"],
        "loss_start": log[0]["loss"] if log else None,
        "loss_end": log[-1]["loss"] if log else None,
        "settings": asdict(settings),
    }
    write_training_summary(out, info)
    return info


def train_colbert(
    pairs_source: str,
    base: str,
    out_dir: str | Path,
    settings: ColBERTSettings | None = None,
    *,
    limit: int | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a ColBERT model on ``pairs_source`` (``beir:DIR[:SPLIT]``, ``squad:FILE``, ``crop:CORPUS``).

    Negatives are mined from the source's corpus (the BEIR corpus, the corpus cropped from, or the
    SQuAD paragraphs) with ``settings.negatives``; a query's other positives are never its negatives.
    """
    from rag.training.pairs import load_pairs, mine_hard_negatives, source_passages

    settings = settings or ColBERTSettings()
    started = time.monotonic()
    pairs = load_pairs(pairs_source, limit=limit, seed=settings.seed)
    n_negatives = 0
    if settings.negatives != "none":
        corpus = source_passages(pairs_source, pairs)
        n_negatives = settings.negatives_per_query if settings.distill else 1
        # One spare candidate per negative, for when a query's other positives are struck out.
        mined = mine_hard_negatives(
            pairs,
            corpus,
            method=settings.negatives,
            per_query=n_negatives + 1,
            skip_top=settings.skip_top,
            seed=settings.seed,
        )
        pairs = drop_known_positives(mined)
    columns: dict[str, Any] = training_columns(pairs, n_negatives)
    if settings.distill:
        columns["label"] = teacher_scores(settings.distill, columns)
    data_minutes = (time.monotonic() - started) / 60
    log(
        f"{len(columns['query'])} training rows ({', '.join(c for c in columns if c != 'label')}) "
        f"from {pairs_source}"
    )
    model = build_or_load(base, settings, progress=progress)
    summary = {
        "trainer": "colbert",
        "base": base,
        "pairs": pairs_source,
        "negatives": settings.negatives,
        "teacher": teacher_name(settings.distill) if settings.distill else None,
        "data_minutes": round(data_minutes, 3),
    }
    return fit_colbert(model, columns, out_dir, settings, resume=resume, progress=progress, summary=summary)
