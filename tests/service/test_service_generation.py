"""A pipeline that compresses and generates, served: the answer, the compressed context, the token
counts, and the answer streamed piece by piece
as server-sent events while the generator runs. The generator is a stand-in stage registered here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import serve_in_thread
from haystack import Document, component
from haystack.dataclasses import ChatMessage, StreamingChunk

from rag.core.config import RagConfig
from rag.service.settings import ServiceSettings
from rag.stages import PipelineDraft, register_stage


@component
class EchoGenerator:
    """Answers with the titles of the documents it got, one word at a time."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause

    @component.output_types(replies=list[ChatMessage])
    def run(
        self, documents: list[Document], streaming_callback: Callable[[StreamingChunk], None] | None = None
    ) -> dict[str, Any]:
        words = ["Answer:"] + [str(d.meta.get("title")) for d in documents]
        for word in words:
            if streaming_callback is not None:
                streaming_callback(StreamingChunk(content=word + " "))
            time.sleep(self.pause)
        usage = {"prompt_tokens": 7 * len(documents), "completion_tokens": len(words)}
        return {"replies": [ChatMessage.from_assistant(" ".join(words), meta={"usage": usage})]}


@register_stage("generate", "echo-test")
def echo(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    name = draft.add("generator", EchoGenerator(**settings))
    draft.connect(str(draft.documents), f"{name}.documents")


@pytest.fixture()
def server(tmp_path: Path, bm25_bundle: Path):
    config = RagConfig.from_dict(
        {
            "name": "answers",
            "retrieval": {"mode": "bm25", "top_k": 2},
            "stages": [
                {"kind": "compress", "name": "random", "ratio": 0.5, "tokenizer": "words"},
                {"kind": "generate", "name": "echo-test", "pause": 0.3},
            ],
        }
    )
    path = tmp_path / "answers.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    with serve_in_thread(ServiceSettings(indexes={"docs": bm25_bundle}, config=path)) as base:
        yield base


def test_answer_and_token_accounting(server):
    body = httpx.post(f"{server}/query", json={"query": "moon tides oceans"}, timeout=30).json()
    assert body["answer"] == "Answer: B" and body["replies"] == ["Answer: B"]
    assert body["tokens"]["generation"] == {"prompt_tokens": 7, "completion_tokens": 2}
    # The compress stage's accounting and the compressed context come back with the answer.
    compression = body["tokens"]["compression"]
    assert compression["compressor"] == "random" and compression["ratio"] <= 0.5
    assert compression["query_tokens_after"] < compression["query_tokens_before"]
    assert [c["id"] for c in body["compressed"]] == [d["id"] for d in body["documents"]]
    assert all(c["provenance"] for c in body["compressed"])
    assert body["documents"][0]["id"] == "b" and "generator" in body["stage_ms"]
    refused = httpx.post(
        f"{server}/query",
        json={"query": "moon", "filters": {"field": "meta.year", "operator": "==", "value": 1}},
    )
    assert refused.status_code == 400 and "generate" in refused.json()["detail"]
    callback = httpx.post(
        f"{server}/query", json={"query": "moon", "overrides": {"generator": {"streaming_callback": 1}}}
    )
    assert callback.status_code == 400


def test_answer_streams_while_it_is_generated(server):
    arrivals: list[tuple[float, str, dict]] = []
    started = time.perf_counter()
    with httpx.stream(
        "POST", f"{server}/query", json={"query": "moon tides oceans", "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                arrivals.append(
                    (time.perf_counter() - started, str(name), json.loads(line.removeprefix("data: ")))
                )
    names = [name for _, name, _ in arrivals]
    assert names == ["token", "token", "documents", "answer", "done"], names
    assert "".join(data["text"] for _, name, data in arrivals if name == "token") == "Answer: B "
    assert arrivals[2][2]["documents"][0]["id"] == "b" and arrivals[3][2] == {"text": "Answer: B"}
    # The first piece arrived before the generator finished (it pauses 0.3 s after each piece).
    assert arrivals[1][0] - arrivals[0][0] > 0.2, arrivals
    assert arrivals[-1][2]["tokens"]["generation"] == {"prompt_tokens": 7, "completion_tokens": 2}


def test_stream_errors_before_the_stream_keep_their_status(server):
    unknown = httpx.post(f"{server}/query", json={"query": "moon", "stream": True, "index": "nope"})
    assert unknown.status_code == 404
    bad = httpx.post(f"{server}/query", json={"query": "moon", "stream": True, "overrides": {"x": {"y": 1}}})
    assert bad.status_code == 400
