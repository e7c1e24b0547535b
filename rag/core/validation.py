"""Checks of per-call arguments shared by every retriever and encoder."""

from __future__ import annotations

from typing import Any

from rag.core.errors import ConfigError


def check_query(query: Any) -> str:
    """An empty or non-string query is a caller error, reported as such."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"query must be a non-empty string, got {query!r}")
    return query


def check_top_k(top_k: Any) -> int:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    return top_k
