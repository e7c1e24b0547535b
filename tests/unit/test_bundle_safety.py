"""Bundle-level data safety (issue 6, items 1-6 and 10): nothing of the user's is replaced, one writer at
a time, the bundle changes as one unit, interrupted writes heal, folders respect the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import indexers.manifest as manifest_module
from indexers import load_index
from indexers.bundle import (
    BUILD_SUMMARY,
    BUNDLE_MANIFEST,
    BundleLockedError,
    check_bundle_target,
    lock_path,
    writer_lock,
)
from indexers.manifest import swap_into_place
from rag.core.config import RagConfig
from rag.core.errors import ConfigError, IndexCorruptError
from rag.pipelines import add_to_bundle, build_bundle, delete_from_bundle, load_bundle_config

REPO = Path(__file__).resolve().parents[2]


def write_corpus(path: Path, ids: list[str]) -> Path:
    path.write_text(
        "\n".join(json.dumps({"id": i, "text": f"document {i} about tides yeast and bees"}) for i in ids)
        + "\n"
    )
    return path


def bm25_config() -> RagConfig:
    return RagConfig.from_dict({"name": "bm25", "retrieval": {"mode": "bm25"}})


def hybrid_config(model: Path) -> RagConfig:
    return RagConfig.from_dict(
        {"name": "hybrid", "encoder": {"model": str(model)}, "retrieval": {"mode": "hybrid"}}
    )


def side_ids(bundle: Path, side: str) -> set[str]:
    return set(load_index(bundle / side).ids)


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    build_bundle(bm25_config(), write_corpus(tmp_path / "base.jsonl", ["a", "b", "c"]), out, progress=False)
    return out


# ------------------------------------------------------- 1. the output guard


def test_a_folder_of_user_files_is_never_replaced(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("years of work")
    (precious / "sub" / "data.csv").write_text("1,2")
    corpus = write_corpus(tmp_path / "c.jsonl", ["a"])
    with pytest.raises(ConfigError, match=r"not an index bundle \(sub/, thesis.txt\).*--out"):
        build_bundle(bm25_config(), corpus, precious, progress=False)
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert (precious / "sub" / "data.csv").read_text() == "1,2"


def test_the_corpus_or_a_folder_holding_it_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "n.md").write_text("a note about bees")
    with pytest.raises(ConfigError, match="is the corpus"):
        build_bundle(bm25_config(), notes, notes, progress=False)
    with pytest.raises(ConfigError, match="contains the corpus"):
        build_bundle(bm25_config(), notes / "n.md", notes, progress=False)
    assert (notes / "n.md").read_text() == "a note about bees"


def test_a_file_is_refused_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    with pytest.raises(ConfigError, match="it is a file.*file-index"):
        build_bundle(bm25_config(), write_corpus(tmp_path / "c.jsonl", ["a"]), target, progress=False)
    assert target.read_text() == "keep me"


def test_current_folder_and_its_parents_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(ConfigError, match="current folder"):
            check_bundle_target(out)


def test_a_symlink_is_refused(tmp_path: Path, bundle: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(bundle)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_bundle_target(link)


def test_an_existing_bundle_or_empty_folder_may_be_replaced(tmp_path: Path, bundle: Path) -> None:
    (tmp_path / "empty").mkdir()
    check_bundle_target(tmp_path / "empty")
    build_bundle(bm25_config(), write_corpus(tmp_path / "new.jsonl", ["x", "y"]), bundle, progress=False)
    assert side_ids(bundle, "bm25") == {"x", "y"}
    assert json.loads((bundle / BUNDLE_MANIFEST).read_text())["generation"] == 1


def test_cli_refuses_out_dot_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "c.jsonl", ["a"])
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        app, ["index", "--config", str(REPO / "configs/bm25.yaml"), "--corpus", "c.jsonl", "--out", "."]
    )
    assert result.exit_code == 2 and "current folder" in result.output
    assert "Traceback" not in result.output and (tmp_path / "keep.txt").read_text() == "mine"


# ------------------------------------------------------- 2. one writer at a time


def test_a_second_writer_waits_for_the_first_and_loses_nothing(tmp_path: Path, bundle: Path) -> None:
    more = write_corpus(tmp_path / "more.jsonl", ["d"])
    messages: list[str] = []
    with writer_lock(bundle, messages.append):
        worker = threading.Thread(
            target=add_to_bundle, args=(bundle, more), kwargs={"progress": False, "notify": messages.append}
        )
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive(), "the second writer must wait while the lock is held"
        assert any("waiting up to" in m for m in messages), messages
    worker.join(timeout=60)
    assert side_ids(bundle, "bm25") == {"a", "b", "c", "d"}


def test_a_writer_gives_up_after_the_timeout_and_changes_nothing(tmp_path: Path, bundle: Path) -> None:
    more = write_corpus(tmp_path / "more.jsonl", ["d"])
    with writer_lock(bundle, lambda _m: None):
        with pytest.raises(BundleLockedError, match="nothing was changed"):
            add_to_bundle(bundle, more, progress=False, notify=lambda _m: None, lock_timeout=0.2)
    assert side_ids(bundle, "bm25") == {"a", "b", "c"}


def test_two_processes_adding_at_once_keep_both_batches(tmp_path: Path, bundle: Path) -> None:
    batches = [write_corpus(tmp_path / f"batch{n}.jsonl", [f"{n}-{i}" for i in range(20)]) for n in range(2)]
    script = (
        "import sys; from rag.pipelines import add_to_bundle; "
        "add_to_bundle(sys.argv[1], sys.argv[2], progress=False)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(bundle), str(b)]) for b in batches]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(side_ids(bundle, "bm25")) == 3 + 40


# ------------------------------------------------------- 3 and 4. the bundle is one checksummed unit


def test_a_damaged_build_json_is_named_and_blocks_changes(tmp_path: Path, bundle: Path) -> None:
    (bundle / BUILD_SUMMARY).write_text("")
    with pytest.raises(IndexCorruptError, match="build.json does not match"):
        load_bundle_config(bundle)
    with pytest.raises(IndexCorruptError, match="build.json"):
        add_to_bundle(
            bundle, write_corpus(tmp_path / "more.jsonl", ["d"]), progress=False, notify=lambda _m: None
        )
    assert side_ids(bundle, "bm25") == {"a", "b", "c"}


def test_a_failure_between_the_two_sides_changes_nothing(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "hybrid"
    build_bundle(
        hybrid_config(tiny_model_dir), write_corpus(tmp_path / "base.jsonl", ["a", "b"]), out, progress=False
    )
    from indexers.bm25 import BM25Index

    def killed(self: object, path: object) -> None:
        raise KeyboardInterrupt("killed after the dense side was saved")

    monkeypatch.setattr(BM25Index, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        add_to_bundle(
            out, write_corpus(tmp_path / "more.jsonl", ["c"]), progress=False, notify=lambda _m: None
        )
    with pytest.raises(KeyboardInterrupt):
        delete_from_bundle(out, ["a"], notify=lambda _m: None)
    assert side_ids(out, "dense") == side_ids(out, "bm25") == {"a", "b"}
    assert [p.name for p in tmp_path.iterdir() if ".building-" in p.name] == []


def test_sides_from_different_writes_are_detected(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "hybrid"
    build_bundle(
        hybrid_config(tiny_model_dir), write_corpus(tmp_path / "base.jsonl", ["a", "b"]), out, progress=False
    )
    other = tmp_path / "other"
    build_bundle(
        hybrid_config(tiny_model_dir),
        write_corpus(tmp_path / "o.jsonl", ["a", "b", "z"]),
        other,
        progress=False,
    )
    manifest_module.swap_into_place(other / "bm25", out / "bm25")  # what a kill between two side saves left
    with pytest.raises(IndexCorruptError, match="bm25 index does not belong to this bundle"):
        load_bundle_config(out)


def test_delete_reports_documents_chunks_and_both_sides(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "hybrid"
    build_bundle(
        hybrid_config(tiny_model_dir),
        write_corpus(tmp_path / "base.jsonl", ["a", "b", "c"]),
        out,
        progress=False,
    )
    with pytest.raises(ConfigError, match="no document or chunk with id.*'nope'.*nothing was deleted"):
        delete_from_bundle(out, ["a", "nope"])
    assert side_ids(out, "dense") == side_ids(out, "bm25") == {"a", "b", "c"}
    summary = delete_from_bundle(out, ["a"], notify=lambda _m: None)
    assert (summary.documents, summary.chunks, summary.chunked, summary.indexes) == (
        1,
        1,
        False,
        ["dense", "bm25"],
    )
    assert side_ids(out, "dense") == side_ids(out, "bm25") == {"b", "c"}


def test_adding_an_empty_corpus_is_refused(tmp_path: Path, bundle: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no documents to add"):
        add_to_bundle(bundle, empty, progress=False)


# ------------------------------------------------------- 5 and 6. interrupted writes heal


def test_a_bundle_left_aside_by_a_killed_swap_is_named_or_restored(tmp_path: Path, bundle: Path) -> None:
    aside = tmp_path / ".idx.old-1234"
    os.rename(bundle, aside)  # the state a kill between the two renames of the fallback swap leaves
    with writer_lock(bundle, lambda _m: None):  # a writer is busy: the reader only names the copy
        with pytest.raises(IndexCorruptError, match=r"previous bundle is at .*\.idx\.old-1234"):
            load_bundle_config(bundle)
    assert load_bundle_config(bundle).name == "bm25"  # no writer busy: the reader restores it
    assert bundle.is_dir() and not aside.exists()


def test_the_next_writer_restores_and_cleans_up(tmp_path: Path, bundle: Path) -> None:
    os.rename(bundle, tmp_path / ".idx.old-1234")
    staging = tmp_path / ".idx.building-99999-ab"
    (staging / "dense").mkdir(parents=True)
    (staging / "dense" / "index.faiss").write_bytes(b"x" * 5000)
    messages: list[str] = []
    add_to_bundle(
        bundle, write_corpus(tmp_path / "more.jsonl", ["d"]), progress=False, notify=messages.append
    )
    assert any("restored" in m for m in messages), messages
    assert any("removed 1 leftover" in m and "KB freed" in m for m in messages), messages
    assert side_ids(bundle, "bm25") == {"a", "b", "c", "d"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")) == [lock_path(bundle).name]


def test_leftovers_inside_the_bundle_are_removed(tmp_path: Path, bundle: Path) -> None:
    (bundle / "bm25" / ".bm25.tmp-abcd").mkdir()
    (bundle / ".bm25.old-abcd").mkdir()
    messages: list[str] = []
    delete_from_bundle(bundle, ["a"], notify=messages.append)
    assert any("removed 2 leftover" in m for m in messages), messages
    assert not list(bundle.rglob(".*tmp*")) and not list(bundle.rglob(".*old*"))


def test_swap_without_rename_exchange_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "_rename_exchange", lambda a, b: False)
    old, new = tmp_path / "target", tmp_path / "staging"
    old.mkdir()
    (old / "v").write_text("1")
    new.mkdir()
    (new / "v").write_text("2")
    swap_into_place(new, old)
    assert (old / "v").read_text() == "2" and (new / "v").read_text() == "1"


def test_rename_exchange_is_atomic_here(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux-only")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which").write_text("a")
    assert manifest_module._rename_exchange(a, b)
    assert (b / "which").read_text() == "a" and not (a / "which").exists()


# ------------------------------------------------------- 10. permissions follow the umask


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_bundle_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        out = tmp_path / "shared"
        build_bundle(bm25_config(), write_corpus(tmp_path / "c.jsonl", ["a"]), out, progress=False)
    finally:
        os.umask(previous)
    for folder in (out, out / "bm25"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder


def test_a_bundle_that_is_not_there_is_not_found_not_corrupt(tmp_path: Path) -> None:
    from indexers.bundle import BundleNotFoundError
    from rag.core.errors import error_status

    (tmp_path / "plain").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for path, message in [
        ("missing", "does not exist"),
        ("plain", "not an index bundle"),
        ("file.txt", "is a file"),
    ]:
        with pytest.raises(BundleNotFoundError, match=message) as caught:
            load_bundle_config(tmp_path / path)
        assert error_status(caught.value) == (2, 404)
