"""``rag configs`` (the ready-made configs) and ``rag quickstart`` (the demo, end to end)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from rag.cli.base import command, console
from rag.cli.evaluation import print_results
from rag.cli.querying import print_ranking
from rag.core.files import human_bytes
from rag.demo import DEMO_DIR


@command("configs")
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


@command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Where to put the demo index and report")] = Path(
        "runs/quickstart"
    ),
) -> None:
    """Index the bundled demo corpus, answer example queries, evaluate the demo queries."""
    from rag.core.config import RagConfig
    from rag.evaluate import ensure_bundle, evaluate_set, write_report
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
            f"{human_bytes(summary.bytes_on_disk)} on disk: {index_dir}"
        )
    console.rule("2. query it")
    pipeline = build_pipeline(config, index_dir)
    pipeline.warm_up()
    for text in QUICKSTART_QUERIES:
        started = time.perf_counter()
        documents = retrieve(pipeline, text, top_k=3)
        print_ranking(text, documents, time.perf_counter() - started, snippet=120)
    console.rule("3. evaluate the demo queries")
    results = evaluate_set([config], DEMO_DIR, split="test", cache_dir=cache, progress=True)
    write_report(results, out / "eval", dataset=str(DEMO_DIR), split="test")
    print_results(results, "demo corpus (test)")
    console.print(Text(f"report written to {out / 'eval'}"))
