"""ColBERT-PRF settings on BEIR SciFact: MAP@100 / nDCG@10 of the ranker and reranker for a grid of
``beta``, ``fb_embs`` and ``fb_docs`` (``k`` 24), against ColBERT E2E on the same first pass.

    python benchmarks/colbert_prf_sweep.py [--model benchmarks/.cache/models/colbert-minilm] \\
        [--betas 0.1 0.25 0.5 1.0] [--fb-embs 5 10] [--fb-docs 3 5] [--queries N]

Runs on the ColBERT E2E bundle that ``benchmarks/colbert_scifact.py`` cached (built here through the
engine when it is missing). Each test query is encoded and searched once (the first pass, 1000 deep so
that the reranker rescores the top 1000 as the reference does); then every setting runs the product's
:class:`rag.retrievers.prf.ColBERTPRF` component on that first pass, in both modes, 100 deep. The
paper's setting is ``k 24, fb_embs 10, fb_docs 3, beta 1``; its DL19 finding was MAP +26%.

Writes ``benchmarks/results/colbert_prf_sweep.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from evaluation.ir import evaluate
from evaluation.reports import write_json
from rag.evaluate import ensure_bundle, load_eval_set

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ["nDCG@10", "AP@100", "R@100"]
FIRST_PASS_DEPTH = 1000  # the reference reranks ColBERT E2E's top 1000
RUN_DEPTH = 100


def e2e_bundle(model: Path, data: Path, cache_dir: Path) -> tuple[Path, Any]:
    """The ColBERT E2E bundle of ``colbert_scifact.py`` (same cache folder and config; built through the
    engine when missing), and its config."""
    from colbert_scifact import colbert_configs, model_stamp

    config = colbert_configs(model)["ColBERT E2E"]
    eval_set = load_eval_set(data, "test")
    bundle, _, _ = ensure_bundle(
        config, eval_set.corpus, cache_dir / f"colbert-{model_stamp(model)}", title=eval_set.title
    )
    return Path(bundle), config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact")
    parser.add_argument(
        "--model", type=Path, default=ROOT / "benchmarks" / ".cache" / "models" / "colbert-minilm"
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--fb-embs", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--fb-docs", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--k", type=int, default=24)
    parser.add_argument("--queries", type=int, default=None, help="first N test queries (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "colbert_prf_sweep.json")
    args = parser.parse_args()

    from indexers.multivector import MultiVectorIndex
    from rag.retrievers.colbert import FirstPass, colbert_encoder
    from rag.retrievers.prf import ColBERTPRF

    bundle, config = e2e_bundle(args.model, args.data, args.cache_dir)
    index = MultiVectorIndex.load(bundle / "multivector")
    encoder = colbert_encoder(config.colbert)
    data = load_eval_set(args.data, "test")
    assert data.beir is not None
    qids, texts = data.query_ids[: args.queries], data.queries[: args.queries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long queries are truncated at query_maxlen
        queries = encoder.encode_queries(texts)
    settings = {
        "nprobe": config.colbert.nprobe,
        "candidates": config.colbert.candidates,
        "exhaustive": config.colbert.exhaustive,
        "keep_decoded": config.colbert.keep_decoded,
    }
    grid = list(itertools.product(args.fb_docs, args.fb_embs, args.betas))
    prfs = {
        (mode, fb_docs, fb_embs, beta): ColBERTPRF(
            mode=mode, fb_docs=fb_docs, k=args.k, fb_embs=fb_embs, beta=beta, top_k=RUN_DEPTH
        )
        for fb_docs, fb_embs, beta in grid
        for mode in ("ranker", "reranker")
    }
    runs: dict[Any, dict[str, dict[str, float]]] = {key: {} for key in prfs}
    seconds: dict[Any, list[float]] = {key: [] for key in prfs}
    e2e_run, first_seconds = {}, []
    # Query by query: a first pass holds every candidate's decoded vectors (~160 MB at cap 2048), so
    # all settings run on it before the next query's replaces it.
    for qid, q in zip(qids, queries, strict=True):
        t = time.perf_counter()
        result = index.search_one(q, FIRST_PASS_DEPTH, **settings)
        first_pass = FirstPass(index, q, result, encoder.tokenizer, settings)
        docs = index.get([doc_id for doc_id, _ in result.hits])
        first_seconds.append(time.perf_counter() - t)
        e2e_run[qid] = dict(result.hits[:RUN_DEPTH])
        for key, prf in prfs.items():
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fewer feedback tokens than k
                out = prf.run(docs if prf.mode == "reranker" else docs[: prf.fb_docs], first_pass)
            seconds[key].append(time.perf_counter() - t)
            runs[key][qid] = {doc.id: float(doc.score or 0.0) for doc in out["documents"]}
        print(f"query {len(e2e_run)}/{len(qids)}", flush=True)
    first_ms = float(np.mean(first_seconds) * 1000)
    # Only the queries run are scored (a --queries slice is not penalised for the others).
    qrels = {qid: data.beir.qrels[qid] for qid in qids if qid in data.beir.qrels}
    e2e = evaluate(qrels, e2e_run, METRICS)
    rows = []
    for (mode, fb_docs, fb_embs, beta), run in runs.items():
        metrics = evaluate(qrels, run, METRICS)
        rows.append(
            {
                "mode": mode,
                "fb_docs": fb_docs,
                "fb_embs": fb_embs,
                "beta": beta,
                "k": args.k,
                **metrics,
                "MAP@100_change": metrics["MAP@100"] / e2e["MAP@100"] - 1,
                "prf_ms": float(np.mean(seconds[(mode, fb_docs, fb_embs, beta)]) * 1000),
            }
        )
    write_json(
        args.out,
        {
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "model": str(args.model),
            "bundle": str(bundle),
            "queries": len(qids),
            "search_settings": settings,
            "first_pass_ms": first_ms,
            "e2e": e2e,
            "rows": rows,
            "paper": {"setting": {"k": 24, "fb_embs": 10, "fb_docs": 3, "beta": 1.0}, "dl19_map_gain": 0.26},
        },
    )
    table = Table(
        title=f"ColBERT-PRF on SciFact test ({len(qids)} queries); E2E MAP@100 {e2e['MAP@100']:.4f}"
    )
    for col in ["mode", "fb_docs", "fb_embs", "beta", "nDCG@10", "MAP@100", "MAP change", "R@100", "PRF ms"]:
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["mode"],
            str(r["fb_docs"]),
            str(r["fb_embs"]),
            f"{r['beta']:g}",
            f"{r['nDCG@10']:.4f}",
            f"{r['MAP@100']:.4f}",
            f"{r['MAP@100_change'] * 100:+.1f}%",
            f"{r['Recall@100']:.4f}",
            f"{r['prf_ms']:.1f}",
        )
    Console(width=160).print(table)
    print(f"first pass {first_ms:.1f} ms per query (search only); written to {args.out}")


if __name__ == "__main__":
    main()
