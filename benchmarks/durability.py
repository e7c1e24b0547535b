"""Durability of index bundles: SIGKILL at random moments and at each rename, and two writers at once.

    python benchmarks/durability.py [--trials N] [--quick] [--configs bm25 dense hybrid] [--ref REV]

Everything goes through the command line (`rag index | add | delete | query`) and the files on disk, so
the same script measures any version of the product. For BM25, dense and hybrid bundles built from the
demo corpus (60 documents) it runs these cases:

- ``kill``: ``rag index --out BUNDLE`` over a good bundle (a different corpus: 5 documents fewer, 5 new),
  ``rag add`` (5 new documents) and ``rag delete`` (5 ids), each SIGKILLed at a moment drawn uniformly
  within the command's duration (measured first by one uninterrupted run of it);
- ``rename``: the same commands under ``strace -e inject=SYSCALL:signal=KILL:when=N``, which kills the
  process as it enters its N-th ``rename`` / ``renameat`` / ``renameat2`` call (before the call runs).
  The uninterrupted run, traced, says which rename calls a command makes; every N from 1 to that count is
  one trial (``--quick`` samples some);
- ``concurrent``: two ``rag add`` of different batches, and an ``add`` with a ``delete``, started at once.

After each trial a fresh process (``indexers.load_index`` on each side of the bundle, then
``rag.pipelines.build_pipeline`` + ``retrieve``) reads the bundle, and the state is classified:

- *intact*: every side holds exactly the documents of before; *complete*: every side holds the expected
  after-state (for two writers: the changes of every command that exited 0, both if both did);
- *mixed*: the bundle loads in part or whole, but a side holds another set, or the sides disagree;
- *broken*: the bundle is missing or cannot be read or queried. ``rag query`` is then run to see whether
  its error names the copy of the old bundle left aside (the swap window).

``lost`` counts documents missing versus the nearest expected state, ``extra`` documents that should not
be there (or are there twice). Then the killed command is run again (what a user would do), and when it
makes no write of its own (it is refused because its change is already in) a small ``rag delete`` of one
document is the next write. *Leftovers* are counted after that write: any entry of the bundle's parent
folder other than the bundle and ``.NAME.lock``, and any hidden ``.*tmp*`` / ``.*old*`` / ``.*building*``
entry inside the bundle. A last fresh process checks the final state (the after-state less that document).

Writes benchmarks/results/durability.json (or ``--output``) with the machine, date and commit, and prints
one table. ``--ref REV`` measures a committed revision (``git archive`` into the scratch folder, put first
on ``PYTHONPATH``) instead of the working tree. Needs ``strace``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DEMO_CORPUS = ROOT / "rag" / "demo" / "corpus.jsonl"
CONFIG_DIR = ROOT / "configs"
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ("bm25", "dense", "hybrid")
SIDES = {"bm25": ["bm25"], "dense": ["dense"], "hybrid": ["dense", "bm25"]}
KINDS = ("kill", "rename", "concurrent")
SINGLE_OPS = ("index", "add", "delete")
CONCURRENT_OPS = ("add+add", "add+delete")
RENAME_SYSCALLS = ("rename", "renameat", "renameat2")
BUNDLE = "bundle"
LEFTOVER_TAGS = ("tmp", "old", "building")
BATCH_SIZE = 5
NEXT_WRITE_ID = "d01"  # deleted by the next write; no case touches it
QUERY = "what makes the sea rise and fall twice a day"
COMMAND_TIMEOUT = 900.0

console = Console(width=190)
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- corpora


def read_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            ids.append(str(record.get("id", record.get("_id"))))
    return ids


TOPICS = (
    ("glaciers", "Glaciers carve valleys as compacted snow slowly flows downhill under its own weight."),
    ("lighthouses", "Lighthouse keepers once trimmed wicks nightly so ships could see the coast from afar."),
    ("mosses", "Mosses have no roots; they soak up water through their leaves and survive long droughts."),
    ("comets", "A comet's tail points away from the sun, pushed by the solar wind and sunlight."),
    ("violins", "A violin's body amplifies the strings, and its varnish changes how the wood vibrates."),
    ("salt", "Sea salt is made by evaporating brine in shallow ponds under the summer sun."),
    ("owls", "Owls hunt at night by sound; their offset ears locate a mouse under the snow."),
)


def write_batch(path: Path, prefix: str, count: int = BATCH_SIZE) -> list[str]:
    """A JSONL file of ``count`` new documents with ids ``PREFIX-0`` ... (unique to this batch)."""
    ids, lines = [], []
    for j in range(count):
        topic, text = TOPICS[j % len(TOPICS)]
        doc_id = f"{prefix}-{j}"
        ids.append(doc_id)
        lines.append(json.dumps({"id": doc_id, "title": f"On {topic} ({prefix})", "text": f"{text} ({j})"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


def write_rebuild_corpus(path: Path) -> list[str]:
    """The demo corpus less its last 5 documents, plus 5 new ones: what ``rag index`` rebuilds with."""
    kept = [line for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = kept[:-BATCH_SIZE]
    extra = path.with_suffix(".new.jsonl")
    write_batch(extra, "rebuilt")
    path.write_text("\n".join(kept) + "\n" + extra.read_text(encoding="utf-8"), encoding="utf-8")
    extra.unlink()
    return read_ids(path)


# ----------------------------------------------------------------------------------------------- running


@dataclass
class Run:
    """One finished command: exit status (negative: killed by that signal), time, the end of stderr."""

    argv: list[str]
    returncode: int
    seconds: float
    stderr: str
    killed: bool = False

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def message(self) -> str:
        """The first line of stderr that says something (progress bars dropped)."""
        for line in self.stderr.splitlines():
            text = line.strip()
            if text and not text.startswith(("Loading weights", "Batches")) and "it/s]" not in text:
                return text[:400]
        return ""

    def summary(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "seconds": round(self.seconds, 2),
            "killed": self.killed,
            "traceback": self.traceback,
            "message": self.message,
        }


class Rag:
    """Runs the product's command line (and the state checker) against one source tree."""

    def __init__(self, rag_bin: Path, python: Path, workdir: Path, pythonpath: Path | None) -> None:
        self.rag_bin, self.python, self.workdir = rag_bin, python, workdir
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        if pythonpath is not None:
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(pythonpath), os.environ.get("PYTHONPATH", "")) if p
            )
        self._numbers = itertools.count(1)

    def argv(self, *args: str | Path) -> list[str]:
        return [str(self.rag_bin), *map(str, args)]

    def _stderr_file(self) -> Path:
        return self.workdir / "logs" / f"{next(self._numbers):05d}.err"

    def start(self, argv: Sequence[str]) -> tuple[subprocess.Popen[bytes], Path]:
        err = self._stderr_file()
        with open(err, "wb") as handle:
            proc = subprocess.Popen(
                list(argv), stdout=subprocess.DEVNULL, stderr=handle, env=self.env, cwd=self.workdir
            )
        return proc, err

    @staticmethod
    def finish(proc: subprocess.Popen[bytes], err: Path, argv: Sequence[str], started: float) -> Run:
        try:
            code = proc.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        seconds = time.perf_counter() - started
        text = err.read_text(encoding="utf-8", errors="replace")
        return Run(list(argv), code, seconds, text[-4000:], killed=code in (-signal.SIGKILL, 128 + 9))

    def run(self, argv: Sequence[str]) -> Run:
        started = time.perf_counter()
        proc, err = self.start(argv)
        return self.finish(proc, err, argv, started)

    def run_killed_after(self, argv: Sequence[str], delay: float) -> Run:
        """Start ``argv`` and SIGKILL it ``delay`` seconds later, unless it has finished by then."""
        started = time.perf_counter()
        proc, err = self.start(argv)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
        return self.finish(proc, err, argv, started)

    def check(self, items: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        """Read bundles in a fresh process: the ids of each side, and whether a query runs."""
        if not items:
            return []
        spec, result = self.workdir / f"{name}.in.json", self.workdir / f"{name}.out.json"
        spec.write_text(json.dumps(items), encoding="utf-8")
        run = self.run([str(self.python), "-c", CHECKER, str(spec), str(result)])
        if run.returncode != 0:
            raise SystemExit(f"the state checker failed (exit {run.returncode}):\n{run.stderr}")
        return list(json.loads(result.read_text(encoding="utf-8")))


# Runs in a fresh interpreter of the product under test; one record per bundle.
CHECKER = r"""
import json, sys
from pathlib import Path

items = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
from indexers import load_index
from rag.core.errors import RagError
from rag.pipelines import build_pipeline, retrieve

def describe(exc):
    return {"type": type(exc).__name__, "rag_error": isinstance(exc, RagError), "message": str(exc)[:600]}

records = []
for item in items:
    path = Path(item["path"])
    record = {"path": str(path), "exists": path.is_dir(), "sides": {}, "query": None}
    if record["exists"]:
        for side in item["sides"]:
            try:
                record["sides"][side] = {"ids": [str(i) for i in load_index(path / side).ids]}
            except Exception as exc:
                record["sides"][side] = {"error": describe(exc)}
    try:
        pipeline = build_pipeline(None, path)
        pipeline.warm_up()
        record["query"] = {"ok": True, "hits": len(retrieve(pipeline, item["query"], top_k=3))}
    except Exception as exc:
        record["query"] = {"ok": False, "error": describe(exc)}
    records.append(record)
Path(sys.argv[2]).write_text(json.dumps(records), encoding="utf-8")
"""


def parallel(jobs: int, func: Callable[[T], Any], items: Iterable[T]) -> None:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for _ in pool.map(func, items):
            pass


# ------------------------------------------------------------------------------------------------ states


@dataclass(frozen=True)
class Change:
    """What one command does to the set of document ids."""

    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def apply(self, ids: frozenset[str]) -> frozenset[str]:
        return (ids - self.removed) | self.added


def classify(
    record: dict[str, Any],
    sides: Sequence[str],
    before: frozenset[str],
    expected: Sequence[frozenset[str]],
    acceptable: Sequence[frozenset[str]] | None = None,
) -> dict[str, Any]:
    """Classify a checked bundle against the state before and the complete states after.

    ``expected``: the after-states that count as *complete*. ``acceptable``: the states that lose nothing
    (default: before and ``expected``, as for a killed command; for two writers that exited 0 only the
    state with both changes). Returns the state (intact, complete, mixed, broken), the documents lost and
    extra (or duplicated) versus the nearest acceptable state (per side, the worst side counts), and the
    errors seen.
    """
    # Ties go to the after-state: a half-done add has lost documents rather than gained some.
    targets = list(acceptable) if acceptable is not None else [*expected, before]
    errors = [s["error"]["message"] for s in record["sides"].values() if "error" in s]
    query = record.get("query") or {}
    if not query.get("ok", False) and query.get("error") and query["error"]["message"] not in errors:
        errors.append(query["error"]["message"])
    if not record["exists"]:
        return {"state": "broken", "lost": 0, "extra": 0, "errors": errors, "missing": True}
    lists = {side: record["sides"].get(side, {}).get("ids") for side in sides}
    readable = {side: ids for side, ids in lists.items() if ids is not None}
    lost = extra = 0
    for ids in readable.values():
        present = frozenset(ids)
        duplicated = len(ids) - len(present)
        # The nearest acceptable state for this side: fewest documents missing plus extra.
        miss, more = min(((len(t - present), len(present - t)) for t in targets), key=sum)
        lost, extra = max(lost, miss), max(extra, more + duplicated)
    sets = {frozenset(ids) for ids in readable.values()}
    clean = all(len(ids) == len(set(ids)) for ids in readable.values())
    agree = clean and len(sets) <= 1 and all(s == before or s in expected for s in sets)
    if not agree:
        state = "mixed"  # a side holds a set that is neither before nor after, or the sides disagree
    elif len(readable) < len(sides) or not query.get("ok"):
        state = "broken"  # what can be read is consistent, but a side or the query fails
    elif sets == {before}:
        state = "intact"
    else:
        state = "complete"
    return {"state": state, "lost": lost, "extra": extra, "errors": errors, "missing": False}


def leftovers(bundle: Path) -> list[dict[str, Any]]:
    """Entries a write left behind: siblings of the bundle other than its lock, hidden temporaries inside."""
    found = []
    lock = f".{bundle.name}.lock"
    if bundle.parent.is_dir():
        for entry in sorted(bundle.parent.iterdir()):
            if entry.name not in (bundle.name, lock):
                found.append(entry)
    if bundle.is_dir():
        for entry in sorted(bundle.rglob(".*")):
            tagged = any(tag in entry.name for tag in LEFTOVER_TAGS)
            if tagged and not any(parent in found for parent in entry.parents):
                found.append(entry)
    return [{"path": str(e.relative_to(bundle.parent)), "bytes": tree_size(e)} for e in found]


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ------------------------------------------------------------------------------------------------ trials


@dataclass
class Trial:
    config: str
    kind: str
    op: str
    number: int
    folder: Path
    commands: list[list[str]]
    changes: list[Change]
    before: frozenset[str]
    delay: float | None = None
    inject: dict[str, Any] | None = None
    runs: list[Run] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    leftovers_after_kill: list[dict[str, Any]] = field(default_factory=list)
    rerun: Run | None = None
    next_write: Run | None = None
    leftovers_after_write: list[dict[str, Any]] = field(default_factory=list)
    cli_query: Run | None = None
    final: dict[str, Any] = field(default_factory=dict)
    deleted_next: bool = False

    @property
    def case(self) -> str:
        return f"{self.config} {self.kind} {self.op}"

    @property
    def bundle(self) -> Path:
        return self.folder / "out" / BUNDLE

    def expected_after(self) -> list[frozenset[str]]:
        """The complete states: every change applied (for concurrent writers: those that exited 0)."""
        if self.kind != "concurrent":
            return [self.changes[0].apply(self.before)]
        state = self.before
        for change, run in zip(self.changes, self.runs, strict=True):
            if run.returncode == 0:
                state = change.apply(state)
        return [state]

    def acceptable(self) -> list[frozenset[str]] | None:
        """States that lose nothing: before or after for a killed command; for two writers, only after."""
        return self.expected_after() if self.kind == "concurrent" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "number": self.number,
            "delay_s": None if self.delay is None else round(self.delay, 3),
            "inject": self.inject,
            "runs": [r.summary() for r in self.runs],
            "state": self.outcome.get("state"),
            "lost": self.outcome.get("lost"),
            "extra": self.outcome.get("extra"),
            "errors": self.outcome.get("errors"),
            "leftovers_after_kill": self.leftovers_after_kill,
            "rerun": self.rerun.summary() if self.rerun else None,
            "next_write": self.next_write.summary() if self.next_write else None,
            "leftovers_after_next_write": self.leftovers_after_write,
            "cli_query_when_broken": self.cli_query.summary() if self.cli_query else None,
            "final": self.final,
        }


