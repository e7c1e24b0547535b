"""``rag serve``: the HTTP service (:mod:`rag.service`) over one or more index bundles, under uvicorn."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from rag.cli.base import check_index_arg, command, err_console
from rag.cli.options import OptionalConfigOption
from rag.service.auth import DEFAULT_KEY_ENV
from rag.service.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_TOP_K,
    DEFAULT_QUERY_THREADS,
    DEFAULT_TIMEOUT,
)


@command()
def serve(
    index: Annotated[
        list[str],
        typer.Option(
            "--index",
            help="Index bundle to serve, as DIR (named after its folder) or NAME=DIR; repeat for several. "
            "Requests name an index by NAME only",
        ),
    ],
    config: OptionalConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default; 0.0.0.0 for all)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one)")] = 8000,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (writes need a key)")
    ] = DEFAULT_KEY_ENV,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File of API keys, one per line (# comments)")
    ] = None,
    require_key_for_reads: Annotated[
        bool, typer.Option("--require-key-for-reads", help="Queries, /indexes and /metrics need a key too")
    ] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Larger request bodies get 413")] = (
        DEFAULT_MAX_BODY_BYTES
    ),
    max_top_k: Annotated[int, typer.Option(min=1, help="A larger top_k gets 422")] = DEFAULT_MAX_TOP_K,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds a query may take before 504")] = (
        DEFAULT_TIMEOUT
    ),
    threads: Annotated[int, typer.Option(min=1, help="Queries run at once, each in a worker thread")] = (
        DEFAULT_QUERY_THREADS
    ),
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: debug, info, warning, error")] = "info",
) -> None:
    """Serve queries, document writes, health and metrics over HTTP (FastAPI + uvicorn).

    Example: RAG_API_KEY=... rag serve --index runs/demo-index --port 8000
    """
    from rag.service.auth import load_api_keys
    from rag.service.settings import ServiceSettings, parse_index_arg

    served: dict[str, Path] = {}
    for value in index:
        name, folder = parse_index_arg(value)
        if name in served:
            raise_config(f"two indexes are named {name!r}; name them apart: --index NAME=DIR")
        check_index_arg(folder)
        served[name] = folder
    config_path = None
    if config is not None:
        import configs

        config_path = configs.resolve(config)
    settings = ServiceSettings(
        indexes=served,
        config=config_path,
        api_keys=load_api_keys(api_key_env, api_key_file),
        require_key_for_reads=require_key_for_reads,
        max_body_bytes=max_body_bytes,
        max_top_k=max_top_k,
        timeout=timeout,
        query_threads=threads,
    )
    if not _is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] binding {host}: the service is reachable from other machines"
            + (
                ""
                if settings.require_key_for_reads
                else "; anyone there can query it (--require-key-for-reads)"
            ),
            highlight=False,
        )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    import uvicorn

    from rag.service.app import create_app

    app = create_app(settings)
    # Load every index before binding: a bad bundle or config fails here, with its exit code.
    for name, state in app.state.service.indexes.items():
        err_console.print(f"loading index {name} ...", highlight=False)
        state.current()
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower())


def raise_config(message: str) -> None:
    from rag.core.errors import ConfigError

    raise ConfigError(message)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
