"""Training pair sources, hard-negative mining and the shared trainer plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.core.errors import ConfigError, InputFormatError
from rag.training.common import (
    LossLogCallback,
    last_checkpoint,
    read_loss_log,
    resume_from,
    training_arguments,
    write_training_summary,
)
from rag.training.pairs import (
    TrainingPair,
    beir_pairs,
    cropped_pairs,
    load_pairs,
    mine_hard_negatives,
    squad_pairs,
)


def write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Cats", "text": "cats purr when happy"},
        {"_id": "d2", "title": "", "text": "dogs bark at strangers"},
        {"_id": "d3", "title": "Birds", "text": "birds sing at dawn"},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": "q1", "text": "why do cats purr"}, {"_id": "q2", "text": "barking dogs"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq2\td3\t0\n")
    return root


def test_beir_pairs_join_title_and_skip_zero_grades(tmp_path: Path) -> None:
    pairs = beir_pairs(write_beir(tmp_path / "b"))
    assert [(p.query, p.positive, p.positive_id) for p in pairs] == [
        ("why do cats purr", "Cats cats purr when happy", "d1"),
        ("barking dogs", "dogs bark at strangers", "d2"),
    ]


def test_load_pairs_sources_and_split(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "b")
    assert len(load_pairs(f"beir:{root}")) == 2
    assert len(load_pairs(f"beir:{root}:train")) == 2
    with pytest.raises(ConfigError, match="missing qrels/test.tsv"):
        load_pairs(f"beir:{root}:test")
    with pytest.raises(ConfigError, match="beir:DIR"):
        load_pairs(str(root))
    assert len(load_pairs(f"beir:{root}", limit=1)) == 1


def test_squad_pairs(tmp_path: Path) -> None:
    data = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {"question": "Where is Paris?", "id": "1"},
                            {"question": "x", "id": "2", "is_impossible": True},
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data))
    assert squad_pairs(path) == [TrainingPair("Where is Paris?", "Paris is in France.", positive_id="T#0")]
    path.write_text("[1, 2]")
    with pytest.raises(InputFormatError, match="SQuAD"):
        squad_pairs(path)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.text(alphabet="abc xyz", min_size=0, max_size=120), min_size=1, max_size=5),
    st.integers(0, 99),
)
def test_cropped_queries_are_spans_of_their_passage(passages: list[str], seed: int) -> None:
    for pair in cropped_pairs(passages, seed=seed):
        words = pair.positive.split()
        query = pair.query.split()
        assert 4 <= len(query) <= 16
        assert any(words[i : i + len(query)] == query for i in range(len(words)))


def test_mined_negatives_never_the_positive() -> None:
    corpus = ["cats purr softly", "cats purr loudly at night", "dogs bark", "cats sleep all day"]
    pairs = [TrainingPair("cats purr", "cats purr softly")]
    mined = mine_hard_negatives(pairs, corpus, method="bm25", per_query=2, seed=3)
    assert len(mined[0].negatives) == 2
    assert "cats purr softly" not in mined[0].negatives
    assert set(mined[0].negatives) <= {"cats purr loudly at night", "cats sleep all day"}
    assert mine_hard_negatives(pairs, corpus, method="none") == pairs
    with pytest.raises(ConfigError, match="not one of"):
        mine_hard_negatives(pairs, corpus, method="random")


def test_dense_mining_with_a_tiny_model(tiny_model_dir: Path) -> None:
    corpus = {"a": "alpha beta", "b": "gamma delta", "c": "epsilon zeta"}
    pairs = [TrainingPair("alpha", "alpha beta")]
    mined = mine_hard_negatives(pairs, corpus, method="dense", model=str(tiny_model_dir), per_query=1)
    assert mined[0].negatives and mined[0].negatives[0] in {"gamma delta", "epsilon zeta"}


def test_trainer_plumbing(tmp_path: Path) -> None:
    args = training_arguments(tmp_path, max_steps=100, batch_size=8, learning_rate=1e-5)
    assert args["use_cpu"] and args["save_steps"] == 25 and args["logging_steps"] == 2
    with pytest.raises(ConfigError, match="learning rate"):
        training_arguments(tmp_path, max_steps=1, batch_size=1, learning_rate=0)
    assert last_checkpoint(tmp_path) is None
    with pytest.raises(ConfigError, match="--resume"):
        resume_from(tmp_path, True)
    for step in (5, 40, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-40")
    assert resume_from(tmp_path, False) is None

    class State:
        global_step, epoch = 7, 0.5

    callback = LossLogCallback(tmp_path)
    callback.on_log(None, State(), None, logs={"loss": 1.5, "learning_rate": 1e-5})
    callback.on_log(None, State(), None, logs={"train_runtime": 3.0})
    assert [(r["step"], r["loss"]) for r in read_loss_log(tmp_path)] == [(7, 1.5)]
    summary = write_training_summary(tmp_path, {"steps": 7})
    assert json.loads(summary.read_text()) == {"steps": 7}


def test_time_limit_stops_and_saves_after_the_budget() -> None:
    from rag.training.common import TimeLimitCallback

    class State:
        global_step, max_steps = 3, 10

    class Control:
        should_training_stop = should_save = False

    with pytest.raises(ConfigError, match="positive minutes"):
        TimeLimitCallback(0)
    roomy, control = TimeLimitCallback(60), Control()
    roomy.on_train_begin(None, State(), control)
    roomy.on_step_end(None, State(), control)
    assert not control.should_training_stop and roomy.stopped_at is None
    spent = TimeLimitCallback(1e-9)
    spent.on_step_end(None, State(), control)
    assert control.should_training_stop and control.should_save and spent.stopped_at == 3
