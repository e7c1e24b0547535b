"""ColBERT on BEIR SciFact: BM25, dense MiniLM, ColBERT E2E, ColBERT-PRF ranker and reranker in one table,
plus the candidate-generation agreement with exhaustive MaxSim against nprobe, and the token codecs.

    flock /tmp/rag-heavy.lock python benchmarks/colbert_scifact.py \\
        [--model benchmarks/.cache/models/colbert-minilm] [--data ../shared/data/beir/scifact]

Rows go through the product's engine (``rag.evaluate.evaluate_config``: bundle, pipeline, run_query,
metrics); BM25 and dense rerun on the bundles ``benchmarks/beir_reference.py`` cached. Latency is the wall
time of ``run_query`` per query (encoding included), mean and p95. The ColBERT bundle and its token
vectors are cached under ``benchmarks/.cache/colbert-<model hash>/`` (the engine's bundle key does not
hold the ``colbert`` section yet, so each model gets its own folder).

Also measured, on the ColBERT E2E bundle with the test queries encoded once:

- **agreement**: the share of queries whose top-10 from centroid candidate generation equals the
  exhaustive MaxSim top-10 (every document decoded and scored), and the search latency (encoding
  excluded), for each ``nprobe`` (at the default cap) and each candidate cap (at the default nprobe);
- **codecs**: the same token vectors (read back from the cache) in ``fp16``, ``ivfsq`` and ``ivfpq``:
  bytes per stored token, codec build seconds (k-means + quantizer training + encoding the codes, corpus
  encoding excluded) and nDCG@10 / MAP@100 / R@100 at the default search settings.

Writes ``benchmarks/results/colbert_scifact.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
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
from rag.core.config import RagConfig, load_config
from rag.evaluate import evaluate_config, load_eval_set

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER_DL19_MAP_GAIN = 0.26  # ColBERT-PRF ranker vs ColBERT E2E, MAP on TREC DL 2019 (Wang et al. 2021)
METRICS = ["nDCG@10", "MAP@100", "R@100"]


class Timer:
    """Per-query wall time from the engine's on_query callback (called after each query)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: list[float] = []

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self.last)
        self.last = now


def latency(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"mean_ms": float(ms.mean()), "p95_ms": float(np.percentile(ms, 95))} if len(ms) else {}


def run_row(config: RagConfig, dataset: Path, cache_dir: Path, depth: int, label: str) -> dict[str, Any]:
    timer = Timer()
    result = evaluate_config(config, dataset, "test", cache_dir=cache_dir, depth=depth, on_query=timer)
    # The first interval includes bundle loading and the warm-up query: measure from the second query.
    timer.seconds = timer.seconds[1:]
    m = result.metrics
    return {
        "row": label,
        "config": config.name,
        "nDCG@10": m["nDCG@10"],
        "MAP@100": m["MAP@100"],
        "R@100": m["Recall@100"],
        **latency(timer.seconds),
        "stage_ms": {k: v * 1000 for k, v in result.stage_seconds.items()},
        "index_build_seconds": result.index_build_seconds,
        "index_reused": result.index_reused,
        "index_path": result.index_path,
        "depth": result.depth,
    }


def model_stamp(model: Path) -> str:
    from rag.core.models import model_files

    return model_files(model).sha256[:12]


def colbert_configs(model: Path) -> dict[str, RagConfig]:
    base = load_config(ROOT / "configs" / "colbert.yaml").to_dict()
    base["colbert"]["model"] = str(model)
    prf = load_config(ROOT / "configs" / "colbert_prf.yaml").to_dict()["stages"][0]
    return {
        "ColBERT E2E": RagConfig.from_dict({**base, "name": "colbert"}),
        "ColBERT-PRF ranker": RagConfig.from_dict({**base, "name": "colbert_prf", "stages": [prf]}),
        "ColBERT-PRF reranker": RagConfig.from_dict(
            {**base, "name": "colbert_prf_rerank", "stages": [{**prf, "mode": "reranker"}]}
        ),
    }


