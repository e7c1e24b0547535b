"""Command line: ``rag index | query | add | delete | eval | eval-chunks | configs | quickstart``.

Errors of ours (bad input, bad config, corrupt index, missing model) print one clear line and exit with
status 2 instead of a traceback.

Importing this module stays light (no torch, Haystack, FAISS): each command checks its arguments and
loads its config first, and imports the pipeline code only once there is work to do, so ``rag --help``
and every input error answer at once.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rag.core.errors import InputFormatError, RagError
from rag.core.validation import check_query
from rag.demo import DEMO_DIR

if TYPE_CHECKING:
    from rag.core.config import RagConfig

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
            # escape: messages quote user values (ids, paths, queries) that may look like rich markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


CONFIG_HELP = "Pipeline config: a YAML file, or the name of a ready-made one (`rag configs` lists them)"
# A query echoed as a table title is cut to this many characters (a pasted page would fill the screen).
TITLE_CHARS = 80


def read_config(value: str | Path) -> RagConfig:
    import configs
    from rag.core.config import load_config

    return load_config(configs.resolve(value))


def check_index_arg(index: Path) -> None:
    """Refuse an ``--index`` that is a file, is missing or is not a bundle, before any heavy import (the
    bundle module is light); a bundle left aside by an interrupted write is named or restored there."""
    from indexers.bundle import check_bundle_exists, is_bundle, read_bundle_manifest

    if not is_bundle(check_bundle_exists(index)):
        read_bundle_manifest(index)  # raises, saying what is missing; checksums are left to the loader


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@app.command()
@friendly_errors
def index(
    config: Annotated[Path, typer.Option(help=CONFIG_HELP + ", e.g. dense or configs/dense.yaml")],
    corpus: Annotated[
        Path, typer.Option(help="BEIR folder, JSONL file (id, text, title?) or folder of .txt/.md")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the index bundle to (replaced atomically)")],
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Build an index bundle from a corpus."""
    from indexers.bundle import check_bundle_target
    from rag.core.readers import read_corpus

    # Config, target and input first (all light), the pipeline code only once there is work to do.
    rag_config = read_config(config)
    check_bundle_target(out, corpus)
    report = read_corpus(corpus)
    from rag.pipelines import build_bundle

    summary = build_bundle(rag_config, corpus, out, progress=progress, report=report)
    table = Table(title=Text(f"index {summary.path}"), show_header=False)
    table.add_row("documents", str(summary.documents))
    table.add_row("chunks", str(summary.chunks))
    table.add_row("indexes", ", ".join(summary.indexes))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    table.add_row("on disk", _human_bytes(summary.bytes_on_disk))
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped ({reason})", str(count))
    console.print(table)
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def query(
    text: Annotated[str, typer.Argument(help="The query")],
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
    top_k: Annotated[int, typer.Option(min=1, help="Number of passages to print")] = 5,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP + " (default: the bundle's own)")] = None,
    snippet: Annotated[int, typer.Option(min=0, help="Characters of each passage to print")] = 200,
) -> None:
    """Print the top-k passages for a query, with ids, scores and snippets."""
    check_query(text)
    rag_config = read_config(config) if config else None
    check_index_arg(index)
    from rag.pipelines import build_pipeline, retrieve

    pipeline = build_pipeline(rag_config, index)
    pipeline.warm_up()
    started = time.perf_counter()
    documents = retrieve(pipeline, text, top_k=top_k)
    why = None if documents else _why_empty(pipeline)
    print_ranking(text, documents, time.perf_counter() - started, snippet, why_empty=why)


