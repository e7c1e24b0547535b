"""The index folder contract: manifest, checksums, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexers.manifest import (
    FORMAT_VERSION,
    read_manifest,
    sha256_file,
    verify_checksums,
    write_index_atomically,
)
from rag.core.errors import ConfigError, IndexCorruptError


def _writer(text: str):
    def write_files(folder: Path) -> dict:
        (folder / "data.txt").write_text(text)
        (folder / "sub").mkdir()
        (folder / "sub" / "inner.bin").write_bytes(text.encode() * 3)
        return {"index_type": "test", "params": {"text": text}}

    return write_files


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_write_adds_version_and_checksum_of_every_file(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    manifest = read_manifest(target)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["params"] == {"text": "one"}
    assert manifest["checksums"] == {
        "data.txt": sha256_file(target / "data.txt"),
        "sub/inner.bin": sha256_file(target / "sub" / "inner.bin"),
    }
    verify_checksums(target, manifest)
    assert _siblings(target) == []  # no temporary folder left behind


def test_replacing_an_index_swaps_it_and_cleans_up(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    write_index_atomically(target, _writer("two"))
    assert (target / "data.txt").read_text() == "two"
    assert read_manifest(target)["params"] == {"text": "two"}
    assert _siblings(target) == []


def test_failed_write_leaves_old_index_intact(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def failing(folder: Path) -> dict:
        (folder / "data.txt").write_text("half written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_index_atomically(target, failing)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    verify_checksums(target, read_manifest(target))
    assert _siblings(target) == []


def test_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not an index"):
        write_index_atomically(target, _writer("one"))
    assert (target / "thesis.tex").read_text() == "years of work"


def test_empty_existing_folder_is_fine(tmp_path):
    target = tmp_path / "idx"
    target.mkdir()
    write_index_atomically(target, _writer("one"))
    assert (target / "data.txt").read_text() == "one"


def test_corrupted_file_is_named(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    (target / "sub" / "inner.bin").write_bytes(b"flipped")
    with pytest.raises(IndexCorruptError, match=r"inner\.bin.*checksum.*[Rr]ebuild"):
        verify_checksums(target, read_manifest(target))


def test_missing_file_is_named(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    (target / "data.txt").unlink()
    with pytest.raises(IndexCorruptError, match=r"data\.txt is missing.*[Rr]ebuild"):
        verify_checksums(target, read_manifest(target))


def test_manifest_problems(tmp_path):
    with pytest.raises(IndexCorruptError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    manifest_path = target / "manifest.json"
    good = json.loads(manifest_path.read_text())

    manifest_path.write_text("{not json")
    with pytest.raises(IndexCorruptError, match=r"manifest\.json cannot be read as JSON"):
        read_manifest(target)

    manifest_path.write_text(json.dumps({**good, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(IndexCorruptError, match="newer"):
        read_manifest(target)

    manifest_path.write_text(json.dumps({**good, "checksums": {"../outside": "0" * 64}}))
    with pytest.raises(IndexCorruptError, match="invalid file name"):
        verify_checksums(target, read_manifest(target))

    manifest_path.unlink()
    with pytest.raises(IndexCorruptError, match=r"manifest\.json is missing"):
        read_manifest(target)


def test_interrupted_swap_points_to_the_old_index(tmp_path):
    target = tmp_path / "idx"
    write_index_atomically(target, _writer("one"))
    # Simulate a crash between "rename old aside" and "rename new in".
    target.rename(tmp_path / ".idx.old-1234")
    with pytest.raises(IndexCorruptError, match=r"\.idx\.old-1234"):
        read_manifest(target)
