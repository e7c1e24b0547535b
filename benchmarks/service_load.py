"""Load on the live service: `rag serve` with the dense pipeline over SciFact, a bounded async client.

    python benchmarks/service_load.py [--clients 16 64 256] [--requests 8] [--batches 8] [--quick]

The server is a real ``rag serve`` process on a free loopback port, over a copy of the SciFact dense
bundle (all-MiniLM-L6-v2, flat; taken from ``benchmarks/.cache`` or built there once), so the cached
bundle is never written to. The client is ``httpx.AsyncClient``: for each level, N concurrent clients
each send ``--requests`` queries (SciFact test queries in turn, ``top_k`` 10), one after the other.
Reported per level: requests/s over the level's wall time, p50 / p95 / p99 latency, errors (any answer
but 200, or no answer), and lost requests (sent but never answered either way).

Then the same at ``--writer-clients`` concurrent clients while a writer adds ``--batches`` batches of
documents through ``POST /documents``: every read must still succeed, and afterwards every added
document must be the first hit of a query made of its own text, and ``/indexes`` must count the corpus
plus the added documents exactly (nothing lost, nothing twice).

Client and server share the machine's cores, so the numbers are those of one box doing both. Writes
results to benchmarks/results/service_load.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "beir" / "scifact"
RESULTS = ROOT / "benchmarks" / "results"
KEY = "service-load-benchmark-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scifact_bundle(cache_dir: Path) -> Path:
    """The cached SciFact dense bundle (the one beir_reference.py uses), built on a miss."""
    import configs
    from rag.core.config import load_config
    from rag.evaluate import ensure_bundle

    bundle, seconds, reused = ensure_bundle(
        load_config(configs.config_path("dense")), DATA / "corpus.jsonl", cache_dir
    )
    print(f"bundle {bundle.name}: {'reused' if reused else f'built in {seconds:.0f} s'}", flush=True)
    return bundle


def start_server(index: str, key: str, log: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """``rag serve --index INDEX OPTIONS`` on a free loopback port with ``key`` as its API key, once
    ``/ready`` answers 200 (shared by the service benchmarks)."""
    port = free_port()
    env = {**os.environ, "RAG_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "rag.cli", "serve", "--index", index, "--port", str(port), *options]
    process = subprocess.Popen(command, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"rag serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"rag serve not ready after 600 s; see {log}")


def run_header(name: str) -> dict[str, Any]:
    """What every service benchmark's JSON starts with: its name, the date, the commit and the machine."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit.stdout.strip(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }


