"""Request limits: body size (413), ``top_k`` (422) and time per request (504).

The body limit is FastAPI's own (``FastAPI(max_body_size=...)``, Starlette's ``RequestBodyLimitMiddleware``):
it refuses a declared ``Content-Length`` over the limit before reading anything and counts the bytes of
a chunked body as they arrive, so a client cannot make the server buffer more than the limit either
way. ``top_k`` is bounded in the request schema (:func:`rag.service.app.create_app` declares
``le=max_top_k``), so the OpenAPI schema states the limit too. The time limit is here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class RequestTimeout(Exception):
    """A query ran past the service's timeout (answered 504)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the query took longer than {seconds:g} s; ask for fewer documents or try again")
        self.seconds = seconds


async def run_in_thread(
    func: Callable[..., T],
    *args: Any,
    limiter: anyio.CapacityLimiter,
    timeout: float | None = None,
) -> T:
    """Run CPU-bound ``func`` in a worker thread, so the event loop (and ``/health``) stays free.

    With ``timeout``, the caller gets :class:`RequestTimeout` after that many seconds (waiting for a
    free thread counts); the thread cannot be interrupted and finishes in the background, its result
    dropped. Only reads run with a timeout: a write always runs to its end, so that its answer says what
    happened to the index.
    """
    if timeout is None:
        return await anyio.to_thread.run_sync(func, *args, limiter=limiter)
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(func, *args, limiter=limiter, abandon_on_cancel=True)
    except TimeoutError:
        raise RequestTimeout(timeout) from None
