"""Command line: ``rag index | query | add | delete | eval | eval-chunks | configs | quickstart | serve``
and ``rag train ...``.

One module per command group (:mod:`rag.cli.indexing`, :mod:`rag.cli.querying`,
:mod:`rag.cli.evaluation`, :mod:`rag.cli.misc`), each registering its commands on the one app of
:mod:`rag.cli.base`; options several commands share are declared once in :mod:`rag.cli.options`.
Nothing outside this package imports it, and its modules import only :mod:`rag.cli.base` and
:mod:`rag.cli.options` from here, so there is no import cycle.

Errors of ours (bad input, bad config, corrupt index, missing model) print one clear line and exit with
the error's status (2 by default) instead of a traceback.

Importing this package stays light (no torch, Haystack, FAISS): each command checks its arguments and
loads its config first, and imports the pipeline code only once there is work to do, so ``rag --help``
and every input error answer at once.
"""

from __future__ import annotations

# Each module registers its commands on import.
from rag.cli import (  # noqa: F401
    evaluation,
    indexing,
    misc,
    querying,
    serving,
    train_colbert,
    train_contrastive,
    train_finetune,
    train_retromae,
    training,
)
from rag.cli.base import app, friendly_errors
from rag.cli.indexing import describe_deletion
from rag.cli.querying import print_ranking, shorten

__all__ = ["app", "describe_deletion", "friendly_errors", "main", "print_ranking", "shorten"]


def main() -> None:  # pragma: no cover - console entry point
    app()
