"""The README's quickstart, end to end, with the real bundled MiniLM model on the demo corpus."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rag.cli import app


@pytest.mark.integration
def test_quickstart_runs_and_scores_the_demo(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path / "qs")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "qs" / "eval" / "report.json").read_text())
    metrics = report["results"][0]["metrics"]
    # The demo queries are paraphrases of their documents: a working dense path ranks most of them first.
    assert metrics["nDCG@10"] > 0.6, metrics
    assert metrics["Recall@10"] > 0.8, metrics
    assert "d01" in result.output  # the bread query finds the yeast document
