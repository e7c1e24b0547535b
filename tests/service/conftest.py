"""A real server on a free loopback port, for the service tests: uvicorn in a thread, or ``rag serve`` in
a subprocess (when the test kills it), over tiny BM25 / dense bundles built here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# Before Haystack is imported: its usage telemetry would try to reach its host from every pipeline run.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402

from rag.core.config import RagConfig  # noqa: E402
from rag.pipelines import build_bundle  # noqa: E402

API_KEY = "test-key-0123456789abcdef"

TEXTS = {
    "a": "Bread dough rises because yeast ferments sugar into carbon dioxide.",
    "b": "Tides come from the moon's gravity pulling on the oceans.",
    "c": "Honey bees swarm to find a new nest when the colony grows.",
    "d": "Solar panels turn sunlight into electricity with silicon cells.",
}


def write_corpus(path: Path, texts: dict[str, str] = TEXTS) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": k, "text": v, "title": k.upper(), "year": 2020 + i}) + "\n"
            for i, (k, v) in enumerate(texts.items())
        ),
        encoding="utf-8",
    )
    return path


def bundle(tmp_path: Path, mode: str, model: str | None = None, name: str = "idx") -> Path:
    settings: dict = {"name": mode, "retrieval": {"mode": mode, "top_k": 3}, "chunking": {"method": "none"}}
    if model is not None:
        settings["encoder"] = {"model": model}
    out = tmp_path / name
    build_bundle(RagConfig.from_dict(settings), write_corpus(tmp_path / f"{name}.jsonl"), out, progress=False)
    return out


@pytest.fixture()
def bm25_bundle(tmp_path: Path) -> Path:
    return bundle(tmp_path, "bm25")


@pytest.fixture()
def dense_bundle(tmp_path: Path, tiny_model_dir: Path) -> Path:
    return bundle(tmp_path, "dense", str(tiny_model_dir), name="dense-idx")


def wait_ready(base_url: str, seconds: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} not ready after {seconds} s")


@contextlib.contextmanager
def serve_in_thread(settings) -> Iterator[str]:
    """uvicorn serving ``create_app(settings)`` in a thread, on a socket bound here to a free port."""
    import uvicorn

    from rag.service.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``rag serve ARGS --port P`` in a subprocess; killed at the end if still running."""
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", *args, "--port", str(port), "--log-level", "warning"],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process=process)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
