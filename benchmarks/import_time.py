"""What the command line costs before it does any work: wall time and peak memory of one ``rag`` call.

    python benchmarks/import_time.py [--repeats 5]

Each case runs in a fresh process, ``--repeats`` times (round-robin over the cases); the table shows the
median wall time and the median peak resident memory (``os.wait4``'s rusage of that one child). One
more run under ``PYTHONPROFILEIMPORTTIME`` lists which heavy packages the case imported.

The reference is ``python -c "import haystack"``: Haystack 3 imports torch whenever it is installed
(``haystack.utils.device``), so a BM25 query, which runs a Haystack pipeline, cannot cost less.
Targets: ``--help``, ``configs`` and input errors under a second with none of the heavy packages; a
BM25 query with nothing heavy beyond Haystack's own (torch) and bm25s, so no FAISS, transformers or
sentence-transformers. The BM25 and dense bundles are built once from the demo corpus in a temporary
folder (not timed). The load average before and after is recorded: the targets are for an idle machine.

Writes benchmarks/results/import_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "import_time.json"
DEMO_CORPUS = ROOT / "rag" / "demo" / "corpus.jsonl"
TARGET_SECONDS = 1.0
HEAVY = ("torch", "haystack", "faiss", "transformers", "sentence_transformers", "bm25s")
# What a BM25 query may import: Haystack (which brings torch) and the BM25 engine, nothing for dense.
BM25_ALLOWED = {"torch", "haystack", "bm25s"}


def rag_command() -> list[str]:
    """The installed ``rag`` script beside this interpreter (what a user runs), else ``python -m rag.cli``."""
    script = Path(sys.executable).parent / "rag"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag.cli"]


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit code of one run of ``command`` in a fresh process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the maximum over all runs so far.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KB on Linux


def heavy_imports(command: list[str], env: dict[str, str]) -> list[str]:
    """The heavy top-level packages ``command`` imports, from Python's own import-time log on stderr."""
    result = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    loaded = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            loaded.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return [name for name in HEAVY if name in loaded]


def build_bundles(work: Path, env: dict[str, str]) -> dict[str, Path]:
    rag = rag_command()
    bundles = {}
    for name in ("bm25", "dense"):
        out = work / f"{name}-bundle"
        subprocess.run(
            [*rag, "index", "--config", str(ROOT / "configs" / f"{name}.yaml"), "--corpus", str(DEMO_CORPUS),
             "--out", str(out), "--no-progress"],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        bundles[name] = out
    return bundles


def cases(work: Path, bundles: dict[str, Path]) -> list[dict]:
    rag = rag_command()
    bad = work / "bad.yaml"
    bad.write_text("name: bad\nretrieval: {mode: bm25, top_k: 0}\n", encoding="utf-8")
    query = "which dance do honeybees use to point at flowers"
    return [
        {"case": "import haystack (reference)", "command": [sys.executable, "-c", "import haystack"],
         "exit": 0, "target": None},
        {"case": "rag --help", "command": [*rag, "--help"], "exit": 0, "target": TARGET_SECONDS},
        {"case": "rag configs", "command": [*rag, "configs"], "exit": 0, "target": TARGET_SECONDS},
        {"case": "usage error: missing --index", "command": [*rag, "query", "x", "--index", "/nonexistent"],
         "exit": 2, "target": TARGET_SECONDS},
        {"case": "bad config value (top_k: 0)",
         "command": [*rag, "index", "--config", str(bad), "--corpus", str(DEMO_CORPUS), "--out",
                     str(work / "never")],
         "exit": 2, "target": TARGET_SECONDS},
        {"case": "BM25 rag query", "command": [*rag, "query", query, "--index", str(bundles["bm25"])],
         "exit": 0, "target": "haystack"},
        {"case": "dense rag query", "command": [*rag, "query", query, "--index", str(bundles["dense"])],
         "exit": 0, "target": None},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    console = Console()
    load_before = os.getloadavg()  # the targets are for an idle machine: record how idle it was
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundles = build_bundles(work, env)
        todo = cases(work, bundles)
        # Round-robin, not one case after the other: a burst of load from elsewhere then slows every case
        # a little instead of one case a lot, and the comparison with Haystack's import stays fair.
        all_runs: list[list[tuple[float, float, int]]] = [[] for _ in todo]
        for _ in range(args.repeats):
            for case, runs in zip(todo, all_runs, strict=True):
                runs.append(run_once(case["command"], env))
        for case, runs in zip(todo, all_runs, strict=True):
            codes = sorted({code for _, _, code in runs})
            if codes != [case["exit"]]:
                raise SystemExit(f"{case['case']}: exit code(s) {codes}, expected {case['exit']}")
            seconds = [s for s, _, _ in runs]
            heavy = heavy_imports(case["command"], env)
            rows.append(
                {
                    "case": case["case"],
                    # Temporary paths mean nothing after the run; name them by role.
                    "command": " ".join(
                        Path(c).name if c.startswith(str(work)) else c for c in case["command"]
                    ),
                    "exit_code": case["exit"],
                    "repeats": args.repeats,
                    "seconds_median": statistics.median(seconds),
                    "seconds_min": min(seconds),
                    "seconds_max": max(seconds),
                    "peak_rss_mb_median": statistics.median(rss for _, rss, _ in runs),
                    "heavy_imports": heavy,
                    "target": case["target"],
                }
            )
            console.print(f"{case['case']}: {rows[-1]['seconds_median']:.2f} s", highlight=False)
    reference = rows[0]
    for row in rows:
        row["extra_seconds_over_haystack"] = row["seconds_median"] - reference["seconds_median"]
        if row["target"] == "haystack":
            row["meets_target"] = set(row["heavy_imports"]) <= BM25_ALLOWED
        elif row["target"] is not None:
            row["meets_target"] = row["seconds_median"] < row["target"] and not row["heavy_imports"]
        else:
            row["meets_target"] = None
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    if not console.is_terminal:  # a log or a pipe: room for the whole table
        console = Console(width=max(console.width, 150))
    table = Table(title=f"rag start-up cost, median of {args.repeats} fresh processes")
    numeric = ("seconds", "min-max s", "peak RSS MB", "vs haystack s")
    for name in ("case", *numeric, "heavy imports", "target", "met"):
        table.add_column(name, justify="right" if name in numeric else "left")
    targets = {None: "-", "haystack": "only haystack, bm25s", TARGET_SECONDS: "< 1 s, none heavy"}
    for row in rows:
        met = {None: "", True: "yes", False: "NO"}[row["meets_target"]]
        table.add_row(
            row["case"],
            f"{row['seconds_median']:.2f}",
            f"{row['seconds_min']:.2f}-{row['seconds_max']:.2f}",
            f"{row['peak_rss_mb_median']:.0f}",
            f"{row['extra_seconds_over_haystack']:+.2f}",
            ", ".join(row["heavy_imports"]) or "none",
            targets[row["target"]],
            met,
        )
    console.print(table)
    console.print(
        f"load average {load_before[0]:.2f} before, {report['load_average_after'][0]:.2f} after "
        f"({os.cpu_count()} CPUs); written to {RESULTS}",
        highlight=False,
    )


if __name__ == "__main__":
    main()
