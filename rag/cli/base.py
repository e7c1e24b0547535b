"""What every command shares: the Typer app, the consoles, the error handler and light helpers.

Nothing here imports torch, Haystack or FAISS: commands check their arguments and load their config
first, and import the pipeline code only once there is work to do.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rag.core.errors import RagError

if TYPE_CHECKING:
    from rag.core.config import RagConfig

# Before any command loads Haystack: a command line tool should not send usage telemetry from every
# pipeline run (offline it would only retry in the background). Whoever wants it sets the variable.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

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
    """Errors of ours print one line and exit with the error's own status (2 unless it says otherwise)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagError as exc:
            # escape: messages quote user values (ids, paths, queries) that may look like rich markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None

    return wrapper  # type: ignore[return-value]


def command(name: str | None = None) -> Callable[[F], F]:
    """Register ``func`` on the app as command ``name`` (default: its own name), with friendly errors."""

    def decorate(func: F) -> F:
        app.command(name)(friendly_errors(func))
        return func

    return decorate


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


def warn(messages: list[str]) -> None:
    for message in messages:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def default_output(suffix: str = "") -> Path:
    return Path("runs") / (datetime.now().strftime("%Y%m%d-%H%M%S") + suffix)
