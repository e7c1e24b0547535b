"""``rag index``, ``rag add`` and ``rag delete``: write and change index bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from rag.cli.base import check_index_arg, command, console, plural, read_config, warn
from rag.cli.options import ConfigOption, IndexOption, ProgressOption
from rag.core.files import human_bytes


@command()
def index(
    config: ConfigOption,
    corpus: Annotated[
        Path, typer.Option(help="BEIR folder, JSONL file (id, text, title?) or folder of .txt/.md")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the index bundle to (replaced atomically)")],
    progress: ProgressOption = True,
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
    table.add_row("on disk", human_bytes(summary.bytes_on_disk))
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped ({reason})", str(count))
    console.print(table)
    warn(summary.warnings)


@command()
def add(
    index: IndexOption,
    corpus: Annotated[Path, typer.Option(help="Documents to add (same formats as `rag index`)")],
    progress: ProgressOption = True,
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
    warn(summary.warnings)


@command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids (all their chunks go) or chunk ids")],
    index: IndexOption,
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
    line = f"deleted {plural(removed.documents, 'document')}"
    if removed.chunked:
        line += f" ({plural(removed.chunks, 'chunk')})"
    if removed.indexes:
        sides = list(removed.indexes)
        line += f" from the {' and '.join(sides)} {'index' if len(sides) == 1 else 'indexes'}"
    return line
