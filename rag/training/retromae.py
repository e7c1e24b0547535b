"""RetroMAE and DupMAE continued pretraining (Xiao et al. 2022; RetroMAE v2 / DupMAE, Xiao & Liu 2022).

RetroMAE trains the encoder's [CLS] vector to carry the passage:

- **Encoder**: the passage with ``encoder_mask`` (30%) of its ordinary tokens masked (BERT's 80/10/10
  replacement, transformers' ``DataCollatorForLanguageModeling``), trained with MLM. Its last-layer
  [CLS] vector is the sentence embedding.
- **Enhanced decoder**: one transformer layer that rebuilds *every* ordinary token of the passage from
  the [CLS] vector and a more heavily masked view (``decoder_mask``, 50%) of the passage. Two streams:
  the query stream ``H1[i] = h_cls + p_i`` (the sentence vector plus the position of the token to
  predict) and the content stream ``H2 = [h_cls, e(x_1) + p_1, ..., e(x_N) + p_N]``. Attention runs from
  H1 to H2 under a **position-specific mask**: row ``i`` sees the [CLS] column always, and a random
  ``1 - decoder_mask`` share of the other ordinary tokens, never token ``i`` itself (sampled afresh for
  every row, as the paper's ``s(X_{!=i})``).
- **DupMAE** (``duplex=True``) adds the bag-of-words objective on the ordinary tokens: the encoder's MLM
  logits are max-pooled over the ordinary positions into a ``|V|``-dim vector, whose softmax must
  predict the set of token ids of the passage (cross-entropy against the uniform distribution over that
  set), weighted by ``bow_weight`` (0.1, the reference implementation's default).

Loss = encoder MLM + decoder reconstruction (+ ``bow_weight`` * BoW).

The default base, all-MiniLM-L6-v2, is a ``BertModel`` shipped without its MLM head, so the head is
new: its transform (dense + GELU + LayerNorm) starts random, and its output projection is **tied** to the
backbone's word embeddings (plus a zero bias), so the vocabulary side starts from trained weights. The
decoder layer starts random (as the reference implementation's ``c_head``); it reads the backbone's own
embedding layer. Only the encoder is saved: a sentence-transformers folder with **CLS pooling**
(``Transformer`` + ``Pooling(cls)`` + ``Normalize``), which ``encoder.model: DIR`` uses in any dense
config. A DupMAE run also saves its MLM head under ``DIR/dupmae/`` for the combined representation
(:mod:`rag.encoders.dupmae`).

Masking is per token (not whole-word as in the reference code): the rates are then exact in expectation
and easy to check; the paper states rates, not the word rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.core.errors import ConfigError
from rag.core.validation import positive_int
from rag.encoders.dupmae import HEAD_DIR as DUPMAE_HEAD_DIR  # where a DupMAE run saves its MLM head


@dataclass(frozen=True)
class RetroMAESettings:
    """What shapes a RetroMAE / DupMAE run (saved in ``training.json``)."""

    encoder_mask: float = 0.3
    decoder_mask: float = 0.5
    max_length: int = 256
    duplex: bool = False
    bow_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("encoder_mask", "decoder_mask"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
                raise ConfigError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
        positive_int(self.max_length, "max_length")
        if self.max_length < 4:
            raise ConfigError(f"max_length must be at least 4 tokens, got {self.max_length}")
        if not self.bow_weight >= 0:
            raise ConfigError(f"bow_weight must be >= 0, got {self.bow_weight!r}")


@dataclass(frozen=True)
class RetroMAERun:
    """What :func:`train_retromae` did."""

    out_dir: Path
    steps: int
    minutes: float
    loss_start: float | None
    loss_end: float | None


def train_retromae(
    corpus: str | Path | Sequence[str],
    base: str,
    out_dir: str | Path,
    settings: RetroMAESettings | None = None,
    *,
    steps: int = 500,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    seed: int = 42,
    resume: bool = False,
    save_steps: int | None = None,
    max_minutes: float | None = None,
    progress: bool = True,
) -> RetroMAERun:
    """Pretrain ``base`` with RetroMAE (DupMAE when ``settings.duplex``) on ``corpus``; save to ``out_dir``.

    ``corpus`` is anything ``rag index`` reads (texts ``title + " " + text``) or a list of passages.
    Checkpoints (``checkpoint-N``) and ``loss_log.jsonl`` go to ``out_dir``; ``resume`` continues from
    the newest checkpoint. ``max_minutes`` stops the run early (after the step that crosses it), for
    runs with a CPU time budget. The saved model is a CLS-pooled sentence-transformers folder.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    from rag.training.common import (
        LossLogCallback,
        TimeLimitCallback,
        read_loss_log,
        resume_from,
        training_arguments,
        write_training_summary,
    )
    from rag.training.pairs import read_passages
    from rag.training.retromae_model import (
        PassageDataset,
        RetroMAECollator,
        RetroMAEModel,
        cls_sentence_model,
        load_encoder,
        save_dupmae_head,
        tokenize_passages,
    )

    settings = settings or RetroMAESettings()
    out = Path(out_dir)
    checkpoint = resume_from(out, resume)
    passages = list(corpus) if not isinstance(corpus, str | Path) else read_passages(corpus)
    st_model = load_encoder(base, settings.max_length)
    tokenizer = st_model.tokenizer
    token_ids = tokenize_passages(tokenizer, passages, settings.max_length)
    torch.manual_seed(seed)
    model = RetroMAEModel(st_model[0].auto_model, settings)

    args = TrainingArguments(
        **training_arguments(
            out,
            max_steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            save_steps=save_steps,
            remove_unused_columns=False,  # the collator builds the model's inputs itself
            disable_tqdm=not progress,
        )
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=PassageDataset(token_ids),
        data_collator=RetroMAECollator(tokenizer, settings, seed=seed),
        callbacks=[LossLogCallback(out), *([TimeLimitCallback(max_minutes)] if max_minutes else [])],
    )
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint)
    minutes = (time.monotonic() - started) / 60

    cls_sentence_model(st_model).save(str(out))
    if settings.duplex:
        save_dupmae_head(model.head, out / DUPMAE_HEAD_DIR)
    log = read_loss_log(out)
    losses = [r["loss"] for r in log if isinstance(r.get("loss"), int | float) and math.isfinite(r["loss"])]
    run = RetroMAERun(
        out, trainer.state.global_step, minutes, losses[0] if losses else None, losses[-1] if losses else None
    )
    write_training_summary(
        out,
        {
            "method": "dupmae" if settings.duplex else "retromae",
            "base": base,
            "corpus": str(corpus) if isinstance(corpus, str | Path) else f"{len(passages)} passages",
            "passages": len(token_ids),
            "steps": run.steps,
            "minutes": round(minutes, 2),
            "loss_start": run.loss_start,
            "loss_end": run.loss_end,
            "settings": asdict(settings),
            "args": {
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "seed": seed,
                "resumed_from": checkpoint,
            },
            "pooling": "cls",
        },
    )
    return run