class Bench:
    def __init__(self, rag: Rag, configs: Sequence[str], kinds: Sequence[str], seed: int, jobs: int) -> None:
        self.rag, self.configs, self.kinds, self.jobs = rag, list(configs), list(kinds), jobs
        self.random = random.Random(seed)
        self.work = rag.workdir
        self.demo_ids = frozenset(read_ids(DEMO_CORPUS))
        self.rebuild_corpus = self.work / "inputs" / "rebuild.jsonl"
        self.rebuild_ids = frozenset(write_rebuild_corpus(self.rebuild_corpus))
        self.templates: dict[str, Path] = {}
        self.calibration: dict[str, dict[str, Any]] = {}
        self.trials: list[Trial] = []
        self._batches = 0
        self._folders = 0

    # -- set-up

    def build_templates(self) -> None:
        def build(config: str) -> None:
            out = self.work / "templates" / config / BUNDLE
            run = self.rag.run(
                self.rag.argv(
                    "index",
                    "--config",
                    CONFIG_DIR / f"{config}.yaml",
                    "--corpus",
                    DEMO_CORPUS,
                    "--out",
                    out,
                    "--no-progress",
                )
            )
            if run.returncode != 0:
                raise SystemExit(f"building the {config} template bundle failed:\n{run.stderr}")
            self.templates[config] = out

        parallel(self.jobs, build, self.configs)

    def new_folder(self, label: str) -> Path:
        self._folders += 1
        folder = self.work / "trials" / f"{self._folders:04d}-{label.replace(' ', '-').replace('+', '_')}"
        (folder / "out").mkdir(parents=True)
        (folder / "in").mkdir()
        return folder

    def fresh_bundle(self, config: str, folder: Path) -> None:
        shutil.copytree(self.templates[config], folder / "out" / BUNDLE, symlinks=True)

    def batch(self, folder: Path) -> tuple[Path, frozenset[str]]:
        self._batches += 1
        path = folder / "in" / f"batch-{self._batches}.jsonl"
        return path, frozenset(write_batch(path, f"new{self._batches}"))

    def command(self, config: str, op: str, folder: Path) -> tuple[list[str], Change]:
        bundle = folder / "out" / BUNDLE
        if op == "index":
            argv = self.rag.argv(
                "index",
                "--config",
                CONFIG_DIR / f"{config}.yaml",
                "--corpus",
                self.rebuild_corpus,
                "--out",
                bundle,
                "--no-progress",
            )
            change = Change(self.rebuild_ids - self.demo_ids, self.demo_ids - self.rebuild_ids)
            return argv, change
        if op == "add":
            path, ids = self.batch(folder)
            return self.rag.argv("add", "--index", bundle, "--corpus", path, "--no-progress"), Change(
                added=ids
            )
        if op == "delete":
            choices = sorted(self.demo_ids & self.rebuild_ids - {NEXT_WRITE_ID})
            doomed = sorted(self.random.sample(choices, BATCH_SIZE))
            return self.rag.argv("delete", "--index", bundle, *doomed), Change(removed=frozenset(doomed))
        raise ValueError(op)

    def trial(self, config: str, kind: str, op: str, number: int) -> Trial:
        folder = self.new_folder(f"{config} {kind} {op} {number}")
        self.fresh_bundle(config, folder)
        commands, changes = [], []
        for part in op.split("+"):
            argv, change = self.command(config, part, folder)
            commands.append(argv)
            changes.append(change)
        trial = Trial(config, kind, op, number, folder, commands, changes, self.demo_ids)
        self.trials.append(trial)
        return trial

    # -- calibration: one uninterrupted, traced run per command

    def calibrate(self) -> None:
        """Run each command once, uninterrupted and traced: its duration and the rename calls it makes.

        Runs ``jobs`` at a time, as the killed trials do, so the durations match the load they run under.
        """
        jobs = []
        for config in self.configs:
            for op in SINGLE_OPS:
                folder = self.new_folder(f"{config} calibrate {op}")
                self.fresh_bundle(config, folder)
                argv, change = self.command(config, op, folder)
                jobs.append((f"{config} {op}", folder, argv, change))

        def calibrate_one(job: tuple[str, Path, list[str], Change]) -> None:
            key, folder, argv, change = job
            trace = folder / "renames.strace"
            traced = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(trace)]
            run = self.rag.run([*traced, "-e", f"trace={','.join(RENAME_SYSCALLS)}", *argv])
            if run.returncode != 0:
                raise SystemExit(f"uninterrupted `{key}` failed (exit {run.returncode}):\n{run.stderr}")
            calls = parse_renames(trace.read_text(encoding="utf-8", errors="replace"), folder)
            info = {"seconds": run.seconds, "renames": calls, "folder": folder, "change": change}
            self.calibration[key] = info
            console.log(f"calibrated {key}: {run.seconds:.1f} s, {len(calls)} rename calls")

        parallel(self.jobs, calibrate_one, jobs)
        self.calibration = {key: self.calibration[key] for key, *_ in jobs}

    def check_calibration(self) -> None:
        """The uninterrupted runs must reach the after-state, or the benchmark's expectations are wrong."""
        keys = list(self.calibration)
        records = self.rag.check(
            [
                {
                    "path": str(self.calibration[k]["folder"] / "out" / BUNDLE),
                    "sides": SIDES[k.split()[0]],
                    "query": QUERY,
                }
                for k in keys
            ],
            "calibration",
        )
        for key, record in zip(keys, records, strict=True):
            info = self.calibration[key]
            expected = info["change"].apply(self.demo_ids)
            verdict = classify(record, SIDES[key.split()[0]], self.demo_ids, [expected])
            info["state"] = verdict["state"]
            if verdict["state"] != "complete":
                console.print(f"[bold red]uninterrupted {key} did not reach the expected state: {verdict}")

    # -- the cases

    def run_cases(self, trials: int, quick: bool) -> None:
        """Set up every trial, run the killed ones ``jobs`` at a time, then the concurrent ones in turn."""
        killed: list[Trial] = []
        concurrent: list[Trial] = []
        for config in self.configs:
            # Dense and hybrid processes cost several seconds to start: a third of the trials.
            count = trials if config == "bm25" else max(1, math.ceil(trials / 3))
            if quick:
                count = 2 if config == "bm25" else 1
            if "kill" in self.kinds:
                for op in SINGLE_OPS:
                    duration = self.calibration[f"{config} {op}"]["seconds"]
                    for number in range(1 if quick else count):
                        trial = self.trial(config, "kill", op, number)
                        trial.delay = self.random.uniform(0.0, duration)
                        killed.append(trial)
            if "rename" in self.kinds:
                for op in SINGLE_OPS:
                    for syscall, n in self.injection_points(config, op, quick):
                        trial = self.trial(config, "rename", op, n)
                        trial.inject = {"syscall": syscall, "when": n}
                        killed.append(trial)
            if "concurrent" in self.kinds:
                for op in CONCURRENT_OPS:
                    concurrent.extend(self.trial(config, "concurrent", op, n) for n in range(count))
        parallel(self.jobs, self.run_killed, killed)
        console.log(f"{len(killed)} killed trials run")
        for trial in concurrent:
            started = time.perf_counter()
            procs = [self.rag.start(argv) for argv in trial.commands]
            trial.runs = [
                self.rag.finish(proc, err, argv, started)
                for (proc, err), argv in zip(procs, trial.commands, strict=True)
            ]
            trial.leftovers_after_kill = leftovers(trial.bundle)
        console.log(f"{len(concurrent)} concurrent trials run")

    def run_killed(self, trial: Trial) -> None:
        if trial.inject is not None:
            # strace kills the process as it enters the N-th call (the call does not run). Not with
            # --seccomp-bpf: strace 6.1 then does not inject.
            syscall, n = trial.inject["syscall"], trial.inject["when"]
            inject = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={syscall}"]
            inject += ["-e", f"inject={syscall}:signal=KILL:when={n}"]
            trial.runs.append(self.rag.run([*inject, *trial.commands[0]]))
        else:
            trial.runs.append(self.rag.run_killed_after(trial.commands[0], trial.delay or 0.0))
        trial.leftovers_after_kill = leftovers(trial.bundle)

    def injection_points(self, config: str, op: str, quick: bool) -> list[tuple[str, int]]:
        counts = Counter(call["syscall"] for call in self.calibration[f"{config} {op}"]["renames"])
        points = [(syscall, n) for syscall in sorted(counts) for n in range(1, counts[syscall] + 1)]
        if quick and config != "bm25" and len(points) > 1:
            points = self.random.sample(points, 1)
        return points

    # -- after the trials: check, rerun, next write, check again

    def settle(self) -> None:
        items = [{"path": str(t.bundle), "sides": SIDES[t.config], "query": QUERY} for t in self.trials]
        for trial, record in zip(self.trials, self.rag.check(items, "after-kill"), strict=True):
            trial.outcome = classify(
                record, SIDES[trial.config], trial.before, trial.expected_after(), trial.acceptable()
            )
        console.log("states after the kills checked")
        broken = [t for t in self.trials if t.outcome["state"] == "broken"]
        parallel(self.jobs, self.query_broken, broken)
        parallel(self.jobs, self.rerun_and_write, self.trials)
        console.log("reruns and next writes done")
        for trial in self.trials:
            trial.leftovers_after_write = leftovers(trial.bundle)
        records = self.rag.check(items, "final")
        for trial, record in zip(self.trials, records, strict=True):
            expected = [s - {NEXT_WRITE_ID} if trial.deleted_next else s for s in trial.expected_after()]
            verdict = classify(record, SIDES[trial.config], trial.before, expected, expected)
            trial.final = {"ok": verdict["state"] == "complete", **verdict}

    def query_broken(self, trial: Trial) -> None:
        trial.cli_query = self.rag.run(self.rag.argv("query", "--index", trial.bundle, QUERY))

    def rerun_and_write(self, trial: Trial) -> None:
        """Retry a killed command whose change is not (all) in; else, or if it fails, delete one document."""
        needs_rerun = trial.kind != "concurrent" and trial.runs[0].killed
        if needs_rerun and trial.outcome["state"] != "complete":
            trial.rerun = self.rag.run(trial.commands[0])
        if trial.rerun is None or trial.rerun.returncode != 0:
            trial.next_write = self.rag.run(self.rag.argv("delete", "--index", trial.bundle, NEXT_WRITE_ID))
            trial.deleted_next = trial.next_write.returncode == 0


