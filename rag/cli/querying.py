"""``rag query``: the top passages of one query, and how rankings are printed."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rag.cli.base import check_index_arg, command, console, read_config
from rag.cli.options import IndexOption, OptionalConfigOption
from rag.core.validation import check_query

# A query echoed as a table title is cut to this many characters (a pasted page would fill the screen).
TITLE_CHARS = 80


@command()
def query(
    text: Annotated[str, typer.Argument(help="The query")],
    index: IndexOption,
    top_k: Annotated[int, typer.Option(min=1, help="Number of passages to print")] = 5,
    config: OptionalConfigOption = None,
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
    why = None if documents else why_empty(pipeline)
    print_ranking(text, documents, time.perf_counter() - started, snippet, why_empty=why)


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "…"


def why_empty(pipeline: Any) -> str:
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
        doc_title = doc.meta.get("title")
        shown = (
            (f"[bold]{escape(str(doc_title))}[/] " if doc_title else "")
            + escape(content[:snippet])
            + ("…" if len(content) > snippet else "")
        )
        table.add_row(str(rank), Text(str(doc.id)), f"{doc.score:.4f}", shown)
    console.print(table)
