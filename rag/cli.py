"""Command line: ``rag index | query | eval | quickstart``.

Errors of ours (bad input, bad config, corrupt index, missing model) print one clear line and exit with
status 2 instead of a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from rag.core.config import RagConfig, load_config
from rag.core.errors import RagError
from rag.demo import DEMO_DIR

app = typer.Typer(
    help="Retrieval-augmented pipelines: build indexes, query them, evaluate retrieval.",
    no_args_is_help=True,
    add_completion=False,
)
# Piped output (logs, CI) gets rich's 80 columns by default, which squeezes the metric tables.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@app.command()
@friendly_errors
def index(
    config: Annotated[Path, typer.Option(help="Pipeline config YAML, e.g. configs/dense.yaml")],
    corpus: Annotated[
        Path, typer.Option(help="BEIR folder, JSONL file (id, text, title?) or folder of .txt/.md")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the index bundle to (replaced atomically)")],
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Build an index bundle from a corpus."""
    from rag.pipelines import build_bundle

    summary = build_bundle(load_config(config), corpus, out, progress=progress)
    table = Table(title=f"index {summary.path}", show_header=False)
    table.add_row("documents", str(summary.documents))
    table.add_row("chunks", str(summary.chunks))
    table.add_row("indexes", ", ".join(summary.indexes))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    table.add_row("on disk", _human_bytes(summary.bytes_on_disk))
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped ({reason})", str(count))
    console.print(table)
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def query(
    text: Annotated[str, typer.Argument(help="The query")],
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
    top_k: Annotated[int, typer.Option(help="Number of passages to print")] = 5,
    config: Annotated[
        Path | None, typer.Option(help="Config to query with (default: the bundle's own)")
    ] = None,
    snippet: Annotated[int, typer.Option(help="Characters of each passage to print")] = 200,
) -> None:
    """Print the top-k passages for a query, with ids, scores and snippets."""
    from rag.pipelines import build_pipeline, retrieve

    pipeline = build_pipeline(load_config(config) if config else None, index)
    pipeline.warm_up()
    started = time.perf_counter()
    documents = retrieve(pipeline, text, top_k=top_k)
    print_ranking(text, documents, time.perf_counter() - started, snippet)


@app.command()
@friendly_errors
def add(
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
    corpus: Annotated[Path, typer.Option(help="Documents to add (same formats as `rag index`)")],
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Add documents to an existing index bundle (chunked and encoded as the bundle was built)."""
    from rag.pipelines import add_to_bundle

    summary = add_to_bundle(index, corpus, progress=progress)
    console.print(f"added {summary.documents} documents ({summary.chunks} chunks) in {summary.seconds:.1f} s")
    for reason, count in sorted(summary.skipped.items()):
        console.print(f"skipped ({reason}): {count}")
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids (all their chunks go) or chunk ids")],
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
) -> None:
    """Delete documents by id from an index bundle."""
    from rag.pipelines import delete_from_bundle

    removed = delete_from_bundle(index, ids)
    console.print(f"deleted {removed} chunks")


def print_ranking(text: str, documents: list[Any], seconds: float, snippet: int = 200) -> None:
    table = Table(title=f"{text!r}  ({seconds * 1000:.0f} ms)", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("passage")
    for rank, doc in enumerate(documents, start=1):
        content = " ".join((doc.content or "").split())
        title = doc.meta.get("title")
        shown = (
            (f"[bold]{title}[/] " if title else "")
            + content[:snippet]
            + ("…" if len(content) > snippet else "")
        )
        table.add_row(str(rank), str(doc.id), f"{doc.score:.4f}", shown)
    console.print(table)


def _default_output() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


@app.command("eval")
@friendly_errors
def eval_command(
    config: Annotated[list[Path], typer.Option(help="Pipeline config YAML; repeat for several in one table")],
    dataset: Annotated[
        Path,
        typer.Option(
            help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or a chunk-excerpt folder "
            "(questions_df.csv, corpora/) for span metrics"
        ),
    ],
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    output: Annotated[
        Path | None, typer.Option(help="Folder for run files and report (default: runs/<time>)")
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="Where index bundles are cached between runs")] = Path(
        "runs/cache"
    ),
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Evaluate configs on a dataset: nDCG@10, MAP@100, MRR@10, Recall@10/100 on BEIR; recall, precision,
    Precision-Omega and IoU of the retrieved spans on a chunk-excerpt set; queries per second, build time."""
    results = run_evaluations([load_config(c) for c in config], dataset, split, cache_dir, progress)
    output = output or _default_output()
    write_eval_outputs(results, output)
    print_eval_table(results, f"{dataset} ({split})")
    console.print(f"run files and report.json written to {output}")


def run_evaluations(
    configs: list[RagConfig], dataset: Path, split: str, cache_dir: Path, progress: bool
) -> list[Any]:
    from rag.evaluate import evaluate_config

    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise RagError(f"configs must have distinct names (run files are named by them), got {names}")
    return [evaluate_config(c, dataset, split, cache_dir, progress=progress) for c in configs]


def write_eval_outputs(results: list[Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for result in results:
        result.run.to_trec(output / f"{result.config}.trec", tag=result.config)
    report = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "results": [r.to_json() for r in results],
    }
    (output / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


def print_eval_table(results: list[Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("config")
    metric_names = list(results[0].metrics) if results else []
    for name in metric_names:
        table.add_column(name, justify="right")
    table.add_column("q/s", justify="right")
    table.add_column("build s", justify="right")
    for r in results:
        build = f"{r.index_build_seconds:.1f}" + (" (cached)" if r.index_reused else "")
        table.add_row(
            r.config, *[f"{r.metrics[m]:.4f}" for m in metric_names], f"{r.queries_per_second:.1f}", build
        )
    console.print(table)


QUICKSTART_QUERIES = (
    "what makes bread dough puff up",
    "which dance do honeybees use to point at flowers",
    "what makes the sea rise and fall twice a day",
)


@app.command()
@friendly_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Where to put the demo index and report")] = Path(
        "runs/quickstart"
    ),
) -> None:
    """Index the bundled demo corpus, answer example queries, evaluate the demo queries."""
    from rag.evaluate import ensure_bundle
    from rag.pipelines import build_pipeline, read_build_summary, retrieve

    config = RagConfig(name="dense")
    cache = out / "cache"
    console.rule("1. build a dense index over the demo corpus (all-MiniLM-L6-v2, FAISS flat)")
    # Built through the evaluation cache, so step 3 reuses this index instead of encoding the corpus again.
    index_dir, _, _ = ensure_bundle(config, DEMO_DIR / "corpus.jsonl", cache, progress=True)
    summary = read_build_summary(index_dir)
    if summary is not None:
        console.print(
            f"{summary.documents} documents, {summary.chunks} chunks, {summary.seconds:.1f} s, "
            f"{_human_bytes(summary.bytes_on_disk)} on disk: {index_dir}"
        )
    console.rule("2. query it")
    pipeline = build_pipeline(config, index_dir)
    pipeline.warm_up()
    for text in QUICKSTART_QUERIES:
        started = time.perf_counter()
        documents = retrieve(pipeline, text, top_k=3)
        print_ranking(text, documents, time.perf_counter() - started, snippet=120)
    console.rule("3. evaluate the demo queries")
    results = run_evaluations([config], DEMO_DIR, "test", cache, progress=True)
    write_eval_outputs(results, out / "eval")
    print_eval_table(results, "demo corpus (test)")
    console.print(f"report written to {out / 'eval'}")


from rag.cli_chunks import register as _register_chunks  # noqa: E402  (registers `rag eval-chunks`)

_register_chunks(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
