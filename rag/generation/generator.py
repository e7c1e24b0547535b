"""Generator components: a chat prompt in, the model's reply out, streamed if asked.

Both take Haystack ``ChatMessage`` lists (what :class:`haystack.components.builders.ChatPromptBuilder`
produces) and return ``{"replies": [ChatMessage]}``, the reply's ``meta`` holding the model, the
finish reason, the seconds taken and ``usage`` (``prompt_tokens``, ``completion_tokens``,
``total_tokens``: the model's own tokenizer for the local model, the server's report for an endpoint;
``None`` where a server reports none). ``streaming_callback`` (at run time) receives a Haystack
``StreamingChunk`` per piece of text, as Haystack's own generators do, so ``print_streaming_chunk``
works too.

- :class:`LocalGenerator`: :class:`rag.generation.local.LocalLLM`, SmolLM2-135M-Instruct by default.
- :class:`OpenAIGenerator`: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, a hosted
  API) through :class:`rag.core.llm.OpenAICompatibleClient`; the API key comes from the environment
  variable ``api_key_env`` names, never from the settings.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypedDict

from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import ChatMessage, StreamingChunk

from rag.core.errors import ConfigError
from rag.core.llm import LLMSettings, OpenAICompatibleClient
from rag.generation.local import DEFAULT_GENERATOR_MODEL, LocalLLM, check_messages

StreamingCallback = Callable[[StreamingChunk], None]


class GeneratorOutput(TypedDict):
    replies: list[ChatMessage]


def to_openai_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Haystack chat messages as OpenAI ``{"role", "content"}`` dicts (text only), checked."""
    if not isinstance(messages, list) or not all(isinstance(m, ChatMessage) for m in messages):
        raise ConfigError(
            f"messages must be a list of haystack ChatMessage (a ChatPromptBuilder's prompt), "
            f"got {messages!r}"
        )
    return check_messages([{"role": m.role.value, "content": m.text or ""} for m in messages])


def _reply(
    text: str, model: str, prompt: int | None, completion: int | None, finish: str | None, seconds: float
) -> ChatMessage:
    total = prompt + completion if prompt is not None and completion is not None else None
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    meta = {"model": model, "finish_reason": finish, "usage": usage, "seconds": seconds}
    return ChatMessage.from_assistant(text, meta=meta)


def _pieces(callback: StreamingCallback | None) -> Callable[[str], None] | None:
    if callback is None:
        return None
    if not callable(callback):
        raise ConfigError(f"streaming_callback must be a function taking a StreamingChunk, got {callback!r}")
    return lambda piece: callback(StreamingChunk(content=piece))


@component
class LocalGenerator:
    """Replies with a local model (see :class:`rag.generation.local.LocalLLM` for the settings)."""

    def __init__(
        self,
        model: str = DEFAULT_GENERATOR_MODEL,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        device: str = "cpu",
        gguf_file: str | None = None,
    ) -> None:
        self.llm = LocalLLM(
            model=model,
            max_new_tokens=max_new_tokens,
            device=device,
            temperature=temperature,
            gguf_file=gguf_file,
        )

    def warm_up(self) -> None:
        self.llm.warm_up()

    @component.output_types(replies=list[ChatMessage])
    def run(
        self, messages: list[ChatMessage], streaming_callback: StreamingCallback | None = None
    ) -> GeneratorOutput:
        reply = self.llm.chat(to_openai_messages(messages), _pieces(streaming_callback))
        message = _reply(
            reply.text,
            self.llm.settings.model,
            reply.prompt_tokens,
            reply.completion_tokens,
            reply.finish_reason,
            reply.seconds,
        )
        return {"replies": [message]}

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **dataclasses.asdict(self.llm.settings))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalGenerator:
        return default_from_dict(cls, data)


@component
class OpenAIGenerator:
    """Replies through an OpenAI-compatible ``/chat/completions`` endpoint (settings: ``LLMSettings``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        temperature: float = 0.0,
        max_tokens: int | None = 512,
    ) -> None:
        self.settings = LLMSettings(
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            timeout=timeout,
            connect_timeout=connect_timeout,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self._client: OpenAICompatibleClient | None = None

    def warm_up(self) -> None:
        self._connection()

    def _connection(self) -> OpenAICompatibleClient:
        if self._client is None:
            self._client = OpenAICompatibleClient(self.settings)
        return self._client

    @component.output_types(replies=list[ChatMessage])
    def run(
        self, messages: list[ChatMessage], streaming_callback: StreamingCallback | None = None
    ) -> GeneratorOutput:
        openai_messages = to_openai_messages(messages)
        started = time.perf_counter()
        reply = self._connection().chat(openai_messages, _pieces(streaming_callback))
        message = _reply(
            reply.text,
            self.settings.model,
            reply.prompt_tokens,
            reply.completion_tokens,
            reply.finish_reason,
            time.perf_counter() - started,
        )
        return {"replies": [message]}

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self.settings)
        fields.pop("json_mode")  # a generator replies in text
        return default_to_dict(self, **fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenAIGenerator:
        return default_from_dict(cls, data)
