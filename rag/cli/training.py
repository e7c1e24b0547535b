"""``rag train <trainer>``: one sub-command per trainer, each in its own module.

A trainer module registers itself on :data:`train_app` with :func:`train_command` and is imported by
:mod:`rag.cli` (one line there). Like every command, a trainer checks its arguments before it imports
torch, so ``rag train --help`` and input errors answer at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from rag.cli.base import app, friendly_errors

train_app = typer.Typer(
    help="Train retrievers: ColBERT, contrastive (Contriever-style), RetroMAE / DupMAE.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(train_app, name="train")

F = TypeVar("F", bound=Callable[..., Any])


def train_command(name: str) -> Callable[[F], F]:
    """Register ``func`` as ``rag train NAME``, with the project's friendly errors."""

    def decorate(func: F) -> F:
        train_app.command(name)(friendly_errors(func))
        return func

    return decorate
