"""Chroma's chunking grid for all-MiniLM-L6-v2 on its evaluation set, through the evaluation engine.

    python benchmarks/chunking_grid.py [--data ../shared/data/chunking_eval] [--grid configs/chunk_grid.yaml]
        [--mode dense|bm25|hybrid]

Each chunker of the grid becomes a config (rag.chunk_eval.grid_configs: dense retrieval with the bundled
all-MiniLM-L6-v2 over one flat index of every chunk of the five corpora, chunks embedded without titles)
and goes through rag.evaluate, the code of `rag eval`; the top 5 chunks per question are scored in
characters (Chroma's unit). Writes benchmarks/results/chunking_grid.json and the plots
(benchmarks/results/chunking_grid_*.png), prints one table and the wall time of the whole grid. Bundles
and embeddings are cached in benchmarks/.cache, so a second run only redoes the queries and the metrics
(its time then says little about the first).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from rich.console import Console

from evaluation.plots import plot_query_distributions, plot_recall_vs_iou
from evaluation.reports import build_report, rich_table, write_json
from rag.chunk_eval import DEFAULT_RETRIEVE, grid_configs, load_grid, run_grid
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.evaluate import load_eval_set

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "chunking_eval")
    parser.add_argument("--grid", type=Path, default=ROOT / "configs" / "chunk_grid.yaml")
    parser.add_argument("--model", default=DEFAULT_DENSE_MODEL)
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="dense")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    console = Console()
    if not console.is_terminal:  # a log file: room for the whole table instead of 80 columns
        console = Console(width=max(console.width, 170))
    data = load_eval_set(args.data)
    excerpts = data.excerpts
    if excerpts is None:
        raise SystemExit(f"{args.data} is not a chunk-excerpt folder (questions_df.csv, corpora/)")
    grid = load_grid(args.grid)
    retrieve = grid.retrieve or DEFAULT_RETRIEVE
    configs = grid_configs(grid.chunkers, model=args.model, retrieve=retrieve, mode=args.mode)
    started = time.perf_counter()
    results = run_grid(data, configs, unit="chars", cache_dir=args.cache_dir, progress=not args.no_progress)
    total = time.perf_counter() - started
    records = [r.to_json() for r in results]

    report = build_report(
        records,
        dataset=str(args.data),
        questions=len(excerpts.questions),
        references=excerpts.reference_count,
        mismatched_references=len(excerpts.mismatches),
        grid=str(args.grid),
        retrieve=retrieve,
        unit="chars",
        model=args.model,
        mode=args.mode,
        grid_seconds=total,
        bundles_from_cache=[r.name for r in results if r.index_reused],
        machine={
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    )
    suffix = "" if args.mode == "dense" else f"_{args.mode}"
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"chunking_grid{suffix}.json", report)
    plot_recall_vs_iou(records, args.results / f"chunking_grid{suffix}_recall_vs_iou.png")
    plot_query_distributions(records, args.results / f"chunking_grid{suffix}_per_query.png")

    title = (
        f"{args.data.name}: {len(excerpts.questions)} questions, {args.model}, {args.mode}, "
        f"top {retrieve}, characters"
    )
    console.print(rich_table(records, title))
    console.print(f"grid time: {total:.1f} s ({total / 60:.1f} min) for {len(records)} chunkers")
    console.print(f"wrote {args.results / f'chunking_grid{suffix}.json'} and plots in {args.results}")


if __name__ == "__main__":
    main()
