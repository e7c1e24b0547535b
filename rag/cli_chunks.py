"""``rag eval-chunks``: evaluate one chunker, or a grid of chunkers, on a chunk-excerpt set.

    rag eval-chunks --dataset ../shared/data/chunking_eval --chunker recursive --size 400 --overlap 200
    rag eval-chunks --dataset ../shared/data/chunking_eval --grid configs/chunk_grid.yaml
    rag eval-chunks --dataset ../shared/data/chunking_eval --grid chunk_grid    # the same, by name

Prints the overall table (recall, precision, Precision-Omega, IoU as mean ± std in percent, chunk size,
chunk count, seconds) and the per-corpus table, and writes ``report.json``, ``recall_vs_iou.png`` and
``per_query_distribution.png`` to ``--output``. Method: :mod:`rag.chunk_eval`.

Registered on the main app by :func:`register` (called from :mod:`rag.cli`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.tokenizers import DEFAULT_TOKENIZER

CHUNKER_METHODS = ("fixed", "recursive", "semantic")


def eval_chunks(
    dataset: Annotated[Path, typer.Option(help="Chunk-excerpt folder (questions_df.csv + corpora/*.md)")],
    chunker: Annotated[
        str | None, typer.Option(help="Chunker to evaluate: fixed, recursive or semantic (or use --grid)")
    ] = None,
    size: Annotated[int, typer.Option(help="Chunk size, in tokens of --tokenizer")] = 400,
    overlap: Annotated[
        int | None, typer.Option(help="Overlap in tokens (fixed, recursive; default: half of --size)")
    ] = None,
    grid: Annotated[
        Path | None,
        typer.Option(help="Grid YAML of chunkers to compare, or a ready-made one by name, e.g. chunk_grid"),
    ] = None,
    retrieve: Annotated[
        int | None, typer.Option(help="Chunks retrieved per question (default: the grid's, else 5)")
    ] = None,
    unit: Annotated[str, typer.Option(help="Unit of the span metrics: chars (Chroma) or tokens")] = "chars",
    tokenizer: Annotated[
        str, typer.Option(help="Tokenizer for --unit tokens and for the sizes of --chunker")
    ] = DEFAULT_TOKENIZER,
    model: Annotated[str, typer.Option(help="Embedding model: folder, installed package or hub id")] = (
        DEFAULT_DENSE_MODEL
    ),
    output: Annotated[
        Path | None, typer.Option(help="Folder for report.json and plots (default: runs/<time>-chunks)")
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="Cache of chunk offsets and embeddings")] = Path(
        "runs/cache"
    ),
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Evaluate chunkers on a chunk-excerpt set: recall, precision, Precision-Omega and IoU."""
    # Arguments first, heavy imports after: a wrong option answers at once.
    configs, grid_retrieve = _chunker_configs(chunker, size, overlap, grid, tokenizer)
    from evaluation.datasets import load_chunk_eval
    from evaluation.plots import plot_chunking_results
    from evaluation.reports import build_report, rich_table, write_json
    from rag.chunk_eval import run_grid
    from rag.encoders.dense import DenseEncoder

    top = retrieve if retrieve is not None else (grid_retrieve or 5)
    data = load_chunk_eval(dataset)
    err = Console(stderr=True)
    for problem in data.mismatches[:5]:
        shown = escape(str(problem))
        err.print(f"[yellow]warning:[/] reference does not match its corpus: {shown}", highlight=False)
    if len(data.mismatches) > 5:
        err.print(f"[yellow]warning:[/] ... {len(data.mismatches) - 5} more mismatched references")
    encoder = DenseEncoder(model)
    results = run_grid(data, configs, top, encoder, unit, tokenizer, cache_dir, progress)
    records = [r.to_dict() for r in results]

    output = output or Path("runs") / (datetime.now().strftime("%Y%m%d-%H%M%S") + "-chunks")
    output.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "dataset": str(dataset),
        "questions": len(data.questions),
        "retrieve": top,
        "unit": unit,
        "tokenizer": tokenizer if unit == "tokens" else None,
        "model": model,
        "grid": str(grid) if grid else None,
        "mismatched_references": len(data.mismatches),
    }
    write_json(output / "report.json", build_report(records, **settings))
    plots = plot_chunking_results(records, output)
    title = f"{dataset.name}: {len(data.questions)} questions, top {top}, {unit}"
    console = Console()
    if not console.is_terminal:  # a log file or pipe: room for the whole table instead of 80 columns
        console = Console(width=max(console.width, 150))
    console.print(rich_table(records, title))
    console.print(rich_table(records, f"{title}, per corpus", per_corpus=True))
    console.print(Text(f"report.json and {', '.join(p.name for p in plots)} written to {output}"))


def _chunker_configs(
    chunker: str | None, size: int, overlap: int | None, grid: Path | None, tokenizer: str
) -> tuple[list[dict[str, Any]], int | None]:
    """The chunker configs asked for: the grid file's, or the one ``--chunker`` describes."""
    if grid is not None and chunker is not None:
        raise ConfigError("pass either --chunker (one chunker) or --grid (a grid file), not both")
    if grid is not None:
        import configs
        from rag.chunk_eval import load_grid

        parsed = load_grid(configs.resolve(grid))
        return parsed.chunkers, parsed.retrieve
    if chunker is None:
        raise ConfigError(
            "say what to evaluate: --chunker fixed|recursive|semantic (with --size, --overlap), "
            "or --grid configs/chunk_grid.yaml"
        )
    if chunker not in CHUNKER_METHODS:
        raise ConfigError(f"--chunker must be one of {', '.join(CHUNKER_METHODS)}, got {chunker!r}")
    config: dict[str, Any] = {"method": chunker, "size": size, "tokenizer": tokenizer}
    if chunker == "semantic":
        if overlap:
            raise ConfigError("the semantic chunker has no overlap; drop --overlap")
    else:
        config["overlap"] = size // 2 if overlap is None else overlap
    return [config], None


def register(app: typer.Typer) -> None:
    """Add ``eval-chunks`` to ``app``; errors of ours print one line and exit with status 2."""
    from rag.cli import friendly_errors  # here, not at import: rag.cli imports this module

    app.command("eval-chunks")(friendly_errors(eval_chunks))
