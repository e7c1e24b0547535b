"""Bad input against the live service: schemathesis on every endpoint of our OpenAPI schema, plus a fixed
list of hostile requests. Target: zero 5xx answers.

    python benchmarks/service_fuzz.py [--examples 200] [--quick]

A real ``rag serve`` process (hybrid pipeline: all-MiniLM-L6-v2 + BM25, over the demo corpus, so that
both tokenizers and the encoder see the input) on a free loopback port, with an API key, so that the
write endpoints are exercised past authentication too. Two parts:

- **schemathesis** reads ``/openapi.json`` and, for every operation, generates ``--examples`` requests
  that fit the schema (positive) and as many that break it (negative: wrong types, missing and unknown
  fields, out-of-range numbers, bad patterns), with hypothesis' unicode strings everywhere. Half the
  requests carry the key, half none (schemathesis sends the key it is given as a header).
- **fixed cases** that generators rarely produce: malformed JSON, non-JSON and empty bodies, a body over
  the size limit (declared and chunked), lone surrogates, control and right-to-left characters, an
  empty, a blank and a 10,000-word query, unknown fields, ``top_k`` far past the limit, traversal-shaped
  index names and document ids, a wrong content type, filters of the wrong shape.

Every answer's status is counted per operation; any 5xx is a failure, kept with the request that caused
it. Writes benchmarks/results/service_fuzz.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from service_load import run_header, start_server  # noqa: E402  (one helper, shared with the load benchmark)

RESULTS = ROOT / "benchmarks" / "results"
KEY = "service-fuzz-benchmark-key-0123456789"
MAX_BODY = 1_000_000


class Tally:
    def __init__(self) -> None:
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.server_errors: list[dict[str, Any]] = []

    def record(self, operation: str, status: int | str, request: dict[str, Any]) -> None:
        self.statuses[operation][str(status)] += 1
        if isinstance(status, int) and status >= 500 or not isinstance(status, int):
            if len(self.server_errors) < 50:
                self.server_errors.append({"operation": operation, "status": status, **request})

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    @property
    def fives(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if not s.isdigit() or s >= "500")


def run_schemathesis(base: str, examples: int, tally: Tally) -> dict[str, int]:
    """Positive and negative cases for every operation of the schema, half of them with the key."""
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    generated: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            generated[f"{label} {mode}"] = _probe(operation, mode, label, base, examples, tally, generated)
    return dict(generated)


def _probe(
    operation: Any, mode: Any, label: str, base: str, examples: int, tally: Tally, generated: Counter[str]
) -> int:
    """Send ``examples`` generated cases of one operation in one mode; every other one carries the key."""
    import hypothesis
    import requests  # schemathesis' own transport
    from hypothesis import HealthCheck, given

    counter = [0]

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def probe(case: Any) -> None:
        counter[0] += 1
        request = {
            "mode": str(mode),
            "method": case.method,
            "path": case.formatted_path,
            "query": repr(case.query)[:200],
            "body": repr(case.body)[:300],
        }
        headers = {"X-API-Key": KEY} if counter[0] % 2 else {}
        try:
            response = case.call(base_url=base, headers=headers, timeout=120)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
            generated["unsendable"] += 1  # refused by the client library, never sent
            return
        except requests.exceptions.RequestException as exc:
            tally.record(label, type(exc).__name__, request)
            return
        tally.record(label, response.status_code, request)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probe()
        except hypothesis.errors.Unsatisfiable:
            pass  # nothing to break: a negative case of an operation without inputs (GET /health)
    return counter[0]


def fixed_cases(base: str, tally: Tally) -> int:
    """Hostile requests that generators rarely make."""
    json_type = {"content-type": "application/json"}
    key = {"X-API-Key": KEY}
    ten_thousand = " ".join(["protein", "cell", "gene", "zebra", "Ωmega", "ﬁber"] * 1667)[: 10_000 * 8]
    raw_bodies = [
        b"",
        b"{",
        b'{"query": }',
        b'{"query": "a"}{',
        b"\xff\xfe\xfd",
        b"null",
        b"[]",
        b'"text"',
        b"1e999",
        b'{"query": "a", "query": "b"}',
        b'{"query": "\\ud800"}',
        b'{"query": "\\udfff\\ud800"}',
        b"\x00" * 64,
        b'{"query": "a"' + b" " * 10_000 + b"}",
        b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ]
    queries: list[Any] = [
        {"query": ""},
        {"query": "   \t\n"},
        {"query": ten_thousand},
        {"query": "a", "top_k": 10**30},
        {"query": "a", "top_k": -1},
        {"query": "a", "top_k": "5"},
        {"query": "a", "top_k": True},
        {"query": "a", "top_k": 1.5},
        {"query": 5},
        {"query": ["a"]},
        {"query": None},
        {"query": {"a": 1}},
        {"query": "a", "unknown": 1},
        {"query": "a", "index": "../../etc/passwd"},
        {"query": "a", "index": "."},
        {"query": "a", "index": "demo/../demo"},
        {"query": "a", "index": "%2e%2e"},
        {"query": "a", "index": ""},
        {"query": "\u202eevil\u202c \u0000 \u0007 \ufeff \ufffe"},
        {"query": "\U0001f600" * 2000},
        {"query": "e\u0301" * 3000},
        {"query": "\u200b" * 100},
        {"query": "한국어 日本語 עברית العربية"},
        {"query": "a", "filters": {"field": "meta.x", "operator": "in", "value": 5}},
        {"query": "a", "filters": {"operator": "AND", "conditions": "nope"}},
        {"query": "a", "filters": {"operator": "NOT", "conditions": [{"field": "meta.x"}]}},
        {"query": "a", "filters": {"field": "meta.year", "operator": ">", "value": "not a date"}},
        {"query": "a", "filters": []},
        {"query": "a", "overrides": {"query_encoder": {"nonsense": 1}}},
        {"query": "a", "overrides": {"dense_retriever": {"query_embedding": "x"}}},
        {"query": "a", "overrides": {"bm25_retriever": {"top_k": "many"}}},
        {"query": "a", "stream": "yes"},
        {"query": "a", "stream": True},
    ]
    documents: list[Any] = [
        {"documents": []},
        {"documents": [{"id": "x"}]},
        {"documents": [{"text": "x"}]},
        {"documents": [{"id": "", "text": "x"}]},
        {"documents": [{"id": "fz-1", "text": "t", "extra": 1}]},
        {"documents": [{"id": "fz-2", "text": "t", "meta": {"start": 5}}]},
        {"documents": [{"id": "fz-3", "text": "t", "meta": {"source_id": "x"}}]},
        {"documents": [{"id": "fz-4", "text": "   "}]},
        {"documents": [{"id": "fz-5", "text": "\u0000\ud7ff"}]},
        {"documents": [{"id": "fz-6", "text": "a", "title": 5}]},
        {"documents": [{"id": 6, "text": "a"}]},
        {"documents": [{"id": "fz-7", "text": "dup"}, {"id": "fz-7", "text": "dup"}]},
        {"documents": [{"id": "d01", "text": "already there"}]},
        {"documents": "no"},
        {"documents": [None]},
        {"documents": [{"id": "fz-8#3", "text": "chunk-like id"}]},
        {"documents": [{"id": "../x", "text": "t"}]},
        {"documents": [{"id": "fz-9", "text": ten_thousand}]},
        {"documents": [{"id": "x" * 2000, "text": "t"}]},
    ]
    sent = 0
    unsendable: list[dict[str, Any]] = []

    def send(label: str, method: str, path: str, **kwargs: Any) -> None:
        nonlocal sent
        sent += 1
        request = {"mode": "fixed", "method": method, "url": path, "body": repr(kwargs)[:300]}
        try:
            response = client.request(method, path, **kwargs)
            tally.record(label, response.status_code, request)
        except httpx.LocalProtocolError:
            unsendable.append(request)  # h11 refuses to send it (e.g. a header ending in a space)
        except httpx.HTTPError as exc:
            tally.record(label, type(exc).__name__, request)

    with httpx.Client(base_url=base, timeout=120) as client:
        for body in raw_bodies:
            send("POST /query", "POST", "/query", content=body, headers=json_type)
            send("POST /documents", "POST", "/documents", content=body, headers={**json_type, **key})
        for payload in queries:
            send("POST /query", "POST", "/query", json=payload)
        for payload in documents:
            send("POST /documents", "POST", "/documents", json=payload, headers=key)
        huge = b'{"query": "' + b"a" * (MAX_BODY + 10) + b'"}'
        send("POST /query", "POST", "/query", content=huge, headers=json_type)

        def chunked() -> Any:
            yield b'{"documents": [{"id": "big", "text": "'
            for _ in range(200):
                yield b"b" * 10_000
            yield b'"}]}'

        send("POST /documents", "POST", "/documents", content=chunked(), headers={**json_type, **key})
        send(
            "POST /query", "POST", "/query", content=b'{"query": "a"}', headers={"content-type": "text/plain"}
        )
        send(
            "POST /query",
            "POST",
            "/query",
            content=b"query=a",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        for doc_id in ["nope", "..", "%2e%2e%2fetc", "d01%23x", "a" * 2000, "%00", "%ff", "%ud800"]:
            send("DELETE /documents/{doc_id}", "DELETE", f"/documents/{doc_id}", headers=key)
        for index in ["../x", "", "a" * 100, "demo", "other"]:
            send(
                "DELETE /documents/{doc_id}",
                "DELETE",
                "/documents/nope",
                params={"index": index},
                headers=key,
            )
        for bad_key in [
            "x",
            "x" * 10_000,
            "Bearer",
            KEY[:-1],
            KEY.upper(),
        ]:
            send(
                "POST /documents",
                "POST",
                "/documents",
                json={"documents": [{"id": "k", "text": "t"}]},
                headers={"Authorization": f"Bearer {bad_key}"},
            )
        for path in [
            "/health",
            "/ready",
            "/indexes",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/../etc/passwd",
            "/query",
        ]:
            send(f"GET {path}", "GET", path)
        send("PUT /query", "PUT", "/query", json={"query": "a"})
        for raw_key in ["ключ".encode(), b"\xff\xfe", KEY.encode() + b"\x00"]:  # bytes that are not ASCII
            send(
                "POST /documents",
                "POST",
                "/documents",
                json={"documents": []},
                headers={"X-API-Key": raw_key},
            )
    if unsendable:
        print(f"{len(unsendable)} fixed case(s) the client library refused to send: {unsendable}")
    return sent - len(unsendable)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=200, help="schemathesis examples per operation and mode"
    )
    parser.add_argument("--quick", action="store_true", help="25 examples")
    parser.add_argument("--output", type=Path, default=RESULTS / "service_fuzz.json")
    args = parser.parse_args()
    if args.quick:
        args.examples = 25
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rag.core.config import RagConfig
    from rag.demo import DEMO_DIR
    from rag.pipelines import build_bundle

    scratch = Path(tempfile.mkdtemp(prefix="service-fuzz-"))
    try:
        bundle = scratch / "demo"
        config = RagConfig.from_dict(
            {"name": "hybrid", "retrieval": {"mode": "hybrid", "top_k": 10, "candidates": 50}}
        )
        build_bundle(config, DEMO_DIR / "corpus.jsonl", bundle, progress=False)
        options = [
            "--max-body-bytes",
            str(MAX_BODY),
            "--max-top-k",
            "50",
            "--timeout",
            "60",
            "--log-level",
            "error",
        ]
        process, base = start_server(f"demo={bundle}", KEY, scratch / "server.log", *options)
        tally = Tally()
        started = time.perf_counter()
        try:
            generated = run_schemathesis(base, args.examples, tally)
            fixed = fixed_cases(base, tally)
            alive = httpx.get(f"{base}/health", timeout=10).status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log_tail = (scratch / "server.log").read_text(errors="replace")[-4000:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    result = {
        **run_header("service_fuzz"),
        "schemathesis": __import__("schemathesis").__version__,
        "examples_per_operation_and_mode": args.examples,
        "seconds": round(time.perf_counter() - started, 1),
        "requests": tally.total,
        "generated": generated,
        "fixed_cases": fixed,
        "server_errors_5xx": tally.fives,
        "server_alive_after": alive,
        "statuses": {op: dict(sorted(c.items())) for op, c in sorted(tally.statuses.items())},
        "first_server_errors": tally.server_errors[:20],
        "server_log_tail": log_tail if tally.fives else "",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"\n{'operation':<30} {'requests':>9}  statuses")
    for op, counts in result["statuses"].items():
        print(f"{op:<30} {sum(counts.values()):>9}  " + ", ".join(f"{s}: {n}" for s, n in counts.items()))
    print(
        f"\n{result['requests']} requests ({fixed} fixed cases) in {result['seconds']} s: "
        f"{result['server_errors_5xx']} answered 5xx or not at all; server alive after: {alive}"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