async def run_level(base: str, queries: list[str], clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` coroutines, each sending ``per_client`` queries in turn; one connection each."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def one_client(c: int) -> None:
            for r in range(per_client):
                query = queries[(c * per_client + r) % len(queries)]
                started = time.perf_counter()
                try:
                    response = await client.post("/query", json={"query": query, "top_k": 10})
                    status = str(response.status_code)
                    if response.status_code != 200 or len(response.json()["documents"]) != 10:
                        failures.append(f"{status}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                    failures.append(status)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        wall = time.perf_counter() - started
    sent = clients * per_client
    answered = sum(statuses.values())
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": sent,
        "seconds": round(wall, 2),
        "requests_per_s": round(answered / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": len(failures),
        "lost": sent - answered,
        "statuses": statuses,
        "first_failures": failures[:5],
    }


def added_documents(batches: int, per_batch: int) -> list[list[dict[str, Any]]]:
    """Documents no SciFact text resembles, each with words of its own, so its own text finds it first."""
    words = ["zebrafish", "quasar", "marimba", "obsidian", "tundra", "falconry", "saffron", "geyser"]
    out = []
    for b in range(batches):
        batch = []
        for i in range(per_batch):
            n = b * per_batch + i
            text = (
                f"Service load note {n}: the {words[n % 8]} and the {words[(n // 8) % 8]} met "
                f"{n} times near the {words[(n * 3 + 1) % 8]} in the year {1900 + n}."
            )
            batch.append({"id": f"svc-load-{n}", "title": f"Load note {n}", "text": text})
        out.append(batch)
    return out


async def run_with_writer(
    base: str, queries: list[str], clients: int, per_client: int, batches: list[list[dict[str, Any]]]
) -> dict[str, Any]:
    write_log: list[dict[str, Any]] = []

    async def writer() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=600, headers={"X-API-Key": KEY}) as client:
            for batch in batches:
                started = time.perf_counter()
                response = await client.post("/documents", json={"documents": batch})
                write_log.append(
                    {
                        "status": response.status_code,
                        "seconds": round(time.perf_counter() - started, 2),
                        "generation": response.json().get("generation"),
                    }
                )

    reads, _ = await asyncio.gather(run_level(base, queries, clients, per_client), writer())
    # Every added document is found by its own text, first; the count is the corpus plus the additions.
    missing = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for doc in (d for batch in batches for d in batch):
            hits = (
                await client.post("/query", json={"query": f"{doc['title']} {doc['text']}", "top_k": 10})
            ).json()
            ids = [h["id"] for h in hits["documents"]]
            if not ids or ids[0] != doc["id"]:
                missing.append({"id": doc["id"], "top": ids[:3]})
        info = (await client.get("/indexes")).json()[0]
    return {
        "reads": reads,
        "writes": write_log,
        "write_errors": sum(1 for w in write_log if w["status"] != 201),
        "added": sum(len(b) for b in batches),
        "not_found_first": missing,
        "documents_after": info["documents"],
        "generation_after": info["generation"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument(
        "--requests", type=int, default=8, help="queries each client sends, one after another"
    )
    parser.add_argument("--writer-clients", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8, help="POST /documents calls during the writer run")
    parser.add_argument("--per-batch", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="rag serve --threads")
    parser.add_argument("--quick", action="store_true", help="16 and 64 clients, 4 requests, 3 batches")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--output", type=Path, default=RESULTS / "service_load.json")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.requests, args.batches = [16, 64], 4, 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not DATA.is_dir():
        raise SystemExit(f"SciFact not found at {DATA}")
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").read_text().splitlines() if line]
    test_ids = {line.split("\t")[0] for line in (DATA / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    by_id = {
        json.loads(line)["_id"]: json.loads(line)["text"]
        for line in (DATA / "queries.jsonl").read_text().splitlines()
        if line
    }
    queries = [by_id[q] for q in sorted(test_ids) if q in by_id] or queries

    cached = scifact_bundle(args.cache_dir)
    scratch = Path(tempfile.mkdtemp(prefix="service-load-", dir=args.cache_dir))
    try:
        bundle = scratch / "scifact-dense"
        shutil.copytree(cached, bundle)  # the writer must not touch the cached bundle
        options = ["--threads", str(args.threads), "--log-level", "warning", "--max-top-k", "100"]
        process, base = start_server(f"scifact={bundle}", KEY, scratch / "server.log", *options)
        try:
            corpus_docs = httpx.get(f"{base}/indexes").json()[0]["documents"]
            asyncio.run(run_level(base, queries, 4, 2))  # warm-up, not reported
            levels = []
            for clients in args.clients:
                level = asyncio.run(run_level(base, queries, clients, args.requests))
                levels.append(level)
                print(
                    f"{clients:>4} clients: {level['requests_per_s']} req/s, p99 {level['p99_ms']} ms, "
                    f"{level['errors']} errors",
                    flush=True,
                )
            batches = added_documents(args.batches, args.per_batch)
            with_writer = asyncio.run(
                run_with_writer(base, queries, args.writer_clients, args.requests, batches)
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    with_writer["documents_expected"] = corpus_docs + with_writer["added"]
    result = {
        **run_header("service_load"),
        "setup": {
            "pipeline": "dense (all-MiniLM-L6-v2, flat), SciFact corpus",
            "corpus_documents": corpus_docs,
            "queries": len(queries),
            "top_k": 10,
            "requests_per_client": args.requests,
            "server_threads": args.threads,
            "client": "httpx.AsyncClient, one process, same machine as the server",
        },
        "levels": levels,
        "with_writer": with_writer,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"wrote {args.output}")


def print_table(result: dict[str, Any]) -> None:
    rows = [("", lv) for lv in result["levels"]] + [("+writer", result["with_writer"]["reads"])]
    print(
        f"\n{'clients':>12} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'lost':>5}"
    )
    for tag, lv in rows:
        print(
            f"{str(lv['clients']) + tag:>12} {lv['requests']:>9} {lv['requests_per_s']:>8} {lv['p50_ms']:>8} "
            f"{lv['p95_ms']:>8} {lv['p99_ms']:>8} {lv['errors']:>7} {lv['lost']:>5}"
        )
    w = result["with_writer"]
    seconds = [x["seconds"] for x in w["writes"]]
    print(
        f"writer: {len(w['writes'])} POST /documents ({w['write_errors']} failed, "
        f"{min(seconds):.1f}-{max(seconds):.1f} s each), {w['added']} documents added; "
        f"found first by their own text: {w['added'] - len(w['not_found_first'])}/{w['added']}; "
        f"/indexes documents {w['documents_after']} (expected {w['documents_expected']})"
    )


if __name__ == "__main__":
    main()
