"""API keys: where they come from and how a request proves it has one.

Keys come from an environment variable (default ``RAG_API_KEY``) and/or a file (one key per line,
``#`` comments), never from the command line, where ``ps`` would show them. A request sends one as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Keys are compared with :func:`hmac.compare_digest`
against every configured key (no early exit), so timing says nothing about how close a guess was.

Writes always need a key; reads need one when the server is started with ``--require-key-for-reads``.
The 401 (no key sent) and 403 (a wrong key, or writes on a server without keys) bodies are fixed
strings: they never echo the key or say which part was wrong. Keys are never logged.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from rag.core.errors import ConfigError

DEFAULT_KEY_ENV = "RAG_API_KEY"
# Shorter keys are refused: a key is meant to be random (KEY_HINT says how to make one).
MIN_KEY_CHARS = 16
KEY_HINT = 'make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'


def load_api_keys(
    env_var: str | None = DEFAULT_KEY_ENV, key_file: str | Path | None = None
) -> tuple[str, ...]:
    """The keys in ``$env_var`` (if set) and in ``key_file`` (if given); checked, without repeats."""
    keys: list[str] = []
    if env_var:
        raw = os.environ.get(env_var)
        if raw is not None and raw.strip():
            keys.append(_check_key(raw.strip(), f"${env_var}"))
    if key_file is not None:
        path = Path(key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"API key file {path} cannot be read ({type(exc).__name__}); {KEY_HINT}"
            ) from None
        found = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not found:
            raise ConfigError(f"API key file {path} holds no key (one per line); {KEY_HINT}")
        keys.extend(_check_key(key, f"line {n} of {path}") for n, key in enumerate(found, start=1))
    return tuple(dict.fromkeys(keys))


def _check_key(key: str, where: str) -> str:
    # The message names where the key is, never the key itself.
    if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key) or not key.isprintable():
        raise ConfigError(
            f"the API key in {where} must be at least {MIN_KEY_CHARS} printable characters without spaces; "
            f"{KEY_HINT}"
        )
    return key


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request sent, from ``Authorization: Bearer`` or ``X-API-Key``; None if neither."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def key_matches(presented: str, keys: Sequence[str]) -> bool:
    """Constant-time comparison against every key (bytes, so non-ASCII input cannot raise)."""
    given = presented.encode("utf-8", "surrogatepass")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode("utf-8"))
    return matched