def agreement(
    bundle: Path, config: RagConfig, dataset: Path, nprobes: list[int], caps: list[int]
) -> dict[str, Any]:
    """Candidate-generation top-10 vs exhaustive MaxSim top-10, and search latency: per nprobe at the
    default candidate cap, and per cap at the default nprobe."""
    from indexers.multivector import MultiVectorIndex, maxsim
    from rag.retrievers.colbert import colbert_encoder

    index = MultiVectorIndex.load(bundle / "multivector")
    encoder = colbert_encoder(config.colbert)
    data = load_eval_set(dataset, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long queries are truncated at query_maxlen (counted below)
        queries = encoder.encode_queries(data.queries)
    # Decoded once, for the exhaustive reference; from the same float16 copy the searches below gather from.
    everything = index.decode(np.arange(len(index)), keep=True)
    ids = index.ids

    def top10(scores: np.ndarray) -> list[str]:
        order = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), ids[i]))[:10]
        return [ids[i] for i in order]

    started = time.perf_counter()
    reference = [top10(maxsim(q, everything)) for q in queries]
    exhaustive_ms = (time.perf_counter() - started) * 1000 / len(queries)
    rows = []
    default_nprobe, default_cap = config.colbert.nprobe, config.colbert.candidates
    settings = [(n, default_cap) for n in nprobes] + [(default_nprobe, c) for c in caps if c != default_cap]
    for nprobe, cap in settings:
        same, seconds, counted = 0, [], []
        for q, ref in zip(queries, reference, strict=True):
            t = time.perf_counter()
            result = index.search_one(
                q,
                10,
                nprobe=nprobe,
                candidates=cap,
                exhaustive=False,
                keep_decoded=True,
            )
            seconds.append(time.perf_counter() - t)
            same += [doc_id for doc_id, _ in result.hits] == ref
            counted.append(len(result.candidates.rows))
        rows.append(
            {
                "nprobe": nprobe,
                "candidates": cap,
                "share_top10_equal": same / len(queries),
                "mean_candidates": float(np.mean(counted)),
                **latency(seconds),
            }
        )
    # The default nprobe once more, decoding each query's candidates instead of gathering from the
    # float16 copy of every decoded token (keep_decoded: false).
    seconds = []
    for q in queries:
        t = time.perf_counter()
        index.search_one(q, 10, nprobe=config.colbert.nprobe, keep_decoded=False)
        seconds.append(time.perf_counter() - t)
    return {
        "queries": len(queries),
        "decode_per_query_at_default_nprobe": latency(seconds),
        "candidates_cap": config.colbert.candidates,
        "nlist": index.params["nlist"],
        "exhaustive_ms_per_query_predecoded": exhaustive_ms,
        "rows": rows,
    }


def codecs(bundle: Path, config: RagConfig, dataset: Path, cache_dir: Path) -> list[dict[str, Any]]:
    """The corpus token vectors (from the cache) in each codec: bytes, build time, quality."""
    from indexers.build import directory_size
    from indexers.multivector import MultiVectorIndex
    from rag.core.cache import kind_folder
    from rag.retrievers.colbert import colbert_encoder, encode_chunks, fingerprint_of, index_params

    stored = MultiVectorIndex.load(bundle / "multivector")
    chunks = stored.get(stored.ids)
    encoder = colbert_encoder(config.colbert)
    vectors = encode_chunks(encoder, chunks, progress=True, cache_dir=kind_folder(cache_dir, "embeddings"))
    data = load_eval_set(dataset, "test")
    assert data.beir is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        queries = encoder.encode_queries(data.queries)
    out = []
    for codec, extra in (("fp16", {}), ("ivfsq", {}), ("ivfpq", {}), ("ivfpq", {"m": 16})):
        params = {**index_params(config.colbert), "codec": codec, **extra}
        started = time.perf_counter()
        index = MultiVectorIndex.build(
            chunks, embeddings=vectors, params=params, fingerprint=fingerprint_of(encoder)
        )
        build_seconds = time.perf_counter() - started
        folder = cache_dir / "codecs" / f"{codec}-{extra.get('m', 'default')}"
        index.save(folder)
        run = {}
        for qid, q in zip(data.query_ids, queries, strict=True):
            run[qid] = dict(index.search_one(q, 100).hits)
        metrics = evaluate(data.beir.qrels, run, ["nDCG@10", "AP@100", "R@100"])
        out.append(
            {
                "codec": codec,
                "params": index.params,
                "bytes_per_token": index.bytes_per_token(),
                "bytes_on_disk": directory_size(folder),
                "tokens": index.n_tokens,
                "codec_build_seconds": build_seconds,
                "metrics": metrics,
            }
        )
    return out