def parse_renames(trace: str, folder: Path) -> list[dict[str, Any]]:
    """The rename calls of an strace log, in order, with the trial folder shown as ``<trial>``."""
    calls = []
    pattern = re.compile(r"^(\d+)\s+(rename|renameat2?)\((.*)\)\s+=\s+(-?\d+)")
    for line in trace.splitlines():
        match = pattern.match(line)
        if match:
            args = match.group(3).replace(str(folder), "<trial>")
            calls.append(
                {
                    "pid": int(match.group(1)),
                    "syscall": match.group(2),
                    "args": args,
                    "result": int(match.group(4)),
                }
            )
    return calls


# ------------------------------------------------------------------------------------------------ report


def summarize(trials: Sequence[Trial]) -> dict[str, Any]:
    """Per-case counts; the targets are zero mixed, broken, lost, extra and leftovers."""
    states = Counter(t.outcome["state"] for t in trials)
    broken = [t for t in trials if t.outcome["state"] == "broken"]
    reruns = [t for t in trials if t.rerun is not None]
    return {
        "trials": len(trials),
        "killed": sum(any(r.killed for r in t.runs) for t in trials),
        "commands_exit_0": sum(r.returncode == 0 for t in trials for r in t.runs),
        "commands": sum(len(t.runs) for t in trials),
        "previous_state_intact": states["intact"],
        "new_state_complete": states["complete"],
        "mixed_states": states["mixed"],
        "broken": states["broken"],
        "bundle_missing": sum(bool(t.outcome.get("missing")) for t in trials),
        "broken_reported_naming_old_copy": sum(names_a_copy(t) for t in broken),
        "documents_lost": sum(t.outcome["lost"] for t in trials),
        "documents_extra_or_duplicated": sum(t.outcome["extra"] for t in trials),
        "trials_with_leftovers_after_kill": sum(bool(t.leftovers_after_kill) for t in trials),
        "leftovers_after_next_write": sum(len(t.leftovers_after_write) for t in trials),
        "trials_with_leftovers_after_next_write": sum(bool(t.leftovers_after_write) for t in trials),
        "leftover_bytes_after_next_write": sum(e["bytes"] for t in trials for e in t.leftovers_after_write),
        "reruns": len(reruns),
        "reruns_completed": sum(rerun_completed(t) for t in reruns),
        "tracebacks": sum(
            r.traceback for t in trials for r in (*t.runs, t.rerun, t.next_write, t.cli_query) if r
        ),
        "final_state_ok": sum(bool(t.final.get("ok")) for t in trials),
    }


