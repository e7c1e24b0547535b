"""The published SciFact numbers, pinned: dense all-MiniLM-L6-v2 (MTEB) and BM25 (Pyserini).

Slow (the dense run encodes 5,183 abstracts, minutes on a CPU): deselected by default, run with
``pytest -m slow``. Skipped when ../shared/data is absent. Bundles and embeddings are cached in
benchmarks/.cache (gitignored, shared with benchmarks/beir_reference.py), so a rerun only re-runs the
queries.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.core.config import load_config
from rag.evaluate import evaluate_config

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "benchmarks" / ".cache"


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> Path:
    folder = shared_data / "beir" / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {folder}")
    return folder


@pytest.mark.slow
def test_scifact_dense_minilm_flat(scifact: Path) -> None:
    result = evaluate_config(load_config(ROOT / "configs" / "dense.yaml"), scifact, cache_dir=CACHE)
    # MTEB leaderboard: 0.64508 for all-MiniLM-L6-v2; title + " " + text, max length 256, cosine.
    assert round(result.metrics["nDCG@10"], 4) == 0.6451
    assert round(result.metrics["Recall@100"], 3) == 0.925


@pytest.mark.slow
def test_scifact_bm25(scifact: Path) -> None:
    result = evaluate_config(load_config(ROOT / "configs" / "bm25.yaml"), scifact, cache_dir=CACHE)
    # k1 1.2, b 0.75 (Lucene / Pyserini defaults): Pyserini's flat index gives 0.6789.
    assert round(result.metrics["nDCG@10"], 4) == 0.6791
    assert abs(result.metrics["nDCG@10"] - 0.6789) < 0.001
