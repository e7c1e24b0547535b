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
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="Answer the query from the passages, streamed as it is written, then list the sources and "
            "token counts (the config's generator; without one, SmolLM2-135M-Instruct on CPU)",
        ),
    ] = False,
) -> None:
    """Print the top-k passages for a query, with ids, scores and snippets; or, with --generate, an answer."""
    check_query(text)
    rag_config = read_config(config) if config else None
    check_index_arg(index)
    if generate:
        print_answer(text, index, rag_config, top_k, snippet)
        return
    from rag.pipelines import build_pipeline, retrieve

    pipeline = build_pipeline(rag_config, index)
    pipeline.warm_up()
    started = time.perf_counter()
    documents = retrieve(pipeline, text, top_k=top_k)
    why = None if documents else why_empty(pipeline)
    print_ranking(text, documents, time.perf_counter() - started, snippet, why_empty=why)


def print_answer(text: str, index: Any, rag_config: Any, top_k: int, snippet: int) -> None:
    """Stream the generator's answer to the terminal, then the passages it was given and the tokens."""
    from rag.core.tokenizers import get_token_counter
    from rag.generation import generator_tokenizer_name
    from rag.generation.stages import with_generator
    from rag.pipelines import build_pipeline, load_bundle_config, run_query

    config = with_generator(rag_config or load_bundle_config(index))
    pipeline = build_pipeline(config, index)
    with console.status("loading the models"):
        pipeline.warm_up()
    streaming = {
        name: {"streaming_callback": _print_piece}
        for name, inputs in pipeline.inputs().items()
        if "streaming_callback" in inputs
    }
    console.print(Text(f"{shorten(text)!r}", style="bold"))
    result = run_query(pipeline, text, top_k=top_k, inputs=streaming)  # raises our errors unwrapped
    console.file.write("\n")
    reply = result.replies[0] if result.replies else None
    if reply is not None and not streaming:
        console.print(Text(reply.text or ""))
    table = Table(title="sources", show_lines=False)
    for column in ("#", "id", "passage"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for rank, doc in enumerate(result.documents, start=1):
        content = " ".join((doc.content or "").split())
        shown = content[:snippet] + ("…" if len(content) > snippet else "")
        table.add_row(str(rank), Text(str(doc.id)), Text(shown))
    console.print(table)
    counter = get_token_counter(generator_tokenizer_name(config))
    context = sum(counter.count(doc.content or "") for doc in result.documents)
    usage = (reply.meta.get("usage") if reply is not None else None) or {}
    parts = [f"context {context}"] + [
        f"{label} {usage[key]}"
        for label, key in (("prompt", "prompt_tokens"), ("answer", "completion_tokens"))
        if usage.get(key) is not None
    ]
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.stage_seconds.items())
    console.print(Text(f"tokens ({counter.name}): {', '.join(parts)}"))
    compression = next((d.meta["compression"] for d in result.documents if "compression" in d.meta), None)
    if isinstance(compression, dict):  # a compress stage's accounting (compressors.base.account)
        console.print(
            Text(
                f"compression ({compression.get('compressor')}, {compression.get('tokenizer')}): "
                f"{compression.get('query_tokens_before')} -> {compression.get('query_tokens_after')} tokens "
                f"(ratio {compression.get('ratio', 0):.2f}) in {compression.get('seconds', 0):.2f} s"
            )
        )
    console.print(Text(f"time: {stages}"))


def _print_piece(chunk: Any) -> None:
    # Straight to the terminal, unwrapped and flushed: rich would buffer and re-wrap each piece.
    console.file.write(chunk.content)
    console.file.flush()


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
    print_prf_expansion(documents)


def print_prf_expansion(documents: list[Any]) -> None:
    """What ColBERT-PRF added to the query (``meta["prf_expansion"]``): each token with its weight."""
    expansion = documents[0].meta.get("prf_expansion") if documents else None
    if expansion:
        added = ", ".join(f"{entry['token']} ({entry['weight']:.2f})" for entry in expansion)
        console.print(Text(f"PRF expansion (token, weight = beta x IDF): {added}"))
