"""Prompt building and generation: a local model (SmolLM2-135M-Instruct by default) or any
OpenAI-compatible endpoint, as pipeline stages (:mod:`rag.generation.stages`).

:func:`generator_tokenizer_name` is the tokenizer token accounting uses by default: the one of the
config's generator, as a name :func:`rag.core.tokenizers.get_token_counter` accepts.
"""

from __future__ import annotations

from typing import Any

from rag.generation.local import DEFAULT_GENERATOR_MODEL, LocalLLM, Reply, tokenizer_name

__all__ = ["DEFAULT_GENERATOR_MODEL", "LocalLLM", "Reply", "generator_tokenizer_name", "tokenizer_name"]


def generator_tokenizer_name(config: Any) -> str:
    """The tokenizer of the generator that reads a config's prompt, for counting what it is sent.

    The last ``generate`` stage of ``config`` (a :class:`rag.core.config.RagConfig`) decides: ``local``
    gives its model's tokenizer (for the default SmolLM2, its converted tokenizer folder); ``openai`` and
    a config without a generator give ``cl100k_base`` (an endpoint's tokenizer is not known here).
    """
    from rag.core.tokenizers import DEFAULT_TOKENIZER

    generators = [s for s in getattr(config, "stages", []) if s.get("kind") == "generate"]
    if not generators or generators[-1].get("name") != "local":
        return DEFAULT_TOKENIZER
    stage = generators[-1]
    return tokenizer_name(stage.get("model", DEFAULT_GENERATOR_MODEL), stage.get("gguf_file"))
