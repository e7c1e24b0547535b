"""The FastAPI app: queries, writes and health over the bundles named at start.

``create_app(settings)`` returns an ASGI app; ``rag serve`` runs it under uvicorn. Endpoints:

- ``POST /query``: documents (id, score, content, meta) of the configured pipeline, plus the answer, the
  compressed context and the token accounting when the pipeline produces them; ``"stream": true`` gives
  server-sent events (``documents``, one ``answer`` per reply, ``done``).
- ``POST /documents`` and ``DELETE /documents/{doc_id}``: persisted atomically to the bundle
  (:mod:`rag.service.state`); they need an API key.
- ``GET /indexes``: what each served bundle holds. ``GET /health``: the process answers.
  ``GET /ready``: every index and its models are loaded. ``GET /metrics``: Prometheus text.
- ``GET /openapi.json``: the schema (no ``/docs`` page: it would load scripts from a CDN).

Request models forbid unknown fields (``extra="forbid"``), so a misspelt ``top_k`` is a 422 instead of
a query silently run with the default; responses are ours and may grow fields. Our errors answer with
their class's ``http_status`` (:mod:`rag.core.errors`) and a body ``{"error": class, "detail": message}``
in which the bundle's path is replaced by the index name; anything else is a 500 whose body says only
that, the traceback going to the server log.
"""

# No `from __future__ import annotations`: FastAPI reads the request model of /query, a class made inside
# create_app (its top_k bound is a setting), from the live annotation.
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from rag.core.errors import ConfigError, RagError, error_status
from rag.service.auth import key_matches
from rag.service.limits import RequestTimeout, run_in_thread
from rag.service.metrics import MetricsMiddleware, ServiceMetrics
from rag.service.settings import INDEX_NAME_PATTERN, ServiceSettings
from rag.service.state import Loaded, ServedIndex, ServiceState

log = logging.getLogger("rag.service")

# A query longer than this is refused (422): 10,000 words of English fit in well under it.
MAX_QUERY_CHARS = 200_000
MAX_ID_CHARS = 1_000
MAX_DOCUMENTS_PER_REQUEST = 10_000
# Components' inputs a per-call override may not set: the query and top_k (their own fields) and the
# generator's streaming callback (set by "stream": true).
RESERVED_INPUTS = frozenset({"query", "top_k", "streaming_callback"})
# Stage kinds after which a metadata filter on the result would disagree with the answer.
FILTERLESS_KINDS = frozenset({"compress", "prompt", "generate"})
# How many candidates a filtered query fetches before filtering (filters are applied to the result).
FILTER_DEPTH = 1000

IndexName = Annotated[str, Field(pattern=f"^{INDEX_NAME_PATTERN}$", description="A served index's name")]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryRequestBase(Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S", description="The query text")
    index: IndexName | None = Field(None, description="Index to query (default: the first served)")
    filters: dict[str, Any] | None = Field(
        None,
        description=(
            'Haystack metadata filter, e.g. {"field": "meta.year", "operator": ">=", "value": 2020}; '
            "applied to the ranked documents (retrieval and rerank pipelines only)"
        ),
    )
    overrides: dict[str, dict[str, Any]] | None = Field(
        None, description="Per-call inputs of pipeline components, {component: {input: value}}"
    )
    stream: bool = Field(False, description="Answer as server-sent events")


class DocumentOut(BaseModel):
    id: str
    score: float | None
    content: str | None
    meta: dict[str, Any]


class QueryResponse(BaseModel):
    index: str
    generation: int
    documents: list[DocumentOut]
    answer: str | None = Field(None, description="The first reply, when the pipeline generates")
    replies: list[str] | None = None
    compressed: Any | None = Field(None, description="The compressed context, when the pipeline compresses")
    tokens: dict[str, Any] | None = Field(None, description="Token accounting, when the pipeline reports it")
    stage_ms: dict[str, float]


class DocumentIn(Strict):
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"\S")
    text: str = Field(description="The document text (empty documents are skipped, as by `rag add`)")
    title: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, description="Metadata kept with every chunk")


class AddRequest(Strict):
    index: IndexName | None = None
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_REQUEST)


class WriteResponse(BaseModel):
    index: str
    generation: int
    documents: int
    chunks: int
    warnings: list[str] = []


