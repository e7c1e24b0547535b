"""The stage registry: what each stage of a config becomes in a Haystack pipeline.

A config's pipeline is a chain of stages. The first is the retrieval stage named by
``retrieval.mode`` (``dense``, ``bm25``, ``hybrid``); the config's ``stages`` list adds more after it,
each a mapping ``{kind: rerank | prf | compress | prompt | generate, name: <registered name>, ...}``
whose other keys are the stage's settings. Every (kind, name) is registered by the module that
implements it, so :func:`rag.pipelines.build_pipeline` holds no switch over kinds or modes::

    @register_stage("rerank", "identity")
    def identity(draft: PipelineDraft, settings: dict[str, Any]) -> None:
        draft.add_documents_stage("rerank", IdentityReranker(**settings))

Adding a stage kind is therefore one module plus one registration (and, for modules of this package,
one line in :data:`BUILTIN_STAGE_MODULES`, which are imported when a pipeline is first built).

The draft also records the pipeline's *query plan* in ``pipeline.metadata["rag"]``, which
:func:`rag.pipelines.retrieve` follows: which component's ``documents`` output is the result (the last
stage that produces documents), which components take the per-call ``top_k``, and which candidate
stages fetch ``max(top_k, depth)`` (the two sides of a hybrid fuse more candidates than they return).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Pipeline

from rag.core.config import RagConfig
from rag.core.errors import ConfigError

StageBuilder = Callable[["PipelineDraft", dict[str, Any]], None]

RETRIEVAL = "retrieval"
# Importing these modules registers the stages that ship with the package.
BUILTIN_STAGE_MODULES = (
    "rag.retrievers.stages",
    "rag.generation.stages",
    "rag.retrievers.colbert",
    "rag.retrievers.prf",
    "compressors.stages",
)
PLAN_KEY = "rag"

_REGISTRY: dict[tuple[str, str], StageBuilder] = {}


def register_stage(kind: str, name: str) -> Callable[[StageBuilder], StageBuilder]:
    """Register ``builder`` as the stage ``name`` of ``kind`` (a decorator)."""

    def decorate(builder: StageBuilder) -> StageBuilder:
        key = (kind, name)
        if key in _REGISTRY and _REGISTRY[key] is not builder:
            raise ConfigError(f"stage {kind}/{name} is registered twice ({_REGISTRY[key]!r} and {builder!r})")
        _REGISTRY[key] = builder
        return builder

    return decorate


def registered_stages() -> dict[str, list[str]]:
    """Every registered stage name, by kind."""
    _load_builtins()
    kinds: dict[str, list[str]] = {}
    for kind, name in sorted(_REGISTRY):
        kinds.setdefault(kind, []).append(name)
    return kinds


def stage_builder(kind: str, name: str) -> StageBuilder:
    """The builder registered for (kind, name); the error lists what is registered."""
    _load_builtins()
    builder = _REGISTRY.get((kind, name))
    if builder is None:
        known = registered_stages().get(kind, [])
        raise ConfigError(
            f"no {kind} stage named {name!r}; registered: {', '.join(known) or 'none'} "
            f"(a new one is a function decorated with @rag.stages.register_stage({kind!r}, {name!r}))"
        )
    return builder


def _load_builtins() -> None:
    for module in BUILTIN_STAGE_MODULES:
        importlib.import_module(module)


@dataclass
class PipelineDraft:
    """A pipeline being built stage by stage, and the query plan that goes with it."""

    config: RagConfig
    index_dir: Path
    pipeline: Pipeline = field(default_factory=Pipeline)
    documents: str | None = None  # "component.socket" of the ranked documents so far
    top_k_takers: list[str] = field(default_factory=list)
    candidate_depths: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, component: Any) -> str:
        """Add a component under ``name`` (``name_2``, ... if taken); returns the name used."""
        taken = set(self.pipeline.graph.nodes)
        unique, number = name, 2
        while unique in taken:
            unique, number = f"{name}_{number}", number + 1
        self.pipeline.add_component(unique, component)
        return unique

    def connect(self, sender: str, receiver: str) -> None:
        self.pipeline.connect(sender, receiver)

    def set_documents(self, name: str, takes_top_k: bool = True) -> None:
        """Make ``name.documents`` the current result; it takes the per-call ``top_k`` if asked."""
        self.documents = f"{name}.documents"
        if takes_top_k:
            self.top_k_takers = [name]

    def add_candidates(self, name: str, depth: int) -> None:
        """``name`` feeds a later stage: it fetches ``max(top_k, depth)`` documents per call."""
        self.candidate_depths[name] = depth
        self.top_k_takers = [t for t in self.top_k_takers if t != name]

    def add_documents_stage(self, name: str, component: Any, takes_top_k: bool = True) -> str:
        """Add a stage that reads the current documents (and the query, if it has a ``query`` input)
        and returns documents; it becomes the result. The stages before it keep their own depth."""
        if self.documents is None:
            raise ConfigError(f"stage {name!r} needs documents, but no earlier stage produces them")
        name = self.add(name, component)
        upstream = self.documents.split(".")[0]
        if upstream in self.top_k_takers:
            depth = getattr(self.pipeline.get_component(upstream), "top_k", None)
            self.add_candidates(upstream, depth if isinstance(depth, int) else 0)
        self.connect(self.documents, f"{name}.documents")
        self.set_documents(name, takes_top_k)
        return name

    def finish(self) -> Pipeline:
        if self.documents is None:
            raise ConfigError("the pipeline has no stage that produces documents")
        self.pipeline.metadata[PLAN_KEY] = {
            "output": self.documents.split(".")[0],
            "top_k": list(self.top_k_takers),
            "candidates": dict(self.candidate_depths),
        }
        return self.pipeline


def build_stages(config: RagConfig, index_dir: Path) -> Pipeline:
    """The pipeline of ``config`` over the bundle at ``index_dir``: retrieval, then each listed stage."""
    draft = PipelineDraft(config, index_dir)
    stage_builder(RETRIEVAL, config.retrieval.mode)(draft, {})
    for stage in config.stages:
        settings = {k: v for k, v in stage.items() if k not in ("kind", "name")}
        stage_builder(stage["kind"], stage["name"])(draft, settings)
    return draft.finish()
