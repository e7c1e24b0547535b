"""Chroma's chunking grid for all-MiniLM-L6-v2 on its evaluation set, through `rag.chunk_eval`.

    python benchmarks/chunking_grid.py [--data ../shared/data/chunking_eval] [--grid configs/chunk_grid.yaml]

Every chunk of the five corpora goes into one flat index embedded by the bundled all-MiniLM-L6-v2; the
top 5 chunks per question are scored in characters (Chroma's unit). Writes
benchmarks/results/chunking_grid.json and the plots (benchmarks/results/chunking_grid_*.png), prints one
table and the wall time of the whole grid. Chunk offsets and embeddings are cached in benchmarks/.cache,
so a second run only redoes the search and the metrics (its time then says little about the first).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from rich.console import Console

from evaluation.datasets import load_chunk_eval
from evaluation.plots import plot_query_distributions, plot_recall_vs_iou
from evaluation.reports import build_report, rich_table, write_json
from rag.chunk_eval import load_grid, run_grid
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.encoders.dense import DenseEncoder

ROOT = Path(__file__).resolve().parents[1]

def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "chunking_eval")
    parser.add_argument("--grid", type=Path, default=ROOT / "configs" / "chunk_grid.yaml")
    parser.add_argument("--model", default=DEFAULT_DENSE_MODEL)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    console = Console()
    if not console.is_terminal:  # a log file: room for the whole table instead of 80 columns
        console = Console(width=max(console.width, 150))
    data = load_chunk_eval(args.data)
    grid = load_grid(args.grid)
    retrieve = grid.retrieve or 5
    started = time.perf_counter()
    results = run_grid(
        data,
        grid.chunkers,
        retrieve=retrieve,
        encoder=DenseEncoder(args.model),
        unit="chars",
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    total = time.perf_counter() - started
    records = [r.to_dict() for r in results]

    report = build_report(
        records,
        dataset=str(args.data),
        questions=len(data.questions),
        references=data.reference_count,
        mismatched_references=len(data.mismatches),
        grid=str(args.grid),
        retrieve=retrieve,
        unit="chars",
        model=args.model,
        grid_seconds=total,
        embeddings_from_cache=[r.name for r in results if r.embeddings_cached],
        machine={
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    )
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "chunking_grid.json", report)
    plot_recall_vs_iou(records, args.results / "chunking_grid_recall_vs_iou.png")
    plot_query_distributions(records, args.results / "chunking_grid_per_query.png")

    title = f"{args.data.name}: {len(data.questions)} questions, {args.model}, top {retrieve}, characters"
    console.print(rich_table(records, title))
    console.print(f"grid time: {total:.1f} s ({total / 60:.1f} min) for {len(records)} chunkers")
    console.print(f"wrote {args.results / 'chunking_grid.json'} and plots in {args.results}")


if __name__ == "__main__":
    main()
