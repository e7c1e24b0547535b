"""Evaluate chunkers on a chunk-excerpt set, the protocol of Chroma's "Evaluating Chunking Strategies for
Retrieval" (Smith and Troynikov, 2024), as a thin front over the evaluation engine (:mod:`rag.evaluate`).

A grid of chunkers is a grid of configs (:func:`grid_configs`): each chunker becomes the ``chunking``
section of a copy of a base config (default: dense retrieval with the evaluation's encoder over one flat
index; ``mode`` or the base config may choose BM25 or hybrid), with ``retrieval.top_k`` the number of
chunks retrieved per question. Each config then goes through :func:`rag.evaluate.evaluate_config`, the
code ``rag eval`` runs, so ``rag eval-chunks`` and ``rag eval`` on the same folder give the same numbers
for the same chunker and encoder:

1. the set's ``corpora/`` are read as a folder of text files, without titles (the title rule of
   chunk-excerpt sets, :mod:`rag.evaluate`): a chunk is embedded alone, as Chroma did;
2. every corpus is chunked (exact character offsets, chunk ids ``chatlogs.md#k``), and the chunks of
   *all* corpora go into one index (Chroma put every chunk in one collection, so a question can
   retrieve chunks of the wrong corpus, and they count in |R|);
3. every question goes through the pipeline and its ``retrieve`` best chunks are taken;
4. recall, precision, IoU and Precision-Omega are computed per question against its excerpts
   (:func:`evaluation.spans.evaluate_spans`), in characters (Chroma) or tokens;
5. mean and (population) std are reported over all questions and per corpus, with the chunk count, the
   mean chunk size in ``cl100k_base`` tokens, the LLM tokens and stage latency, and the wall time.

Chunks are placed by their exact offsets. Chroma's framework located each chunk by searching its text in
the corpus, so a chunk whose text repeats elsewhere (a third of the recursive chunks of its finance
corpus) took the offsets of the first occurrence; here a retrieved duplicate at another position than
the excerpt is a miss. Duplicates also tie exactly in score; the index breaks those ties by id.

Bundles and embeddings are cached under ``cache_dir`` (:mod:`rag.core.cache`), so rerunning a grid
only redoes the queries and the metrics. A semantic chunker config without ``model`` groups its pieces
with the evaluation's own encoder (as Chroma's ``ClusterSemanticChunker`` used the evaluation's
embedding function).

:func:`run_grid` runs several chunkers; :func:`load_grid` reads a grid YAML (``configs/chunk_grid.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.core.config import RETRIEVAL_MODES, RagConfig
from rag.core.errors import ConfigError
from rag.core.tokenizers import DEFAULT_TOKENIZER
from rag.core.validation import check_keys, load_yaml_mapping, positive_int

__all__ = ["ChunkGrid", "chunker_label", "grid_configs", "load_grid", "run_grid"]

DEFAULT_RETRIEVE = 5


@dataclass(frozen=True)
class ChunkGrid:
    """Chunker configs of a grid file, and its ``retrieve`` setting when it has one."""

    chunkers: list[dict[str, Any]]
    retrieve: int | None = None


def chunker_label(config: Mapping[str, Any]) -> str:
    """Short display name of a chunker config: ``"fixed 250/125"``, ``"recursive 200/0"``,
    ``"semantic 250"``; ``" chars"`` is appended when sizes count characters.

    >>> chunker_label({"method": "recursive", "size": 250, "overlap": 125})
    'recursive 250/125'
    """
    if "name" in config:
        return str(config["name"])
    method = str(config.get("method", "none"))
    if method == "none":
        return "none"
    label = f"{method} {config.get('size')}"
    if method != "semantic":
        label += f"/{config.get('overlap', 0)}"
    if config.get("unit") == "chars":
        label += " chars"
    return label


def grid_configs(
    chunkers: Sequence[Mapping[str, Any]],
    base: RagConfig | None = None,
    model: str | None = None,
    retrieve: int = DEFAULT_RETRIEVE,
    mode: str | None = None,
) -> list[RagConfig]:
    """One config per chunker: ``base`` (default: dense, flat index) with the chunker as its
    ``chunking``, the label (:func:`chunker_label`) as its name, ``model`` as its encoder (default: the
    base's), ``retrieve`` as ``retrieval.top_k`` and ``mode`` as ``retrieval.mode`` (default: the base's).

    Every config is checked, and the labels must be distinct, before any work starts, so a typo in the
    last entry does not cost the time of the others.
    """
    if isinstance(chunkers, Mapping) or not chunkers:
        raise ConfigError(
            "the grid must be a non-empty list of chunker configs, e.g. [{method: fixed, size: 250}]"
        )
    retrieve = positive_int(retrieve, "retrieve (chunks retrieved per question)")
    if mode is not None and mode not in RETRIEVAL_MODES:
        raise ConfigError(f"mode must be one of {', '.join(RETRIEVAL_MODES)}, got {mode!r}")
    template = (base or RagConfig(name="chunks")).to_dict()
    if model is not None:
        template["encoder"]["model"] = model
    template["retrieval"]["top_k"] = retrieve
    if mode is not None:
        template["retrieval"]["mode"] = mode
    configs = []
    for number, chunker in enumerate(chunkers):
        if not isinstance(chunker, Mapping):
            raise ConfigError(
                f"a chunker config must be a mapping such as {{method: fixed, size: 250}}, got {chunker!r}"
            )
        settings = {k: v for k, v in chunker.items() if k != "name"}
        if settings.get("method", "none") == "none":
            raise ConfigError(
                "chunk evaluation needs a chunker (method fixed, recursive or semantic); got method 'none'"
            )
        if settings.get("method") == "semantic" and "model" not in settings:
            settings["model"] = template["encoder"]["model"]
        label = chunker_label(chunker)
        data = {**template, "name": label, "chunking": settings}
        configs.append(RagConfig.from_dict(data, source=f"chunker {number + 1} ({label})"))
    names = [c.name for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"grid entries need distinct labels; repeated: {repeated}. Give each entry a 'name'"
        )
    return configs


def run_grid(
    dataset: str | Path | Any,
    configs: Sequence[RagConfig],
    unit: str = "chars",
    tokenizer: str = DEFAULT_TOKENIZER,
    cache_dir: str | Path = "runs/cache",
    progress: bool = True,
) -> list[Any]:
    """:func:`rag.evaluate.evaluate_config` for every config of a grid (:func:`grid_configs`) on the
    chunk-excerpt set ``dataset`` (a folder, or a :class:`rag.evaluate.EvalSet` already loaded), read
    once; returns the :class:`rag.evaluate.EvalResult` list."""
    from rag.evaluate import EvalSet, evaluate_set, is_chunk_eval_folder

    folder = dataset.path if isinstance(dataset, EvalSet) else Path(dataset)
    if not is_chunk_eval_folder(folder):
        raise ConfigError(
            f"{folder} is not a chunk-excerpt set (questions_df.csv and corpora/*.md); "
            "evaluate a BEIR folder with `rag eval`"
        )
    return evaluate_set(
        configs, dataset, unit=unit, tokenizer=tokenizer, cache_dir=cache_dir, progress=progress
    )


def load_grid(path: str | Path) -> ChunkGrid:
    """Read a grid YAML: ``chunkers`` (a list of chunker configs, each with an optional ``name``) and an
    optional ``retrieve``. See ``configs/chunk_grid.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist (example: configs/chunk_grid.yaml)")
    data = load_yaml_mapping(path)
    check_keys(data, ("chunkers", "retrieve"), str(path))
    chunkers = data.get("chunkers")
    if not isinstance(chunkers, list) or not chunkers or not all(isinstance(c, dict) for c in chunkers):
        raise ConfigError(
            f"{path}: 'chunkers' must be a non-empty list of mappings such as "
            "{method: recursive, size: 250, overlap: 125}"
        )
    retrieve = data.get("retrieve")
    if retrieve is not None:
        retrieve = positive_int(retrieve, f"{path}: retrieve (chunks retrieved per question)")
    return ChunkGrid(chunkers=[dict(c) for c in chunkers], retrieve=retrieve)
