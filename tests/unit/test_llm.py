"""The OpenAI-compatible client against a local HTTP server: requests, failures, and a key kept secret."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from evaluation.synthetic import generate_questions
from rag.core.errors import ChatEndpointError, ConfigError
from rag.core.llm import LLMSettings, OpenAICompatibleClient

KEY_ENV = "RAG_TEST_LLM_KEY"
SECRET = "sk-test-5e3c7a91d2"
PASSAGE = "The lighthouse was built in 1852 on the northern cliff. Its lamp burned whale oil."
HI = [{"role": "user", "content": "hi"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A chat endpoint that wants ``Bearer SECRET``; a wrong key gets a 401 that echoes the header back
    (some proxies do), and every request is recorded."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization")
            seen.append({"path": self.path, "auth": auth, "body": body})
            if auth != f"Bearer {SECRET}":
                self._send(401, {"error": f"bad key in header: {auth}"})
                return
            if body["messages"][-1]["content"] == "break":
                self._send(200, {"unexpected": f"echo {auth}"})
                return
            reply = json.dumps({"question": "What did the lamp burn?", "references": ["whale oil"]})
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_generation_runs_through_the_client(
    chat_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = chat_server
    monkeypatch.setenv(KEY_ENV, SECRET)
    settings = LLMSettings(url + "/", model="tiny-llm", api_key_env=KEY_ENV, temperature=0.0, json_mode=True)
    with OpenAICompatibleClient(settings) as client:
        report = generate_questions({"lighthouse": PASSAGE}, client, n=1, slice_chars=10_000)
    assert [q.question for q in report.questions] == ["What did the lamp burn?"]
    assert [r.content for r in report.questions[0].references] == ["whale oil"]
    request = seen[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == f"Bearer {SECRET}"
    body = request["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("tiny-llm", 0.0, 2048)
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system" and PASSAGE in body["messages"][-1]["content"]


def test_the_key_is_never_in_errors_or_reprs(
    chat_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = chat_server
    wrong = "sk-wrong-0a1b2c3d4e"
    monkeypatch.setenv(KEY_ENV, wrong)
    client = OpenAICompatibleClient(LLMSettings(url, model="m", api_key_env=KEY_ENV))
    hint = f"HTTP 401 .*check the API key in the environment variable {KEY_ENV}"
    with pytest.raises(ChatEndpointError, match=hint):
        client.complete(HI)
    assert seen[-1]["auth"] == f"Bearer {wrong}"  # the server did get it, and echoed it back
    with pytest.raises(ChatEndpointError) as refused:
        client.complete(HI)
    monkeypatch.setenv(KEY_ENV, SECRET)
    with pytest.raises(ChatEndpointError, match="did not return an OpenAI chat completion") as malformed:
        client.complete([{"role": "user", "content": "break"}])
    client.close()
    shown_texts = [str(refused.value), repr(refused.value), str(malformed.value)]
    for shown in [*shown_texts, repr(client), repr(client.settings)]:
        assert wrong not in shown and SECRET not in shown
        assert "sk-" not in shown
    assert "***" in str(refused.value) and "***" in str(malformed.value)
    assert KEY_ENV in repr(client)


def test_no_key_is_sent_when_the_variable_is_unset(
    chat_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = chat_server
    monkeypatch.delenv(KEY_ENV, raising=False)
    client = OpenAICompatibleClient(LLMSettings(url, model="m", api_key_env=KEY_ENV))
    unset = f"no API key was sent: the environment variable {KEY_ENV} is not set"
    with pytest.raises(ChatEndpointError, match=unset):
        client.complete(HI)
    none = OpenAICompatibleClient(LLMSettings(url, model="m", api_key_env=None))
    with pytest.raises(ChatEndpointError, match="set api_key_env"):
        none.complete(HI)
    assert [request["auth"] for request in seen] == [None, None]


def test_unreachable_endpoint_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = OpenAICompatibleClient(LLMSettings(url, model="m"))
    started = time.perf_counter()
    named = re.escape(f"cannot reach the chat endpoint {url}/chat/completions")
    with pytest.raises(ChatEndpointError, match=named):
        client.complete(HI)
    assert time.perf_counter() - started < 5
    assert ChatEndpointError.exit_code == 6 and ChatEndpointError.http_status == 502


def test_a_silent_server_times_out_naming_the_url() -> None:
    # A socket that listens but never answers: the connection succeeds, the reply never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        client = OpenAICompatibleClient(LLMSettings(url, model="m", timeout=0.2))
        named = re.escape(f"{url}/chat/completions did not answer within 0.2 s")
        with pytest.raises(ChatEndpointError, match=named):
            client.complete(HI)
        client.close()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"base_url": "localhost:8000/v1"}, "base_url must be a URL starting with http:// or https://"),
        ({"model": ""}, "model must be a model name, got ''"),
        ({"api_key_env": "my key"}, "api_key_env must be the name of an environment variable"),
        ({"timeout": 0}, "timeout must be a number of at least 0.001, got 0.0"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer or null, got 0"),
        ({"temperature": "hot"}, "temperature must be a number from 0 to 2, got 'hot'"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], named: str) -> None:
    values: dict[str, Any] = {"base_url": "http://localhost:8000/v1", "model": "m", **settings}
    with pytest.raises(ConfigError, match=re.escape(named)):
        LLMSettings(**values)


def test_the_client_takes_settings_only() -> None:
    with pytest.raises(TypeError, match="LLMSettings"):
        OpenAICompatibleClient("http://localhost:8000/v1")  # type: ignore[arg-type]
