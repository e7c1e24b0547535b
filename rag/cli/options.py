"""Options shared by several commands, declared once (``Annotated`` aliases for Typer).

A command takes one by annotating a parameter with it; the parameter's name gives the flag, and the
default is the command's own (``progress: ProgressOption = True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CONFIG_HELP = "Pipeline config: a YAML file, or the name of a ready-made one (`rag configs` lists them)"
DEFAULT_CACHE_DIR = Path("runs/cache")

# --config: one required config, an optional override, or several (one table).
ConfigOption = Annotated[
    Path, typer.Option("--config", help=CONFIG_HELP + ", e.g. dense or configs/dense.yaml")
]
OptionalConfigOption = Annotated[
    Path | None, typer.Option("--config", help=CONFIG_HELP + " (default: the bundle's own)")
]
ConfigListOption = Annotated[
    list[Path], typer.Option("--config", help=CONFIG_HELP + "; repeat for several in one table")
]
IndexOption = Annotated[Path, typer.Option("--index", help="Index bundle written by `rag index`")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars")]
CacheDirOption = Annotated[
    Path,
    typer.Option("--cache-dir", help="Cache of index bundles and embeddings between runs (rag.core.cache)"),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", help="Folder for report.json, run files and plots (default: runs/<time>)"),
]
BaseConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help=CONFIG_HELP + ", the base of every chunker's config (default: dense, flat index)"
    ),
]

# Options every `rag train` command shares.
SaveStepsOption = Annotated[int | None, typer.Option(help="Checkpoint every N steps (default: 4 a run)")]
MaxMinutesOption = Annotated[
    float | None, typer.Option(help="Stop (and save) after this much wall time, whatever --steps says")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Go on from the newest checkpoint in --out")]