def reference_rows(dataset: Path, cache_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for label, name in (("BM25", "bm25"), ("dense MiniLM", "dense")):
        rows.append(run_row(load_config(ROOT / "configs" / f"{name}.yaml"), dataset, cache_dir, 1000, label))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact")
    parser.add_argument(
        "--model", type=Path, default=ROOT / "benchmarks" / ".cache" / "models" / "colbert-minilm"
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--nprobes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--caps", type=int, nargs="+", default=[512, 1024, 2048, 4096], help="candidate caps")
    parser.add_argument("--depth", type=int, default=100, help="run depth of the ColBERT rows")
    parser.add_argument("--skip-reference", action="store_true", help="no BM25 / dense rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "colbert_scifact.json")
    args = parser.parse_args()

    colbert_cache = args.cache_dir / f"colbert-{model_stamp(args.model)}"
    rows = [] if args.skip_reference else reference_rows(args.data, args.cache_dir)
    configs = colbert_configs(args.model)
    for label, config in configs.items():
        rows.append(run_row(config, args.data, colbert_cache, args.depth, label))
    by_row = {r["row"]: r for r in rows}
    e2e = by_row["ColBERT E2E"]
    bundle = Path(e2e["index_path"])
    manifest = json.loads((bundle / "multivector" / "manifest.json").read_text())
    for r in rows:
        if r["row"].startswith("ColBERT"):
            r["bytes_per_token"] = manifest["bytes_per_token"]["codec"]
            r["index_build_seconds"] = e2e["index_build_seconds"]  # one bundle serves the three rows
    agree = agreement(bundle, configs["ColBERT E2E"], args.data, args.nprobes, args.caps)
    codec_rows = codecs(bundle, configs["ColBERT E2E"], args.data, colbert_cache)
    prf = {
        mode: {
            "latency_vs_e2e": by_row[f"ColBERT-PRF {mode}"]["mean_ms"] / e2e["mean_ms"],
            "MAP@100_change": by_row[f"ColBERT-PRF {mode}"]["MAP@100"] / e2e["MAP@100"] - 1,
            "nDCG@10_change": by_row[f"ColBERT-PRF {mode}"]["nDCG@10"] / e2e["nDCG@10"] - 1,
        }
        for mode in ("ranker", "reranker")
    }
    training_file = RESULTS / "colbert_training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else None
    write_json(
        args.out,
        {
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "model": str(args.model),
            "training": training,
            "rows": rows,
            "agreement": agree,
            "codecs": codec_rows,
            "prf": prf,
            "paper_dl19_map_gain": PAPER_DL19_MAP_GAIN,
        },
    )

    console = Console(width=200)
    table = Table(title=f"SciFact test ({args.data})")
    for col in ["row", *METRICS, "mean ms", "p95 ms", "bytes/token", "index build s"]:
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["row"],
            *(f"{r[m]:.4f}" for m in METRICS),
            f"{r.get('mean_ms', float('nan')):.1f}",
            f"{r.get('p95_ms', float('nan')):.1f}",
            str(r.get("bytes_per_token", "-")),
            f"{r['index_build_seconds']:.0f}",
        )
    console.print(table)
    sweep = Table(
        title=f"candidate generation vs exhaustive MaxSim (top-10 equal); defaults nprobe "
        f"{configs['ColBERT E2E'].colbert.nprobe}, cap {agree['candidates_cap']}"
    )
    for col in ["nprobe", "cap", "share top-10 equal", "mean candidates", "mean ms", "p95 ms"]:
        sweep.add_column(col)
    for r in agree["rows"]:
        sweep.add_row(
            str(r["nprobe"]),
            str(r["candidates"]),
            f"{r['share_top10_equal']:.3f}",
            f"{r['mean_candidates']:.0f}",
            f"{r['mean_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
        )
    console.print(sweep)
    slow = agree["decode_per_query_at_default_nprobe"]
    print(
        f"keep_decoded false (each query's candidates decoded): "
        f"{slow['mean_ms']:.1f} ms mean, {slow['p95_ms']:.1f} ms p95"
    )
    codec_table = Table(title="token codecs (same vectors)")
    for col in ["codec", "bytes/token", "MB on disk", "build s", "nDCG@10", "MAP@100", "R@100"]:
        codec_table.add_column(col)
    for c in codec_rows:
        name = c["codec"] + (f" m={c['params']['m']}" if c["params"].get("m") else "")
        codec_table.add_row(
            name,
            f"{c['bytes_per_token']['codec']:.0f}",
            f"{c['bytes_on_disk'] / 1e6:.0f}",
            f"{c['codec_build_seconds']:.1f}",
            *(f"{c['metrics'][m]:.4f}" for m in ("nDCG@10", "MAP@100", "Recall@100")),
        )
    console.print(codec_table)
    for mode, p in prf.items():
        print(
            f"PRF {mode}: latency {p['latency_vs_e2e']:.2f}x E2E; MAP@100 {p['MAP@100_change'] * 100:+.1f}% "
            f"(paper, DL19: +{PAPER_DL19_MAP_GAIN * 100:.0f}%); nDCG@10 {p['nDCG@10_change'] * 100:+.1f}%"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