def rerun_completed(trial: Trial) -> bool:
    """The retry of a killed command (run when its change was not all in) exited 0, without a traceback."""
    return trial.rerun is not None and trial.rerun.returncode == 0 and not trial.rerun.traceback


def names_a_copy(trial: Trial) -> bool:
    """Whether the error for a broken bundle names a copy of the old bundle (or side) left aside."""
    messages = list(trial.outcome["errors"])
    if trial.cli_query is not None:
        messages.append(trial.cli_query.stderr)
    copies = [entry["path"] for entry in trial.leftovers_after_kill]
    return any(copy and copy in message for copy in copies for message in messages)


# (column, summary key, whether a non-zero value misses the target)
COLUMNS = [
    ("trials", "trials", False),
    ("killed", "killed", False),
    ("intact", "previous_state_intact", False),
    ("complete", "new_state_complete", False),
    ("mixed", "mixed_states", True),
    ("broken", "broken", True),
    ("missing", "bundle_missing", True),
    ("copy named", "broken_reported_naming_old_copy", False),
    ("lost", "documents_lost", True),
    ("extra", "documents_extra_or_duplicated", True),
    ("left at kill", "trials_with_leftovers_after_kill", False),
    ("left after write", "leftovers_after_next_write", True),
    ("rerun ok", None, False),
    ("final ok", "final_state_ok", False),
    ("tracebacks", "tracebacks", True),
]


