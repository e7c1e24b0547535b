"""The durability benchmark (benchmarks/durability.py): its state classifier and leftover count, and a
few of its trials on a BM25 bundle against the durability targets of issue 6."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "durability.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("durability_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


durability = _load()

BEFORE = frozenset({"d01", "d02", "d03"})
AFTER = BEFORE | {"n1", "n2"}


def record(sides: dict[str, list[str] | str], exists: bool = True, query_ok: bool = True) -> dict:
    """A checker record: a list of ids per readable side, an error message for an unreadable one."""
    shaped = {
        side: {"ids": ids} if isinstance(ids, list) else {"error": {"message": ids}}
        for side, ids in sides.items()
    }
    query = {"ok": True} if query_ok else {"ok": False, "error": {"message": "query failed"}}
    return {"exists": exists, "sides": shaped, "query": query}


def test_both_sides_before_is_intact_and_after_is_complete() -> None:
    both = ["dense", "bm25"]
    intact = durability.classify(
        record({"dense": sorted(BEFORE), "bm25": sorted(BEFORE)}), both, BEFORE, [AFTER]
    )
    complete = durability.classify(
        record({"dense": sorted(AFTER), "bm25": sorted(AFTER)}), both, BEFORE, [AFTER]
    )
    assert (intact["state"], intact["lost"], intact["extra"]) == ("intact", 0, 0)
    assert (complete["state"], complete["lost"], complete["extra"]) == ("complete", 0, 0)


def test_sides_that_disagree_are_a_mixed_state() -> None:
    verdict = durability.classify(
        record({"dense": sorted(AFTER), "bm25": sorted(BEFORE)}), ["dense", "bm25"], BEFORE, [AFTER]
    )
    assert verdict["state"] == "mixed"


def test_a_partial_add_counts_the_missing_documents() -> None:
    verdict = durability.classify(record({"bm25": sorted(BEFORE | {"n1"})}), ["bm25"], BEFORE, [AFTER])
    assert (verdict["state"], verdict["lost"], verdict["extra"]) == ("mixed", 1, 0)


def test_two_writers_that_exit_0_accept_only_both_changes() -> None:
    both_changes = AFTER | {"m1", "m2"}
    # One batch gone although both commands succeeded: the previous state is not acceptable here.
    verdict = durability.classify(
        record({"bm25": sorted(AFTER)}), ["bm25"], BEFORE, [both_changes], acceptable=[both_changes]
    )
    assert (verdict["state"], verdict["lost"]) == ("mixed", 2)


def test_duplicated_ids_count_as_extra() -> None:
    verdict = durability.classify(record({"bm25": [*sorted(BEFORE), "d01"]}), ["bm25"], BEFORE, [AFTER])
    assert (verdict["state"], verdict["extra"]) == ("mixed", 1)


def test_missing_or_unreadable_bundles_are_broken() -> None:
    missing = durability.classify(record({}, exists=False, query_ok=False), ["bm25"], BEFORE, [AFTER])
    unreadable = durability.classify(
        record({"dense": sorted(BEFORE), "bm25": "bm25 is missing"}, query_ok=False),
        ["dense", "bm25"],
        BEFORE,
        [AFTER],
    )
    assert (missing["state"], missing["missing"]) == ("broken", True)
    assert (unreadable["state"], unreadable["missing"]) == ("broken", False)
    assert "bm25 is missing" in unreadable["errors"]


def test_leftovers_are_siblings_but_the_lock_and_hidden_temporaries_inside(tmp_path: Path) -> None:
    bundle = tmp_path / "out" / "bundle"
    (bundle / "bm25").mkdir(parents=True)
    (bundle / "bm25" / "documents.jsonl").write_text("{}\n")
    (bundle / ".bm25.tmp-x1").mkdir()
    (bundle / ".bm25.tmp-x1" / "documents.jsonl").write_text("{}\n")
    (tmp_path / "out" / ".bundle.lock").write_text("")
    (tmp_path / "out" / ".bundle.old-42").mkdir()
    found = durability.leftovers(bundle)
    assert sorted(entry["path"] for entry in found) == [".bundle.old-42", "bundle/.bm25.tmp-x1"]
    assert sum(entry["bytes"] for entry in found) == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="the rename fault injection needs strace")
def test_bm25_bundle_survives_kills_at_each_rename_and_two_writers(tmp_path: Path) -> None:
    """Kill `rag index | add | delete` at every rename of a BM25 bundle, and run two writers at once.

    On the main of issue 6 a kill between the two renames of `rag index` leaves no bundle (broken), a kill
    inside a side's save leaves that side missing, and the copies set aside are never removed.
    """
    result = durability.main(
        [
            "--configs", "bm25",
            "--kinds", "rename", "concurrent",
            "--trials", "2",
            "--output", str(tmp_path / "durability.json"),
            "--workdir", str(tmp_path / "work"),
        ]
    )  # fmt: skip
    totals = result["totals"]
    assert totals["killed"] >= 1, "the fault injection killed nothing"
    misses = {
        key: totals[key]
        for key in (
            "mixed_states",
            "broken",
            "documents_lost",
            "documents_extra_or_duplicated",
            "leftovers_after_next_write",
            "tracebacks",
        )
        if totals[key]
    }
    assert not misses, f"durability targets missed: {misses}; per trial: {tmp_path / 'durability.json'}"
    assert totals["final_state_ok"] == totals["trials"]