class IndexInfo(BaseModel):
    name: str
    loaded: bool
    generation: int | None = None
    sides: list[str] = []
    documents: int | None = None
    chunks: int | None = None
    config: str | None = None
    retrieval: str | None = None
    stages: list[str] = []
    encoder: str | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    indexes: dict[str, str]


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service over ``settings.indexes``; indexes load in the background after start (``/ready``)."""
    state = ServiceState(dict(settings.indexes), settings.config, settings.lock_timeout)
    metrics = ServiceMetrics()
    limiter = anyio.CapacityLimiter(settings.query_threads)
    # Writes run one at a time anyway (state.py); their own limiter keeps them from taking query threads.
    write_limiter = anyio.CapacityLimiter(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            log.warning("no API key configured: writes (POST/DELETE /documents) are refused")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_load_all)
            yield
            tasks.cancel_scope.cancel()

    async def _load_all() -> None:
        await anyio.to_thread.run_sync(state.load_all, abandon_on_cancel=True)
        for served in state.indexes.values():
            _observe(served.name, served.loaded)

    def _observe(name: str, loaded: Loaded | None) -> None:
        if loaded is not None:
            metrics.generation.labels(name).set(loaded.generation)
            if loaded.documents is not None:
                metrics.documents.labels(name).set(loaded.documents)

    app = FastAPI(
        title="rag-pipelines",
        summary="Retrieval-augmented pipelines over index bundles",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        max_body_size=settings.max_body_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.service = state
    app.state.metrics = metrics

    # ---------------------------------------------------------------- auth

    def _authorize(bearer: HTTPAuthorizationCredentials | None, header: str | None, needed: bool) -> None:
        presented = header.strip() if header else (bearer.credentials.strip() if bearer else None)
        if presented is None:
            if needed:
                raise _AuthError(401)
            return
        # A key sent to a server without keys, or a wrong one, is refused even where none is needed:
        # a client that believes it is authenticated should learn that it is not.
        if not settings.api_keys or not key_matches(presented, settings.api_keys):
            raise _AuthError(403)

    def read_access(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
        header: Annotated[str | None, Security(_api_key_header)] = None,
    ) -> None:
        _authorize(bearer, header, settings.require_key_for_reads)

    def write_access(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
        header: Annotated[str | None, Security(_api_key_header)] = None,
    ) -> None:
        if not settings.api_keys:
            raise _AuthError(403)
        _authorize(bearer, header, True)

    # ---------------------------------------------------------------- errors

    def _scrub(message: str) -> str:
        """Our messages name files; a client sees index names instead of the server's paths."""
        for served in state.indexes.values():
            for form in {str(served.path.resolve()), str(served.path)}:
                if form and form != ".":
                    message = message.replace(form, f"index {served.name!r}")
        return re.sub(r"\S*rag-serve-[^/\s]+/documents\.jsonl", "the request's documents", message)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        _, status = error_status(exc)
        if status >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"error": type(exc).__name__, "detail": _scrub(str(exc))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input, which may be megabytes, or a lone surrogate
        # ("\\ud800", which pydantic refuses) that cannot be encoded as UTF-8 and turned a 422 into a 500.
        errors = [
            {
                "loc": list(error.get("loc", ())),
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        return JSONResponse({"error": "ValidationError", "detail": errors}, status_code=422)

    @app.exception_handler(_AuthError)
    async def auth_error(request: Request, exc: _AuthError) -> JSONResponse:
        if exc.status == 401:
            return JSONResponse(
                {"error": "Unauthorized", "detail": "an API key is required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return JSONResponse({"error": "Forbidden", "detail": "not allowed"}, status_code=403)

    @app.exception_handler(RequestTimeout)
    async def timeout_error(request: Request, exc: RequestTimeout) -> JSONResponse:
        return JSONResponse({"error": "Timeout", "detail": str(exc)}, status_code=504)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "InternalError", "detail": "internal error; see the server log"}, 500)

    # ---------------------------------------------------------------- queries

    class QueryRequest(QueryRequestBase):
        top_k: int | None = Field(
            None, ge=1, le=settings.max_top_k, description="Documents to return (default: the config's)"
        )

    def _index(name: str | None) -> ServedIndex:
        return state.get(name or settings.default_index)

    @app.post(
        "/query",
        response_model=QueryResponse,
        dependencies=[Depends(read_access)],
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "with stream: server-sent events"}
        },
    )
    async def query(body: QueryRequest) -> Any:
        served = _index(body.index)
        if body.stream:
            # Checked before the stream starts, so that a bad request still gets its status code.
            loaded = await run_in_thread(served.current, limiter=limiter, timeout=settings.timeout)
            _check_overrides(loaded, body.overrides)
            return StreamingResponse(_stream(served, body), media_type="text/event-stream")
        loaded, result = await run_in_thread(
            _run_query, served, body, None, limiter=limiter, timeout=settings.timeout
        )
        _observe(served.name, loaded)
        return _response(served.name, loaded, result)

    async def _stream(served: ServedIndex, body: QueryRequest) -> AsyncIterator[str]:
        """Events as they come: a ``token`` per piece a generator streams, then the result."""
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)

        def on_piece(chunk: Any) -> None:  # called in the worker thread, by the generator
            anyio.from_thread.run_sync(send.send_nowait, _event("token", {"text": str(chunk.content)}))

        async def produce() -> None:
            async with send:
                try:
                    loaded, result = await run_in_thread(
                        _run_query, served, body, on_piece, limiter=limiter, timeout=settings.timeout
                    )
                except Exception as exc:  # noqa: BLE001 - the status line is sent: report it as an event
                    status = 504 if isinstance(exc, RequestTimeout) else error_status(exc)[1]
                    detail = (
                        _scrub(str(exc)) if isinstance(exc, RagError | RequestTimeout) else "internal error"
                    )
                    if status >= 500 and not isinstance(exc, RagError | RequestTimeout):
                        log.exception("POST /query (stream) failed")
                    await send.send(
                        _event("error", {"status": status, "error": type(exc).__name__, "detail": detail})
                    )
                    return
                _observe(served.name, loaded)
                for event in _events(_response(served.name, loaded, result)):
                    await send.send(event)

        async with anyio.create_task_group() as tasks, receive:
            tasks.start_soon(produce)
            async for event in receive:
                yield event

    def _run_query(served: ServedIndex, body: QueryRequest, on_piece: Any = None) -> tuple[Loaded, Any]:
        from rag.pipelines import run_query

        loaded = served.current()
        inputs = _check_overrides(loaded, body.overrides)
        if on_piece is not None:
            # Every generator of the pipeline streams into the response (Haystack's streaming_callback).
            for name, sockets in loaded.pipeline.inputs().items():
                if "streaming_callback" in sockets:
                    inputs.setdefault(name, {})["streaming_callback"] = on_piece
        top_k = body.top_k
        if body.filters is not None:
            kinds = {str(stage.get("kind")) for stage in loaded.config.stages} & FILTERLESS_KINDS
            if kinds:
                raise ConfigError(
                    f"filters apply to ranked documents; index {served.name!r} runs a "
                    f"{', '.join(sorted(kinds))} stage after ranking, so give no filters for it"
                )
            top_k = max(FILTER_DEPTH, top_k or loaded.config.retrieval.top_k)
        try:
            result = run_query(loaded.pipeline, body.query, top_k, inputs)
        except Exception as exc:
            # A component refusing an override's value is the caller's error, not the server's.
            cause = exc.__cause__ or exc
            if inputs and isinstance(cause, ValueError | TypeError) and not isinstance(cause, RagError):
                raise ConfigError(f"a component refused the overrides {body.overrides}: {cause}") from exc
            raise
        if body.filters is not None:
            kept = _filtered(result.documents, body.filters)
            result.documents = kept[: body.top_k or loaded.config.retrieval.top_k]
        return loaded, result

    def _response(name: str, loaded: Loaded, result: Any) -> QueryResponse:
        replies = [_reply_text(r) for r in result.replies] if result.replies else None
        return QueryResponse(
            index=name,
            generation=loaded.generation,
            documents=[
                DocumentOut(
                    id=str(d.id),
                    score=d.score if d.score is not None and math.isfinite(d.score) else None,
                    content=d.content,
                    meta=dict(d.meta),
                )
                for d in result.documents
            ],
            answer=replies[0] if replies else None,
            replies=replies,
            # A compress stage's documents are the compressed context, and its metrics output the
            # per-query token accounting; a generator's own count is in the reply's meta["usage"].
            compressed=_compressed(result),
            tokens=_tokens(result),
            stage_ms={k: round(v * 1000, 3) for k, v in result.stage_seconds.items()},
        )

    # ---------------------------------------------------------------- writes

    @app.post(
        "/documents", response_model=WriteResponse, status_code=201, dependencies=[Depends(write_access)]
    )
    async def add_documents(body: AddRequest) -> WriteResponse:
        served = _index(body.index)
        records = [_record(d) for d in body.documents]
        summary, loaded = await run_in_thread(served.add, records, limiter=write_limiter)
        return _written(
            served, loaded, summary.documents, summary.chunks, [_scrub(w) for w in summary.warnings]
        )

    @app.delete("/documents/{doc_id}", response_model=WriteResponse, dependencies=[Depends(write_access)])
    async def delete_document(
        doc_id: Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)],
        index: Annotated[str | None, Query(pattern=f"^{INDEX_NAME_PATTERN}$")] = None,
    ) -> WriteResponse:
        served = _index(index)
        summary, loaded = await run_in_thread(served.delete, [doc_id], limiter=write_limiter)
        return _written(served, loaded, summary.documents, summary.chunks)

    def _written(
        served: ServedIndex, loaded: Loaded, documents: int, chunks: int, warnings: list[str] | None = None
    ) -> WriteResponse:
        _observe(served.name, loaded)
        return WriteResponse(
            index=served.name,
            generation=loaded.generation,
            documents=documents,
            chunks=chunks,
            warnings=warnings or [],
        )

    # ---------------------------------------------------------------- about the service

    @app.get("/indexes", response_model=list[IndexInfo], dependencies=[Depends(read_access)])
    async def indexes() -> list[IndexInfo]:
        infos = []
        for served in state.indexes.values():
            try:  # a bundle written by another process since the last request is loaded first
                await run_in_thread(served.current, limiter=limiter, timeout=settings.timeout)
            except RagError as exc:
                log.error("index %s: %s", served.name, exc)
            infos.append(_info(served))
        return infos

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok")

    @app.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready() -> Any:
        status = {
            name: "ready" if s.loaded is not None else ("failed" if s.error else "loading")
            for name, s in state.indexes.items()
        }
        body = Readiness(ready=state.ready, indexes=status)
        return body if state.ready else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", dependencies=[Depends(read_access)], response_class=Response)
    async def metrics_text() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return app


