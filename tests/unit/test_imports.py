"""Import cost: the command line answers ``--help``, ``configs`` and input errors without the heavy stack.

Each check runs in a fresh interpreter, since this test process has long imported torch and Haystack.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# bm25s (~0.25 s with scipy) is not listed: loading a BM25 config checks its stop-word language with it.
HEAVY = ("torch", "haystack", "faiss", "sentence_transformers", "transformers")

# Runs each command in-process, then reports its exit code and which heavy modules it loaded.
RUNNER = """
import json, sys
from rag.cli import app
heavy = {heavy!r}
report = []
for args in {cases!r}:
    try:
        app(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    report.append({{"args": args, "code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}})
with open({out!r}, "w") as f:  # not stdout: the commands print there
    json.dump(report, f)
"""


def run_isolated(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_rag_cli_is_light():
    code = "import json, sys, rag.cli; print(json.dumps(sorted(m for m in {!r} if m in sys.modules)))"
    assert json.loads(run_isolated(code.format(HEAVY))) == []


@pytest.fixture
def error_cases(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {mode: bm25, top_k: 0}\n")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n')
    folder = tmp_path / "bundle"
    folder.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("not an index")
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    return [
        (["--help"], 0),
        (["configs"], 0),
        # A missing or non-bundle index is a NotFoundError: exit 2 (rag.core.errors).
        (["query", "x", "--index", str(tmp_path / "nonexistent")], 2),
        (["query", "x", "--index", str(a_file)], 2),
        (["query", "x", "--index", str(folder), "--top-k", "0"], 2),
        (["query", "x", "--index", str(folder), "--snippet", "-5"], 2),
        (["query", "x", "--index", str(folder), "--config", "no-such-config"], 2),
        (["index", "--config", str(bad), "--corpus", str(corpus), "--out", str(tmp_path / "o")], 2),
        (["index", "--config", "bm25", "--corpus", str(tmp_path / "gone"), "--out", str(folder)], 2),
        (["index", "--config", "bm25", "--corpus", str(malformed), "--out", str(tmp_path / "o")], 2),
        (["index", "--config", "bm25", "--corpus", str(corpus), "--out", str(a_file)], 2),
        (["add", "--index", str(folder), "--corpus", str(corpus)], 2),  # a folder, not a bundle
        (["add", "--index", str(tmp_path / "nonexistent"), "--corpus", str(corpus)], 2),
        (["delete", "--index", str(tmp_path / "nonexistent"), "a"], 2),
        (["eval", "--config", str(bad), "--dataset", str(tmp_path)], 2),
    ]


def test_help_configs_and_input_errors_import_nothing_heavy(error_cases, tmp_path):
    cases = [args for args, _ in error_cases]
    out = tmp_path / "report.json"
    run_isolated(RUNNER.format(heavy=HEAVY, cases=cases, out=str(out)))
    report = json.loads(out.read_text())
    for (args, expected), outcome in zip(error_cases, report, strict=True):
        assert outcome["code"] == expected, (args, outcome)
        assert outcome["heavy"] == [], (args, outcome)
