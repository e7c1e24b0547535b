"""The LLM client: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, Ollama).

Question generation (:mod:`evaluation.synthetic`), compressors and the generator stage all talk to an LLM
through :class:`ChatClient`, anything with ``complete(messages) -> str``; :class:`OpenAICompatibleClient`
is the one that speaks HTTP. Its settings are declared once, in :class:`LLMSettings` (checked like a
config section, JSON-able, so a component can store and serialize them).

The API key is never part of the settings: they name the environment variable that holds it
(``api_key_env``, ``OPENAI_API_KEY`` by default), read at each request. So the key is not written to a
pipeline's YAML, not shown by ``repr``, and not put in error messages (a server that echoes it back has
it masked).

Failures are :class:`~rag.core.errors.ChatEndpointError`, naming the URL: an endpoint that cannot be
reached fails within ``connect_timeout`` seconds (5 by default), a server that does not answer within
``timeout`` seconds.

>>> client = OpenAICompatibleClient(LLMSettings("http://localhost:8000/v1", "qwen3-4b", api_key_env="MY_KEY"))
>>> client.url
'http://localhost:8000/v1/chat/completions'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from rag.core.errors import ChatEndpointError
from rag.core.validation import check_instance

if TYPE_CHECKING:
    import httpx

__all__ = ["ChatClient", "ChatEndpointError", "ChatReply", "LLMSettings", "OpenAICompatibleClient"]

# Characters of a failed reply quoted in an error message.
_QUOTED = 300


class ChatClient(Protocol):
    """An LLM behind a chat interface: takes OpenAI-style messages, returns the reply text."""

    def complete(self, messages: list[dict[str, str]]) -> str: ...


@dataclass(frozen=True)
class ChatReply:
    """One reply: its text, the token counts the server reported (None when it reported none) and why
    it stopped (``"stop"``, ``"length"``, ...)."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class LLMSettings:
    """How to reach an OpenAI-compatible chat endpoint; checked when built.

    :param base_url: API root, for example ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``.
    :param model: model name sent in the request.
    :param api_key_env: environment variable holding the key, sent as ``Authorization: Bearer ...`` when
        set and not empty (local servers usually need none); ``None`` never sends one.
    :param timeout: seconds to wait for a reply (reasoning models can take long).
    :param connect_timeout: seconds to wait for the connection, so an unreachable endpoint fails fast.
    :param temperature: sampling temperature.
    :param max_tokens: reply length limit (reasoning models need room for their reasoning); None = server's.
    :param json_mode: ask for ``response_format: {"type": "json_object"}`` (not every server supports it).
    """

    base_url: str = field(
        metadata={
            "pattern": r"https?://\S+",
            "allowed": "a URL starting with http:// or https://",
            "example": "http://localhost:8000/v1",
        }
    )
    model: str = field(metadata={"pattern": r"\S.*", "allowed": "a model name", "example": "gpt-4o-mini"})
    api_key_env: str | None = field(
        default="OPENAI_API_KEY",
        metadata={"pattern": r"[A-Za-z_][A-Za-z0-9_]*", "allowed": "the name of an environment variable"},
    )
    timeout: float = field(default=120.0, metadata={"minimum": 0.001, "example": 120})
    connect_timeout: float = field(default=5.0, metadata={"minimum": 0.001, "example": 5})
    temperature: float = field(default=0.7, metadata={"minimum": 0, "maximum": 2})
    max_tokens: int | None = field(default=2048, metadata={"minimum": 1, "example": 2048})
    json_mode: bool = False

    def __post_init__(self) -> None:
        check_instance(self)

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"


