"""The generation stages (registered in :mod:`rag.stages`): ``prompt`` ``chat`` and ``generate``
``local`` / ``openai``.

``prompt`` reads the documents of the stage before it (retrieval, or a compressor) and the query;
``generate`` reads the prompt of the last ``prompt`` stage. Neither changes the pipeline's documents,
so ``rag eval`` still scores what the last documents stage returns, and
:func:`rag.pipelines.run_query` returns the generator's ``replies`` beside them::

    stages:
      - {kind: compress, name: semantic, ratio: 0.5}
      - {kind: prompt, name: chat}
      - {kind: generate, name: local, max_new_tokens: 128}     # SmolLM2-135M-Instruct on CPU
      # or: {kind: generate, name: openai, base_url: "http://localhost:8000/v1", model: qwen3-4b}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack.components.builders import ChatPromptBuilder

from rag.core.config import RagConfig
from rag.core.errors import ConfigError
from rag.core.llm import LLMSettings
from rag.core.validation import check_fields
from rag.generation.generator import LocalGenerator, OpenAIGenerator
from rag.generation.local import LocalLLMSettings
from rag.generation.prompt import PromptSettings, chat_prompt_builder
from rag.stages import PipelineDraft, register_stage

WHERE = "config"
DEFAULT_PROMPT = {"kind": "prompt", "name": "chat"}
DEFAULT_GENERATE = {"kind": "generate", "name": "local"}


@register_stage("prompt", "chat")
def chat(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    checked = check_fields(PromptSettings, settings, WHERE, "stages[prompt/chat]")
    if draft.documents is None:
        raise ConfigError("the prompt stage needs documents, but no earlier stage produces them")
    name = draft.add("prompt_builder", chat_prompt_builder(**checked))
    draft.connect(draft.documents, f"{name}.documents")


def _prompt(draft: PipelineDraft, stage: str) -> str:
    """The last prompt builder added so far; a generator without one is a config mistake."""
    builders = [n for n, c in draft.pipeline.graph.nodes(data="instance") if isinstance(c, ChatPromptBuilder)]
    if not builders:
        raise ConfigError(
            f"the generate stage {stage!r} needs a prompt: list {{kind: prompt, name: chat}} "
            "before it in stages"
        )
    return str(builders[-1])


@register_stage("generate", "local")
def local(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    checked = check_fields(LocalLLMSettings, settings, WHERE, "stages[generate/local]")
    prompt = _prompt(draft, "local")
    name = draft.add("generator", LocalGenerator(**checked))
    draft.connect(f"{prompt}.prompt", f"{name}.messages")


@register_stage("generate", "openai")
def openai(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    if "json_mode" in settings:
        raise ConfigError("stages[generate/openai]: json_mode is not a generator setting (replies are text)")
    for required in ("base_url", "model"):
        if required not in settings:
            raise ConfigError(
                f"stages[generate/openai] needs {required}; write e.g. "
                '{kind: generate, name: openai, base_url: "http://localhost:8000/v1", model: qwen3-4b}'
            )
    checked = check_fields(LLMSettings, settings, WHERE, "stages[generate/openai]")
    prompt = _prompt(draft, "openai")
    name = draft.add("generator", OpenAIGenerator(**checked))
    draft.connect(f"{prompt}.prompt", f"{name}.messages")


def with_generator(config: RagConfig) -> RagConfig:
    """``config`` as it is when it has a ``generate`` stage; else with the default prompt and the local
    generator (SmolLM2-135M-Instruct) appended, which is what ``rag query --generate`` runs."""
    if any(stage["kind"] == "generate" for stage in config.stages):
        return config
    prompt = [] if any(stage["kind"] == "prompt" for stage in config.stages) else [DEFAULT_PROMPT]
    return dataclasses.replace(config, stages=[*config.stages, *prompt, DEFAULT_GENERATE])