class _AuthError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _check_overrides(
    loaded: Loaded, overrides: dict[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Overrides may set only the pipeline's unconnected inputs, other than ``query`` and ``top_k``."""
    if not overrides:
        return {}
    free = {
        name: sorted(set(sockets) - RESERVED_INPUTS) for name, sockets in loaded.pipeline.inputs().items()
    }
    allowed = ", ".join(f"{name}.{socket}" for name, sockets in sorted(free.items()) for socket in sockets)
    for name, values in overrides.items():
        for socket in values:
            if socket not in free.get(name, []):
                raise ConfigError(
                    f"no per-call input {name}.{socket} in this pipeline (query and top_k have their own "
                    f"fields); allowed: {allowed or 'none'}"
                )
    return {name: dict(values) for name, values in overrides.items()}


def _filtered(documents: list[Any], filters: dict[str, Any]) -> list[Any]:
    from haystack.errors import FilterError
    from haystack.utils.filters import document_matches_filter

    try:
        return [d for d in documents if document_matches_filter(filters, d)]
    except FilterError as exc:
        raise ConfigError(
            f"filters {json.dumps(filters)[:200]} are not a Haystack metadata filter ({exc}); write e.g. "
            '{"field": "meta.year", "operator": "==", "value": 2020}'
        ) from None


def _record(document: DocumentIn) -> dict[str, Any]:
    """A posted document as a corpus record (the reader's ``metadata`` object merges into ``meta``)."""
    record: dict[str, Any] = {"id": document.id, "text": document.text}
    if document.title is not None:
        record["title"] = document.title
    if document.meta:
        record["metadata"] = document.meta
    return record


def _compressed(result: Any) -> list[dict[str, Any]] | None:
    """The compressed context (id, text, provenance) when the pipeline's last documents were compressed."""
    if not result.metrics:
        return None
    return [
        {"id": str(d.id), "content": d.content, "provenance": d.meta.get("provenance")}
        for d in result.documents
        if "compression" in d.meta
    ] or None


def _tokens(result: Any) -> dict[str, Any] | None:
    """Token accounting: the compressor's (before / after / ratio / seconds) and the generator's usage."""
    tokens: dict[str, Any] = {}
    if result.metrics:
        tokens["compression"] = dict(result.metrics)
    usage = _usage(result.replies)
    if usage:
        tokens["generation"] = usage
    return tokens or None


def _usage(replies: list[Any] | None) -> dict[str, Any] | None:
    for reply in replies or []:
        usage = (getattr(reply, "meta", None) or {}).get("usage")
        if isinstance(usage, dict):
            return dict(usage)
    return None


def _reply_text(reply: Any) -> str:
    text = getattr(reply, "text", None)
    return str(text if text is not None else reply)


def _events(response: QueryResponse) -> Iterator[str]:
    """The answer as server-sent events: the documents, each reply, then the rest."""
    payload = response.model_dump()
    yield _event("documents", {"index": response.index, "documents": payload["documents"]})
    for reply in response.replies or []:
        yield _event("answer", {"text": reply})
    rest = {k: payload[k] for k in ("generation", "compressed", "tokens", "stage_ms")}
    yield _event("done", rest)


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _info(served: ServedIndex) -> IndexInfo:
    loaded = served.loaded
    if loaded is None:
        return IndexInfo(name=served.name, loaded=False)
    config = loaded.config
    return IndexInfo(
        name=served.name,
        loaded=True,
        generation=loaded.generation,
        sides=loaded.sides,
        documents=loaded.documents,
        chunks=loaded.chunks,
        config=config.name,
        retrieval=config.retrieval.mode,
        stages=[f"{s.get('kind')}/{s.get('name')}" for s in config.stages],
        # The model's name, not its folder: a local path would tell a client the server's layout.
        encoder=PurePath(config.encoder.model).name if config.needs_dense else None,
    )
