"""A new stage kind end to end, as an extension would add it: one component, one registration, one
config entry. Nothing in rag.pipelines, rag.stages or the evaluation engine changes for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from haystack import Document, component

from rag.core.config import RagConfig
from rag.evaluate import evaluate_config
from rag.stages import PipelineDraft, register_stage


@component
class IdentityReranker:
    """Keeps the ranking as it is and counts the documents it saw."""

    def __init__(self) -> None:
        self.seen = 0

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document]) -> dict[str, Any]:
        self.seen += len(documents)
        return {"documents": documents}


@register_stage("rerank", "identity")
def identity(draft: PipelineDraft, settings: dict[str, Any]) -> None:
    draft.add_documents_stage("rerank", IdentityReranker(**settings), takes_top_k=False)


def test_an_identity_reranker_changes_no_score_and_reports_its_latency(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = {"a": "yeast makes bread rise", "b": "the moon pulls the tides", "c": "bees dance to show flowers"}
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in docs.items())
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "why does bread rise"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\n")
    plain = RagConfig.from_dict({"name": "plain", "retrieval": {"mode": "bm25"}})
    staged = RagConfig.from_dict(
        {"name": "staged", "retrieval": {"mode": "bm25"}, "stages": [{"kind": "rerank", "name": "identity"}]}
    )
    before = evaluate_config(plain, beir, cache_dir=tmp_path / "cache", progress=False)
    after = evaluate_config(staged, beir, cache_dir=tmp_path / "cache", progress=False)
    ir_metrics = [name for name in before.metrics if "ms" not in name and "token" not in name.lower()]
    assert ir_metrics and {m: after.metrics[m] for m in ir_metrics} == {
        m: before.metrics[m] for m in ir_metrics
    }
    assert before.metrics["nDCG@10"] == 1.0
    assert "rerank" in after.stage_seconds and "rerank" not in before.stage_seconds
