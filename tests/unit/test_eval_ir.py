"""IR metrics through ir_measures: hand-computed values, missing queries, self hits, TREC files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluation.ir import DEFAULT_METRICS, Qrels, Run, evaluate, evaluate_per_query, metric_display_name
from rag.core.errors import ConfigError, InputFormatError

QRELS = {
    "q1": {"d1": 1, "d3": 1},
    "q2": {"d5": 2, "d4": 0},
    "q3": {"d6": 1},  # judged, never retrieved
}
RUN = {
    "q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0},
    "q2": {"d4": 2.0, "d5": 1.0},
    "q9": {"d1": 1.0},  # not judged: ignored
}

# Hand computation (trec_eval: linear gains, log2(rank + 1) discount):
# q1: relevant at ranks 1 and 3. DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3). RR = 1. AP = (1 + 2/3) / 2.
# q2: grade-2 document at rank 2. DCG = 2/log2(3), IDCG = 2. RR = 1/2. AP = 1/2.
# q3: not in the run -> 0 everywhere.
NDCG_Q1 = 1.5 / (1 + 1 / math.log2(3))
NDCG_Q2 = (2 / math.log2(3)) / 2


def test_hand_computed_means_over_all_judged_queries() -> None:
    result = evaluate(Qrels(QRELS), Run(RUN))
    assert list(result) == ["nDCG@10", "MAP@100", "MAP@1000", "MRR@10", "Recall@10", "Recall@100"]
    assert result["MAP@1000"] == result["MAP@100"]  # every relevant document is in the first 100
    assert result["nDCG@10"] == pytest.approx((NDCG_Q1 + NDCG_Q2) / 3)
    assert result["MAP@100"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 3)
    assert result["MRR@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["Recall@10"] == pytest.approx(2 / 3)
    assert result["Recall@100"] == pytest.approx(2 / 3)
    # Cutoffs matter: R@1 finds one of q1's two relevant documents and none of q2's.
    assert evaluate(QRELS, RUN, ["R@1"]) == pytest.approx({"Recall@1": (0.5 + 0 + 0) / 3})


def test_per_query_values_and_missing_query_is_zero() -> None:
    per_query = evaluate_per_query(QRELS, RUN)
    assert set(per_query) == {"q1", "q2", "q3"}
    assert per_query["q1"]["nDCG@10"] == pytest.approx(NDCG_Q1)
    assert per_query["q2"]["MRR@10"] == pytest.approx(0.5)
    assert per_query["q3"] == dict.fromkeys(
        ["nDCG@10", "MAP@100", "MAP@1000", "MRR@10", "Recall@10", "Recall@100"], 0.0
    )
    # The aggregate is the plain mean of the per-query values.
    mean = sum(v["nDCG@10"] for v in per_query.values()) / 3
    assert evaluate(QRELS, RUN)["nDCG@10"] == pytest.approx(mean)


def test_map_at_1000_counts_relevant_documents_past_rank_100() -> None:
    # One relevant document at rank 150: MAP@100 misses it, MAP@1000 (trec_eval's MAP of a 1000-deep
    # run) gives it precision 1/150.
    run = {"q": {f"d{i}": 1000.0 - i for i in range(1, 151)}}
    result = evaluate({"q": {"d150": 1}}, run, ["AP@100", "AP@1000"])
    assert result == pytest.approx({"MAP@100": 0.0, "MAP@1000": 1 / 150})


def test_empty_run_scores_zero() -> None:
    assert evaluate(QRELS, {}, ["nDCG@10"]) == {"nDCG@10": 0.0}


def test_drop_self_hits() -> None:
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 5.0, "d1": 1.0}}
    assert evaluate(qrels, run, ["RR@10"]) == {"MRR@10": 0.5}
    assert evaluate(qrels, run, ["RR@10"], drop_self_hits=True) == {"MRR@10": 1.0}


def test_metric_names_are_parsed_up_front() -> None:
    assert list(evaluate(QRELS, RUN, ["ndcg@10", "MAP@100", "mrr@10", "Recall@100", "P@2"])) == [
        "nDCG@10",
        "MAP@100",
        "MRR@10",
        "Recall@100",
        "P@2",
    ]
    assert metric_display_name("AP@100") == "MAP@100"
    assert [metric_display_name(m) for m in DEFAULT_METRICS] == [
        "nDCG@10",
        "MAP@100",
        "MAP@1000",
        "MRR@10",
        "Recall@10",
        "Recall@100",
    ]
    with pytest.raises(ConfigError, match="'nDGC@10'.*nDCG@10"):
        evaluate(QRELS, RUN, ["nDCG@10", "nDGC@10"])
    with pytest.raises(ConfigError, match="R@ten"):
        evaluate(QRELS, RUN, ["R@ten"])
    with pytest.raises(ConfigError, match="no metrics"):
        evaluate(QRELS, RUN, [])


def test_containers_are_immutable_copies() -> None:
    source = {"q1": {"d1": 1.0}}
    run = Run(source)
    source["q1"]["d1"] = 9.0
    assert run["q1"]["d1"] == 1.0
    with pytest.raises(TypeError):
        run["q1"]["d1"] = 2.0  # type: ignore[index]
    copy = run.to_dict()
    copy["q1"]["d1"] = 5.0
    assert run["q1"]["d1"] == 1.0
    assert run.ranking("q1") == ["d1"]


def test_bad_values_raise() -> None:
    with pytest.raises(ConfigError, match="integer"):
        Qrels({"q1": {"d1": 0.5}})
    with pytest.raises(ConfigError, match="NaN"):
        Run({"q1": {"d1": float("nan")}})
    with pytest.raises(ConfigError, match="strings"):
        Run({1: {"d1": 1.0}})  # type: ignore[dict-item]


def test_trec_round_trip(tmp_path: Path) -> None:
    run = Run({"q1": {"d1": 0.1 + 0.2, "d2": 1e-9, "d3": 3.0}, "q2": {"d1": -1.5}})
    run.to_trec(tmp_path / "run.trec", tag="mytag")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 d3 1 3.0 mytag"
    assert Run.from_trec(tmp_path / "run.trec") == run
    qrels = Qrels(QRELS)
    qrels.to_trec(tmp_path / "qrels.txt")
    assert Qrels.from_trec(tmp_path / "qrels.txt") == qrels


def test_beir_tsv_and_format_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "test.tsv"
    tsv.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n")
    assert Qrels.from_beir_tsv(tsv).to_dict() == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2 high tag\n")
    with pytest.raises(InputFormatError, match=r"bad.trec:2: .*high"):
        Run.from_trec(bad)
    short = tmp_path / "short.qrels"
    short.write_text("q1 0 d1\n")
    with pytest.raises(InputFormatError, match="short.qrels:1"):
        Qrels.from_trec(short)
