"""One small error family, so callers can catch ours apart from library errors.

Every message says what was wrong and what to do about it. Every class carries the exit code the CLI
ends with and the HTTP status the service answers with, so both map an error the same way
(:func:`error_status`; subclasses inherit their parent's codes unless they declare their own):

==================================  ====  ====  ==============================================
class                               exit  HTTP  meaning
==================================  ====  ====  ==============================================
:class:`RagError` (base, unsorted)  2     500   an error we raised on purpose
:class:`ConfigError`                2     400   a bad setting or argument
:class:`InputFormatError`           2     422   an input file cannot be read as its format
:class:`EncoderMismatchError`       2     409   the query encoder does not fit the index
:class:`NotFoundError`              2     404   an id asked for is not there
:class:`IndexCorruptError`          3     500   an index on disk is damaged or missing: rebuild
:class:`ModelNotAvailableError`     4     503   a model is neither local nor downloadable
:class:`LockTimeoutError`           5     503   another writer holds the index: try again later
:class:`ChatEndpointError`          6     502   the LLM endpoint failed or cannot be reached
any other exception (a bug)         1     500   Python's own exit code for a crash
==================================  ====  ====  ==============================================

Errors declared beside the code that raises them take their codes from one of these classes:
``indexers.bundle.BundleLockedError`` is a :class:`LockTimeoutError`, ``indexers.docstore
.UnknownDocumentError`` a :class:`NotFoundError`; ``indexers.base.UnsupportedOperationError`` (an index
type that cannot do what was asked, such as BM25 serving vectors) declares 2 / 501 itself.

Exit code 2 stays what every error exited with before the codes were split (and what click uses for a
bad command line), so scripts that test for 2 keep working for user errors.

>>> error_status(ConfigError("top_k must be a positive integer, got 0"))
(2, 400)
>>> error_status(KeyError("x"))
(1, 500)
>>> print(IndexCorruptError("index file idx/ids.jsonl is missing."))
index file idx/ids.jsonl is missing. Rebuild the index with `rag index`.
"""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = [
    "ChatEndpointError",
    "ConfigError",
    "EncoderMismatchError",
    "IndexCorruptError",
    "InputFormatError",
    "LockTimeoutError",
    "ModelNotAvailableError",
    "NotFoundError",
    "RagError",
    "error_status",
]


class RagError(Exception):
    """Base class of every error this project raises on purpose."""

    #: What the command line exits with (see the table in the module docstring).
    exit_code: ClassVar[int] = 2
    #: What the HTTP service answers with.
    http_status: ClassVar[int] = 500


def error_status(exc: BaseException) -> tuple[int, int]:
    """``(exit_code, http_status)`` for any exception: a :class:`RagError`'s own, else ``(1, 500)``."""
    if isinstance(exc, RagError):
        return exc.exit_code, exc.http_status
    return 1, 500


class ConfigError(RagError, ValueError):
    """A configuration value or argument is invalid (names the key and the allowed values)."""

    http_status = 400


class InputFormatError(RagError, ValueError):
    """An input file cannot be read as the expected format. Names the file and, where known, the line."""

    http_status = 422

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


# A message "says how to fix it" when it names one of our commands or says to rebuild.
_SAYS_FIX = re.compile(r"`rag \w|\brebuild", re.IGNORECASE)


class IndexCorruptError(RagError):
    """An index folder is missing a file, or a file does not match its checksum in the manifest.

    The message ends with how to fix it: :attr:`default_hint` is appended unless the message already
    names a ``rag`` command or says to rebuild; ``hint=`` gives another fix (``""`` for none).

    >>> print(IndexCorruptError("ids.jsonl is missing", hint="Restore it from the backup."))
    ids.jsonl is missing. Restore it from the backup.
    >>> print(IndexCorruptError("ids.jsonl is missing; rebuild it with `rag index`"))
    ids.jsonl is missing; rebuild it with `rag index`
    """

    exit_code = 3
    http_status = 500
    default_hint: ClassVar[str] = "Rebuild the index with `rag index`."

    def __init__(self, message: str, hint: str | None = None) -> None:
        if hint is None:
            hint = "" if _SAYS_FIX.search(message) else self.default_hint
        if hint:
            message = message.rstrip()
            message = f"{message}{' ' if message.endswith('.') else '. '}{hint}"
        super().__init__(message)


class EncoderMismatchError(RagError):
    """The query encoder does not match the encoder an index was built with."""

    http_status = 409


class ModelNotAvailableError(RagError):
    """A model cannot be found locally and cannot be downloaded (offline)."""

    exit_code = 4
    http_status = 503


class NotFoundError(RagError, KeyError):
    """Ids asked for (documents to get or delete, ...) are not there."""

    http_status = 404

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; keep the plain message instead.
        return str(self.args[0]) if self.args else ""


class LockTimeoutError(RagError):
    """Another process kept a lock (an index being written) for longer than the timeout."""

    exit_code = 5
    http_status = 503


class ChatEndpointError(RagError, ConnectionError):
    """An LLM endpoint cannot be reached or did not answer with a chat completion (names the URL)."""

    exit_code = 6
    http_status = 502
