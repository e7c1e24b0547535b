"""The server killed in the middle of a write: SIGKILL `rag serve` during POST /documents and DELETE.

    python benchmarks/service_faults.py [--trials 3] [--types bm25 dense hybrid]

benchmarks/durability.py kills the command-line writers (`rag index | add | delete`); this kills the
*server* while it writes, for each index type (bundles of the demo corpus, 60 documents; dense is
all-MiniLM-L6-v2). Per type, one uninterrupted POST /documents (10 new documents) and one
DELETE /documents/{id} are timed first; then each trial starts a fresh `rag serve` on a fresh copy of
the bundle, sends the request and SIGKILLs the server at a moment drawn uniformly from 0 to 1.2 times
that duration (so some kills land before the write starts and some after it answered).

After each kill a fresh reader (this process: ``read_bundle_manifest``, which checks every checksum,
then ``indexers.load_index`` on each side) classifies the bundle: *intact* (the documents of before),
*complete* (the write's after-state), *mixed* (anything else, or sides that disagree) or *broken* (does
not load). ``lost`` counts documents of the before-state missing from both states, ``duplicated`` ids
held twice. Then the write is run again in-process (``add_to_bundle`` / ``delete_from_bundle``, what a
client would retry) unless it was complete, and the final state and the leftovers beside the bundle
are checked after the next writer (an empty ``indexers.bundle.bundle_write``, which heals) has run.
Writes benchmarks/results/service_faults.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from service_load import run_header, start_server  # noqa: E402  (one helper, shared with the load benchmark)

RESULTS = ROOT / "benchmarks" / "results"
KEY = "service-faults-benchmark-key-0123456789"
NEW = [
    {
        "id": f"fault-{i}",
        "title": f"Fault note {i}",
        "text": f"Fault note {i}: a kestrel hovered over field {i}.",
    }
    for i in range(10)
]
DOOMED = "d05"


def send(base: str, op: str) -> httpx.Response:
    headers = {"X-API-Key": KEY}
    if op == "add":
        return httpx.post(f"{base}/documents", json={"documents": NEW}, headers=headers, timeout=600)
    return httpx.delete(f"{base}/documents/{DOOMED}", headers=headers, timeout=600)


def state_of(bundle: Path) -> dict[str, Any]:
    """What a fresh reader finds: the source ids of every side, or why it cannot read them."""
    from indexers import load_index
    from indexers.bundle import read_bundle_manifest

    try:
        manifest = read_bundle_manifest(bundle)
        sides = {}
        for side in manifest["sides"]:
            index = load_index(bundle / side)
            sides[side] = [str(d.meta.get("source_id", d.id)) for d in index.get(index.ids)]
        return {"ok": True, "sides": sides}
    except Exception as exc:  # noqa: BLE001 - any failure to read is what we count
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def classify(found: dict[str, Any], before: set[str], after: set[str]) -> dict[str, Any]:
    if not found["ok"]:
        return {"state": "broken", "lost": None, "duplicated": None, "error": found["error"]}
    id_lists = list(found["sides"].values())
    sets = [set(ids) for ids in id_lists]
    duplicated = sum(len(ids) - len(set(ids)) for ids in id_lists)
    if all(s == before for s in sets):
        state = "intact"
    elif all(s == after for s in sets):
        state = "complete"
    else:
        state = "mixed"
    present = set.intersection(*sets) if sets else set()
    lost = len((before & after) - present)
    return {"state": state, "lost": lost, "duplicated": duplicated}


def leftovers(bundle: Path) -> list[str]:
    return sorted(
        p.name for p in bundle.parent.iterdir() if p.name not in (bundle.name, f".{bundle.name}.lock")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=3, help="kills per index type and operation")
    parser.add_argument("--types", nargs="+", default=["bm25", "dense", "hybrid"])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", type=Path, default=RESULTS / "service_faults.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from indexers.bundle import bundle_write
    from rag.core.config import RagConfig
    from rag.demo import DEMO_DIR
    from rag.pipelines import add_to_bundle, build_bundle, delete_from_bundle

    rng = random.Random(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="service-faults-"))
    corpus = scratch / "new.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in NEW), encoding="utf-8")
    log = scratch / "server.log"
    trials: list[dict[str, Any]] = []
    timings: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        for kind in args.types:
            pristine = scratch / f"pristine-{kind}" / "bundle"
            build_bundle(
                RagConfig.from_dict({"name": kind, "retrieval": {"mode": kind}}),
                DEMO_DIR / "corpus.jsonl",
                pristine,
                progress=False,
            )
            before = set(state_of(pristine)["sides"][next(iter(state_of(pristine)["sides"]))])
            expected = {"add": before | {d["id"] for d in NEW}, "delete": before - {DOOMED}}
            timings[kind] = {}
            for op in ("add", "delete"):
                work = scratch / f"time-{kind}-{op}" / "bundle"
                shutil.copytree(pristine, work)
                process, base = start_server(f"b={work}", KEY, log, "--log-level", "error")
                t0 = time.perf_counter()
                response = send(base, op)
                timings[kind][op] = time.perf_counter() - t0
                process.kill()
                process.wait()
                if response.status_code not in (200, 201):
                    raise SystemExit(f"{kind} {op}: {response.status_code} {response.text}")
                for trial in range(args.trials):
                    work = scratch / f"{kind}-{op}-{trial}" / "bundle"
                    shutil.copytree(pristine, work)
                    process, base = start_server(f"b={work}", KEY, log, "--log-level", "error")
                    delay = rng.uniform(0, 1.2 * timings[kind][op])
                    answer: dict[str, Any] = {}

                    def request(base: str = base, op: str = op, answer: dict[str, Any] = answer) -> None:
                        try:
                            answer["status"] = send(base, op).status_code
                        except httpx.HTTPError as exc:
                            answer["status"] = type(exc).__name__

                    sender = threading.Thread(target=request, daemon=True)
                    sender.start()
                    time.sleep(delay)
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    sender.join(timeout=30)
                    outcome = classify(state_of(work), before, expected[op])
                    rerun = None
                    if outcome["state"] != "complete":
                        try:
                            if op == "add":
                                add_to_bundle(work, corpus, progress=False, notify=lambda _m: None)
                            else:
                                delete_from_bundle(work, [DOOMED], notify=lambda _m: None)
                            rerun = "ok"
                        except Exception as exc:  # noqa: BLE001
                            rerun = f"{type(exc).__name__}: {str(exc)[:200]}"
                    # The next writer heals what the killed one left (an aside copy, a staging folder).
                    with bundle_write(work, notify=lambda _m: None):
                        pass
                    final = classify(state_of(work), before, expected[op])
                    row = {
                        "type": kind,
                        "op": op,
                        "trial": trial,
                        "kill_after_s": round(delay, 3),
                        "write_s": round(timings[kind][op], 3),
                        "answer_before_kill": answer.get("status"),
                        **{f"after_kill_{k}": v for k, v in outcome.items()},
                        "rerun": rerun,
                        "final_state": final["state"],
                        "leftovers": leftovers(work),
                    }
                    trials.append(row)
                    print(
                        f"{kind:<7}{op:<7}#{trial} kill at {delay:.2f}/{timings[kind][op]:.2f} s: "
                        f"{outcome['state']}, lost {outcome['lost']}, dup {outcome['duplicated']}; "
                        f"rerun {rerun or '-'}; final {final['state']}; leftovers {row['leftovers']}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary: dict[str, Any] = {}
    for kind in args.types:
        for op in ("add", "delete"):
            rows = [t for t in trials if t["type"] == kind and t["op"] == op]
            summary[f"{kind}/{op}"] = {
                "trials": len(rows),
                "loadable": sum(t["after_kill_state"] in ("intact", "complete") for t in rows),
                "intact": sum(t["after_kill_state"] == "intact" for t in rows),
                "complete": sum(t["after_kill_state"] == "complete" for t in rows),
                "mixed": sum(t["after_kill_state"] == "mixed" for t in rows),
                "broken": sum(t["after_kill_state"] == "broken" for t in rows),
                "lost": sum(t["after_kill_lost"] or 0 for t in rows),
                "duplicated": sum(t["after_kill_duplicated"] or 0 for t in rows),
                "final_complete": sum(t["final_state"] == "complete" for t in rows),
                "leftovers": sum(bool(t["leftovers"]) for t in rows),
            }
    result = {
        **run_header("service_faults"),
        "seconds": round(time.perf_counter() - started, 1),
        "write_seconds": timings,
        "summary": summary,
        "trials": trials,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    columns = ["trials", "loadable", "intact", "complete", "mixed", "broken", "lost", "duplicated"]
    columns += ["final_complete", "leftovers"]
    print("\n" + f"{'type/op':<14}" + "".join(f"{c:>15}" for c in columns))
    for name, s in summary.items():
        print(f"{name:<14}" + "".join(f"{s[c]:>15}" for c in columns))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