@app.command()
@friendly_errors
def add(
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
    corpus: Annotated[Path, typer.Option(help="Documents to add (same formats as `rag index`)")],
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Add documents to an existing index bundle (chunked and encoded as the bundle was built)."""
    from rag.core.readers import read_corpus

    check_index_arg(index)
    report = read_corpus(corpus)
    from rag.pipelines import add_to_bundle

    summary = add_to_bundle(index, corpus, progress=progress, report=report)
    console.print(f"added {summary.documents} documents ({summary.chunks} chunks) in {summary.seconds:.1f} s")
    for reason, count in sorted(summary.skipped.items()):
        console.print(f"skipped ({reason}): {count}")
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids (all their chunks go) or chunk ids")],
    index: Annotated[Path, typer.Option(help="Index bundle written by `rag index`")],
) -> None:
    """Delete documents by id from an index bundle."""
    check_index_arg(index)
    from rag.pipelines import delete_from_bundle

    console.print(describe_deletion(delete_from_bundle(index, ids)), highlight=False)


def describe_deletion(removed: Any) -> str:
    """The line ``rag delete`` prints, from what ``delete_from_bundle`` returns: a summary with
    ``documents``, ``chunks``, ``chunked`` and ``indexes``, or (older versions) a chunk count."""
    if isinstance(removed, int):
        return f"deleted {removed} chunks"
    line = f"deleted {_plural(removed.documents, 'document')}"
    if removed.chunked:
        line += f" ({_plural(removed.chunks, 'chunk')})"
    if removed.indexes:
        sides = list(removed.indexes)
        line += f" from the {' and '.join(sides)} {'index' if len(sides) == 1 else 'indexes'}"
    return line


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "…"


def _why_empty(pipeline: Any) -> str:
    """Why a pipeline returned nothing: BM25 matches only documents sharing a term with the query; dense
    and hybrid retrieval return nothing only from an empty index."""
    from rag.retrievers.bm25 import BM25Retriever

    if any(isinstance(component, BM25Retriever) for _, component in pipeline.walk()):
        return (
            "no word of it is in the BM25 index's vocabulary (after stop words and stemming), "
            "or the index is empty; try other words"
        )
    return "the index holds no documents; add some with `rag add`"


def print_ranking(
    text: str, documents: list[Any], seconds: float, snippet: int = 200, why_empty: str | None = None
) -> None:
    """The ranking as a table titled by the (shortened) query; no documents: one line saying so, and why."""
    # Text, not markup: a query or passage with [brackets] is printed as typed.
    heading = f"{shorten(text)!r}  ({seconds * 1000:.0f} ms)"
    if not documents:
        console.print(Text(f"no passage matched {heading}" + (f": {why_empty}" if why_empty else "")))
        return
    # One line: the table is made wide enough for the title, and a title that still does not fit is cut.
    title = Text(heading, no_wrap=True, overflow="ellipsis")
    table = Table(title=title, show_lines=False, min_width=len(heading))
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("passage")
    for rank, doc in enumerate(documents, start=1):
        content = " ".join((doc.content or "").split())
        title = doc.meta.get("title")
        shown = (
            (f"[bold]{escape(str(title))}[/] " if title else "")
            + escape(content[:snippet])
            + ("…" if len(content) > snippet else "")
        )
        table.add_row(str(rank), Text(str(doc.id)), f"{doc.score:.4f}", shown)
    console.print(table)


def _default_output() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


@app.command("eval")
@friendly_errors
def eval_command(
    config: Annotated[list[Path], typer.Option(help=CONFIG_HELP + "; repeat for several in one table")],
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
    configs = [read_config(c) for c in config]
    if not dataset.exists():
        raise InputFormatError(
            "dataset folder does not exist; expected a BEIR folder (corpus.jsonl, queries.jsonl, "
            "qrels/<split>.tsv) or a chunk-excerpt folder (questions_df.csv, corpora/)",
            str(dataset),
        )
    results = run_evaluations(configs, dataset, split, cache_dir, progress)
    output = output or _default_output()
    write_eval_outputs(results, output)
    print_eval_table(results, f"{dataset} ({split})")
    console.print(Text(f"run files and report.json written to {output}"))


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
    table = Table(title=Text(title))
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


@app.command("configs")
@friendly_errors
def configs_command() -> None:
    """List the ready-made configs that ship with the package (use them by name: --config dense)."""
    import yaml

    import configs as shipped

    table = Table(title=f"ready-made configs ({shipped.CONFIG_DIR})", show_header=True)
    table.add_column("name")
    table.add_column("use with")
    table.add_column("what it is")
    for name in shipped.available():
        data = yaml.safe_load(shipped.config_path(name).read_text(encoding="utf-8"))
        # A chunking grid is not a pipeline: it goes to `rag eval-chunks --grid`.
        option = "eval-chunks --grid" if isinstance(data, dict) and "chunkers" in data else "--config"
        table.add_row(name, option, Text(shipped.description(name)))
    console.print(table)
    console.print("use one by name, e.g. `rag index --config dense --corpus ... --out ...`", highlight=False)


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
    from rag.core.config import RagConfig
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
    console.print(Text(f"report written to {out / 'eval'}"))


from rag.cli_chunks import register as _register_chunks  # noqa: E402  (registers `rag eval-chunks`)

_register_chunks(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
