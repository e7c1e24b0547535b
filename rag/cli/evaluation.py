"""``rag eval`` and ``rag eval-chunks``: two fronts over one evaluation engine (:mod:`rag.evaluate`).

    rag eval --config dense --config bm25 --dataset ../shared/data/beir/scifact
    rag eval --config dense --dataset ../shared/data/chunking_eval        # span metrics
    rag eval-chunks --dataset ../shared/data/chunking_eval --chunker recursive --size 400 --overlap 200
    rag eval-chunks --dataset ../shared/data/chunking_eval --grid chunk_grid [--mode bm25 | --config hybrid]

Both print a table (quality, LLM tokens, stage latency, build time) and write ``report.json``, one TREC
run file per config and, for chunk-excerpt sets, ``recall_vs_iou.png`` and ``per_query_distribution.png``
to ``--output``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from rag.cli.base import command, console, default_output, err_console, read_config, warn
from rag.cli.options import (
    DEFAULT_CACHE_DIR,
    BaseConfigOption,
    CacheDirOption,
    ConfigListOption,
    OutputOption,
    ProgressOption,
)
from rag.core.errors import ConfigError, InputFormatError
from rag.core.tokenizers import DEFAULT_TOKENIZER

CHUNKER_METHODS = ("fixed", "recursive", "semantic")
LLM_TOKENIZER_HELP = "Tokenizer that counts the tokens sent to the LLM (the 'LLM tokens' column)"


@command("eval")
def eval_command(
    config: ConfigListOption,
    dataset: Annotated[
        Path,
        typer.Option(
            help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or a chunk-excerpt folder "
            "(questions_df.csv, corpora/) for span metrics"
        ),
    ],
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    depth: Annotated[
        int, typer.Option(min=1, help="Results per query of a BEIR run (MAP@1000 needs 1000, as trec_eval)")
    ] = 1000,
    unit: Annotated[str, typer.Option(help="Unit of span metrics: chars (Chroma) or tokens")] = "chars",
    llm_tokenizer: Annotated[str, typer.Option(help=LLM_TOKENIZER_HELP)] = DEFAULT_TOKENIZER,
    output: OutputOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    progress: ProgressOption = True,
) -> None:
    """Evaluate configs on a dataset: nDCG@10, MAP@100/1000, MRR@10, Recall@10/100 on BEIR; recall,
    precision, Precision-Omega and IoU of the retrieved spans on a chunk-excerpt set; LLM tokens, stage
    latency, queries per second, build time."""
    configs = [read_config(c) for c in config]
    if not dataset.exists():
        raise InputFormatError(
            "dataset folder does not exist; expected a BEIR folder (corpus.jsonl, queries.jsonl, "
            "qrels/<split>.tsv) or a chunk-excerpt folder (questions_df.csv, corpora/)",
            str(dataset),
        )
    from rag.evaluate import evaluate_set, write_report

    results = evaluate_set(
        configs,
        dataset,
        split=split,
        cache_dir=cache_dir,
        progress=progress,
        depth=depth,
        unit=unit,
        llm_tokenizer=llm_tokenizer,
    )
    output = output or default_output()
    write_report(results, output, dataset=str(dataset), split=split, depth=depth)
    print_results(results, f"{dataset} ({results[0].split})")
    console.print(Text(f"run files and report.json written to {output}"))


@command("eval-chunks")
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
    preset: Annotated[
        str | None,
        typer.Option(help="Recursive chunker preset: chroma (Chroma's separators and their placement)"),
    ] = None,
    separator_placement: Annotated[
        str | None,
        typer.Option(help="Recursive chunker: a split-off separator ends the piece (end) or starts the next"),
    ] = None,
    retrieve: Annotated[
        int | None, typer.Option(help="Chunks retrieved per question (default: the grid's, else 5)")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Retrieval mode: dense, bm25 or hybrid (default: the base config's)")
    ] = None,
    config: BaseConfigOption = None,
    unit: Annotated[str, typer.Option(help="Unit of the span metrics: chars (Chroma) or tokens")] = "chars",
    tokenizer: Annotated[
        str, typer.Option(help="Tokenizer for --unit tokens and for the sizes of --chunker")
    ] = DEFAULT_TOKENIZER,
    model: Annotated[
        str | None,
        typer.Option(
            help="Embedding model: folder, installed package or hub id (default: the base config's)"
        ),
    ] = None,
    output: OutputOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    progress: ProgressOption = True,
) -> None:
    """Evaluate chunkers on a chunk-excerpt set: recall, precision, Precision-Omega and IoU, each chunker
    as a config through the engine of `rag eval`."""
    # Arguments and configs first (light), heavy imports after: a wrong option answers at once.
    from rag.chunk_eval import DEFAULT_RETRIEVE, grid_configs

    recursive_options = {"preset": preset, "separator_placement": separator_placement}
    chunkers, grid_retrieve = _chunker_configs(
        chunker, size, overlap, grid, tokenizer, {k: v for k, v in recursive_options.items() if v is not None}
    )
    base = read_config(config) if config is not None else None
    top = retrieve if retrieve is not None else (grid_retrieve or DEFAULT_RETRIEVE)
    configs = grid_configs(chunkers, base, model, top, mode)
    from rag.chunk_eval import run_grid
    from rag.evaluate import is_chunk_eval_folder, load_eval_set, write_report

    if not is_chunk_eval_folder(dataset):
        raise ConfigError(
            f"{dataset} is not a chunk-excerpt set (questions_df.csv and corpora/*.md); "
            "evaluate a BEIR folder with `rag eval`"
        )
    eval_set = load_eval_set(dataset)
    mismatches = eval_set.excerpts.mismatches if eval_set.excerpts else []
    warn([f"reference does not match its corpus: {problem}" for problem in mismatches[:5]])
    if len(mismatches) > 5:
        warn([f"... {len(mismatches) - 5} more mismatched references"])
    results = run_grid(eval_set, configs, unit, tokenizer, cache_dir, progress)
    output = output or default_output("-chunks")
    write_report(
        results,
        output,
        dataset=str(dataset),
        questions=len(eval_set.queries),
        retrieve=top,
        unit=unit,
        tokenizer=tokenizer if unit == "tokens" else None,
        model=configs[0].encoder.model,
        mode=configs[0].retrieval.mode,
        grid=str(grid) if grid else None,
        mismatched_references=len(mismatches),
    )
    print_results(results, f"{dataset.name}: {len(eval_set.queries)} questions, top {top}, {unit}")
    console.print(Text(f"report.json, run files and plots written to {output}"))


def _chunker_configs(
    chunker: str | None,
    size: int,
    overlap: int | None,
    grid: Path | None,
    tokenizer: str,
    recursive_options: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """The chunker configs asked for: the grid file's, or the one ``--chunker`` describes."""
    if grid is not None and chunker is not None:
        raise ConfigError("pass either --chunker (one chunker) or --grid (a grid file), not both")
    if recursive_options and chunker != "recursive":
        raise ConfigError(
            f"--{', --'.join(k.replace('_', '-') for k in recursive_options)} apply to --chunker "
            "recursive only (in a grid file, put them in the chunker's entry)"
        )
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
    settings: dict[str, Any] = {"method": chunker, "size": size, "tokenizer": tokenizer}
    if chunker == "semantic":
        if overlap:
            raise ConfigError("the semantic chunker has no overlap; drop --overlap")
    else:
        settings["overlap"] = size // 2 if overlap is None else overlap
    settings.update(recursive_options or {})
    return [settings], None


def print_results(results: list[Any], title: str) -> None:
    """The table of each kind of result: IR metrics, or span metrics overall and per corpus; cost columns
    (LLM tokens, stage latency) and build time in both."""
    from evaluation.reports import ir_table, rich_table

    records = [r.to_json() for r in results]
    out = console
    if not out.is_terminal:  # a log file or pipe: room for the whole table
        out = Console(width=max(out.width, 150))
    spans = [r for r in records if r["kind"] == "spans"]
    ranked = [r for r in records if r["kind"] != "spans"]
    if ranked:
        out.print(ir_table(ranked, title))
    if spans:
        out.print(rich_table(spans, title))
        out.print(rich_table(spans, f"{title}, per corpus", per_corpus=True))
    if not records:
        err_console.print("no results")