class OpenAICompatibleClient:
    """Chat client for an OpenAI-compatible endpoint: ``POST {base_url}/chat/completions``.

    Holds one HTTP connection pool, opened on the first request; :meth:`close` it, or use the client as a
    context manager.
    """

    def __init__(self, settings: LLMSettings) -> None:
        if not isinstance(settings, LLMSettings):
            raise TypeError(
                f"OpenAICompatibleClient takes an LLMSettings, got {type(settings).__name__}; "
                "write OpenAICompatibleClient(LLMSettings(base_url, model, ...))"
            )
        self.settings = settings
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return self.settings.url

    def __repr__(self) -> str:
        s = self.settings
        return f"{type(self).__name__}(url={s.url!r}, model={s.model!r}, api_key_env={s.api_key_env!r})"

    def _api_key(self) -> str | None:
        name = self.settings.api_key_env
        return (os.environ.get(name) or None) if name else None

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The reply text to ``messages``; raises :class:`ChatEndpointError` naming the URL on failure."""
        return self.chat(messages).text

    def chat(
        self, messages: list[dict[str, str]], on_token: Callable[[str], None] | None = None
    ) -> ChatReply:
        """The reply to ``messages`` with the server's token counts; raises :class:`ChatEndpointError`.

        With ``on_token`` the reply is streamed (``stream: true``, server-sent events) and each piece of
        text is passed to ``on_token`` as it arrives. A stream that stalls for ``timeout`` seconds, or
        takes longer than ``timeout`` seconds in all, is cut off with an error, never waited on forever.
        """
        import httpx

        s = self.settings
        payload: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature}
        if s.max_tokens is not None:
            payload["max_tokens"] = s.max_tokens
        if s.json_mode:
            payload["response_format"] = {"type": "json_object"}
        if on_token is not None:
            payload["stream"] = True
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout))
        try:
            if on_token is None:
                response = self._client.post(s.url, json=payload, headers=headers)
                self._check_status(response, key)
                return self._parse_completion(response, key)
            with self._client.stream("POST", s.url, json=payload, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                self._check_status(response, key)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignores ``stream`` answers with one completion: pass it on whole.
                    response.read()
                    reply = self._parse_completion(response, key)
                    on_token(reply.text)
                    return reply
                return self._read_stream(response, on_token, key)
        except httpx.ConnectTimeout:
            raise ChatEndpointError(
                f"cannot reach the chat endpoint {s.url}: no connection within {s.connect_timeout} s; "
                "check base_url and that the server is running and reachable"
            ) from None
        except httpx.TimeoutException:
            raise ChatEndpointError(
                f"the chat endpoint {s.url} did not answer within {s.timeout} s; "
                "raise timeout or check the server"
            ) from None
        except httpx.HTTPError as exc:
            raise ChatEndpointError(
                f"cannot reach the chat endpoint {s.url} ({type(exc).__name__}: {_masked(str(exc), key)}); "
                "check base_url and that the server is running and reachable"
            ) from None

    def _check_status(self, response: httpx.Response, key: str | None) -> None:
        if response.status_code >= 400:
            hint = f" ({self._key_hint(key)})" if response.status_code in (401, 403) else ""
            raise ChatEndpointError(
                f"the chat endpoint {self.url} answered HTTP {response.status_code}{hint}: "
                f"{_masked(response.text, key)[:_QUOTED]}"
            )

    def _parse_completion(self, response: httpx.Response, key: str | None) -> ChatReply:
        try:
            body = response.json()
            choice = body["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ChatEndpointError(
                f"the chat endpoint {self.url} did not return an OpenAI chat completion: "
                f"{_masked(response.text, key)[:_QUOTED]}"
            ) from None
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return ChatReply(
            content if isinstance(content, str) else "",
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            choice.get("finish_reason") if isinstance(choice, dict) else None,
        )

    def _read_stream(
        self, response: httpx.Response, on_token: Callable[[str], None], key: str | None
    ) -> ChatReply:
        """Server-sent events of an OpenAI chat completion stream: ``data: {json}`` lines, then
        ``data: [DONE]``. httpx has no SSE reader, and the format is a few lines, so it is read here."""
        timeout = self.settings.timeout
        deadline = time.monotonic() + timeout
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise ChatEndpointError(
                    f"the chat endpoint {self.url} did not finish its reply within {timeout} s; "
                    "raise timeout or check the server"
                )
            if not line.startswith("data:"):
                continue  # blank separators, comments (":"), event names
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
                choices = event.get("choices") or []
                delta = (choices[0].get("delta") or {}) if choices else {}
                piece = delta.get("content") or ""
            except (ValueError, AttributeError, TypeError):
                raise ChatEndpointError(
                    f"the chat endpoint {self.url} sent a stream event that is not an OpenAI chat chunk: "
                    f"{_masked(data, key)[:_QUOTED]}"
                ) from None
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            if choices and choices[0].get("finish_reason"):
                finish = str(choices[0]["finish_reason"])
            if isinstance(piece, str) and piece:
                pieces.append(piece)
                on_token(piece)
        return ChatReply(
            "".join(pieces),
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            finish,
        )

    def _key_hint(self, key: str | None) -> str:
        name = self.settings.api_key_env
        if name is None:
            return "no API key was sent: set api_key_env to the environment variable that holds one"
        if key is None:
            return f"no API key was sent: the environment variable {name} is not set"
        return f"check the API key in the environment variable {name}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _masked(text: str, key: str | None) -> str:
    """``text`` with the API key replaced, in case a server echoes the request back."""
    return text.replace(key, "***") if key else text