def print_table(cases: dict[str, dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    table.add_column("case", no_wrap=True)
    for name, _, _ in COLUMNS:
        table.add_column(name, justify="right")
    for case, row in cases.items():
        cells = [case]
        for _, key, target_zero in COLUMNS:
            if key is None:
                cells.append(f"{row['reruns_completed']}/{row['reruns']}" if row["reruns"] else "-")
            else:
                value = row[key]
                cells.append(f"[red]{value}[/]" if target_zero and value else str(value))
        table.add_row(*cells)
    console.print(table)
    console.print(
        "intact / complete: every side holds the ids of before / of the expected after-state; mixed: "
        "sides disagree or hold another set; broken: missing or unreadable (missing: the bundle folder is "
        "gone; copy named: the error names the copy of the old bundle or side left aside); lost / extra: "
        "documents versus the nearest acceptable state; left at kill: trials with leftovers right after "
        "the kill; left after write: leftover entries after the next write; rerun ok: retries (of killed "
        "commands whose change was not all in) that exited 0; final ok: state after the rerun and next "
        "write as expected. Red: misses the target 0.",
        highlight=False,
    )


def machine() -> dict[str, Any]:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    strace = subprocess.run(["strace", "-V"], capture_output=True, text=True).stdout.splitlines()
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "strace": strace[0] if strace else "",
        # Other work on the machine slows every process start; the random kill moments scale with it.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


# -------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=6,
        help="random-kill and concurrent trials per command for BM25 (a third of it for "
        "dense and hybrid); rename injection tries every rename call (default 6)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few trials: 1 random kill per command, every rename of BM25 but 1 sampled rename per "
        "dense/hybrid command, 2 BM25 and 1 dense/hybrid concurrent trials per pair",
    )
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--ref", help="measure this git revision (git archive) instead of the working tree")
    parser.add_argument("--rag", type=Path, default=None, help="the rag executable (default: next to python)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel reruns and checks (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "durability.json")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}")
    if shutil.which("strace") is None:
        raise SystemExit(
            "strace is not installed; the rename fault injection needs it (apt-get install strace)"
        )
    trials = args.trials
    rag_bin = args.rag or Path(sys.executable).parent / "rag"
    if not rag_bin.exists():
        rag_bin = ROOT / ".venv" / "bin" / "rag"
    python = rag_bin.parent / "python"

    work = Path(args.workdir or tempfile.mkdtemp(prefix="rag-durability-"))
    for sub in ("logs", "inputs", "trials", "templates"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    src: Path | None = None
    if args.ref:
        commit = git("rev-parse", args.ref)
        if not commit:
            raise SystemExit(f"--ref {args.ref}: not a revision of {ROOT}")
        src = work / "src"
        src.mkdir()
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        source = {"commit": commit, "ref": args.ref, "tree": f"git archive {commit}"}
    else:
        dirty = git("status", "--porcelain", "--", "rag", "indexers", "pyproject.toml").splitlines()
        source = {
            "commit": git("rev-parse", "HEAD"),
            "ref": None,
            "tree": "working tree",
            "uncommitted_product_changes": dirty,
        }

    started = time.perf_counter()
    bench = Bench(Rag(rag_bin, python, work, src), args.configs, args.kinds, args.seed, args.jobs)
    try:
        console.log(f"scratch folder {work}; measuring {source['tree']} ({source['commit'][:10]})")
        bench.build_templates()
        bench.calibrate()
        bench.check_calibration()
        bench.run_cases(trials, args.quick)
        bench.settle()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    by_case: dict[str, list[Trial]] = {}
    for trial in bench.trials:
        by_case.setdefault(trial.case, []).append(trial)
    cases = {case: summarize(group) for case, group in by_case.items()}
    totals = summarize(bench.trials)
    result = {
        "benchmark": "durability",
        "created": datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "source": source,
        "machine": machine(),
        "settings": {
            "trials": None if args.quick else trials,
            "quick": args.quick,
            "configs": args.configs,
            "kinds": args.kinds,
            "seed": args.seed,
            "batch_size": BATCH_SIZE,
            "corpus": "rag/demo/corpus.jsonl",
        },
        "calibration": {
            key: {
                "seconds": round(info["seconds"], 2),
                "state": info.get("state"),
                "renames": info["renames"],
            }
            for key, info in bench.calibration.items()
        },
        "totals": totals,
        "cases": cases,
        "trials": [t.to_json() for t in bench.trials],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table({**cases, "all": totals}, f"durability: {source['tree']} {source['commit'][:10]}")
    console.print(f"{result['seconds']:.0f} s; written to {args.output}")
    return result


if __name__ == "__main__":
    main()
