"""What a running service is allowed to do: which bundles it serves under which names, its keys and limits.

Index names are the only way a request names an index: they are checked against
:data:`INDEX_NAME_PATTERN` here and looked up in :attr:`ServiceSettings.indexes`, never joined to a path,
so a request cannot reach a folder the operator did not name at start (no path traversal).

>>> ServiceSettings(indexes={"docs": Path("idx")}).max_top_k
100
>>> ServiceSettings(indexes={"../etc": Path("idx")})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rag.core.errors.ConfigError: index name '../etc' must be 1 to 64 letters, digits, '_', '-' or '.', ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.core.errors import ConfigError
from rag.core.validation import positive_int

INDEX_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_TOP_K = 100
DEFAULT_TIMEOUT = 30.0
# Threads that run queries: more than the cores only adds contention inside torch and FAISS.
DEFAULT_QUERY_THREADS = 2


def check_index_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(INDEX_NAME_PATTERN, name) or name in (".", ".."):
        raise ConfigError(
            f"index name {name!r} must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter "
            "or digit; give the index as NAME=DIR, e.g. --index docs=runs/docs-index"
        )
    return name


def parse_index_arg(value: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after its folder) from the command line.

    >>> parse_index_arg("docs=runs/idx")
    ('docs', PosixPath('runs/idx'))
    >>> parse_index_arg("runs/scifact-dense")
    ('scifact-dense', PosixPath('runs/scifact-dense'))
    """
    name, sep, folder = value.partition("=")
    if not sep:
        path = Path(value)
        return check_index_name(path.resolve().name if path.name in ("", ".", "..") else path.name), path
    if not folder:
        raise ConfigError(
            f"--index {value!r} names no folder; write NAME=DIR, e.g. --index docs=runs/docs-index"
        )
    return check_index_name(name), Path(folder)


@dataclass(frozen=True)
class ServiceSettings:
    """Everything :func:`rag.service.app.create_app` needs (host and port belong to the server runner).

    :param indexes: name -> bundle folder; the first is the default when a request names none.
    :param config: a query-time config for every index (default: each bundle's own ``config.yaml``).
    :param api_keys: accepted keys (writes always need one; without keys, writes are refused).
    :param require_key_for_reads: queries, ``/indexes`` and ``/metrics`` need a key too.
    :param max_body_bytes: larger request bodies are refused with 413.
    :param max_top_k: a larger ``top_k`` is refused with 422.
    :param timeout: seconds a query may take before the answer is 504.
    :param lock_timeout: seconds a write waits for another writer before 503 (default: RAG_LOCK_TIMEOUT
        or 300).
    :param query_threads: queries run at once (each in a worker thread, off the event loop).
    """

    indexes: Mapping[str, Path]
    config: Path | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    require_key_for_reads: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_top_k: int = DEFAULT_MAX_TOP_K
    timeout: float = DEFAULT_TIMEOUT
    lock_timeout: float | None = None
    query_threads: int = DEFAULT_QUERY_THREADS

    def __post_init__(self) -> None:
        if not self.indexes:
            raise ConfigError("serve at least one index: --index DIR (or NAME=DIR)")
        for name in self.indexes:
            check_index_name(name)
        positive_int(self.max_body_bytes, "max_body_bytes")
        positive_int(self.max_top_k, "max_top_k")
        positive_int(self.query_threads, "query_threads")
        if not isinstance(self.timeout, int | float) or isinstance(self.timeout, bool) or self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.lock_timeout is not None and self.lock_timeout < 0:
            raise ConfigError(f"lock_timeout must not be negative, got {self.lock_timeout!r}")
        if self.require_key_for_reads and not self.api_keys:
            raise ConfigError(
                "require_key_for_reads needs an API key: set RAG_API_KEY (or --api-key-env NAME) or give "
                "--api-key-file"
            )

    @property
    def default_index(self) -> str:
        return next(iter(self.indexes))
