"""``encoder.representation: duplex``: DupMAE's combined vectors in every dense pipeline, recorded in the
fingerprint, refused against an index of the other representation, and checked in the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.core.config import ENCODER_REPRESENTATIONS, EncoderConfig, RagConfig
from rag.core.errors import ConfigError, EncoderMismatchError
from rag.encoders.dense import registered_representations

TEXTS = {
    "a": "Bread dough rises because yeast ferments sugar into carbon dioxide.",
    "b": "Tides come from the moon's gravity pulling on the oceans.",
    "c": "Honey bees swarm to find a new nest when the colony grows.",
    "d": "Solar panels turn sunlight into electricity with silicon cells.",
}


@pytest.fixture(scope="module")
def dupmae_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_builder) -> Path:  # type: ignore[no-untyped-def]
    """What ``rag train retromae --duplex`` saves, with random weights: a 32-d BERT with [CLS] pooling and
    MiniLM's vocabulary, and a DupMAE head under ``dupmae/``."""
    import torch
    from transformers import AutoConfig

    from rag.encoders.dupmae import HEAD_DIR
    from rag.training.retromae_model import MLMHead, save_dupmae_head

    folder = tiny_model_builder(tmp_path_factory.mktemp("dupmae-tiny"), max_length=64, pooling_mode="cls")
    config = AutoConfig.from_pretrained(folder)
    head = MLMHead(config)
    torch.nn.init.normal_(head.bias, std=0.1)
    save_dupmae_head(head, folder / HEAD_DIR)
    return folder


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"id": k, "text": v}) for k, v in TEXTS.items()))
    return path


def dense_config(model: Path, **encoder: object) -> RagConfig:
    return RagConfig.from_dict(
        {"name": "duplex", "encoder": {"model": str(model), **encoder}, "retrieval": {"mode": "dense"}}
    )


def test_the_config_checks_the_representation_and_its_settings() -> None:
    assert set(registered_representations()) == set(ENCODER_REPRESENTATIONS)
    config = RagConfig.from_dict({"encoder": {"representation": "duplex", "ot_dims": 16}})
    assert (config.encoder.representation, config.encoder.ot_dims) == ("duplex", 16)
    assert EncoderConfig().representation is None and EncoderConfig().ot_dims is None
    with pytest.raises(
        ConfigError, match=r"c.yaml: encoder.representation must be one of duplex or null .*got 'dupmae'"
    ):
        RagConfig.from_dict({"encoder": {"representation": "dupmae"}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"encoder.ot_dims applies only with representation: duplex"):
        RagConfig.from_dict({"encoder": {"ot_dims": 16}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"encoder.ot_dims must be a positive integer or null, got 0"):
        RagConfig.from_dict({"encoder": {"representation": "duplex", "ot_dims": 0}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"representation must be one of duplex"):
        EncoderConfig(representation="cls")


def test_a_duplex_pipeline_indexes_and_retrieves_with_duplex_vectors(
    dupmae_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    import numpy as np

    from indexers import load_index
    from rag.encoders.dupmae import DuplexEncoder
    from rag.pipelines import build_bundle, build_pipeline, retrieve

    build_bundle(dense_config(dupmae_dir, representation="duplex"), corpus, tmp_path / "idx", progress=False)
    index = load_index(tmp_path / "idx" / "dense")
    fingerprint = index.fingerprint
    assert (fingerprint.pooling, fingerprint.dimension) == ("duplex", 64)
    direct = DuplexEncoder(dupmae_dir)
    ids = sorted(TEXTS)
    stored = index.embeddings(ids)  # type: ignore[attr-defined]
    np.testing.assert_allclose(stored, direct.encode([TEXTS[i] for i in ids]), atol=1e-6)

    pipe = build_pipeline(None, tmp_path / "idx")  # the bundle's own config: duplex queries
    for doc_id, text in TEXTS.items():
        docs = retrieve(pipe, text, top_k=2)
        assert docs[0].id == doc_id and docs[0].score == pytest.approx(1.0, abs=1e-5)
    query = "why does dough rise"
    [want] = direct.encode([query])
    scores = {d.id: d.score for d in retrieve(pipe, query, top_k=4)}
    assert scores == pytest.approx({i: float(want @ stored[n]) for n, i in enumerate(ids)}, abs=1e-5)

    # ot_dims sizes the second half; the fingerprint's dimension records it
    build_bundle(
        dense_config(dupmae_dir, representation="duplex", ot_dims=8),
        corpus,
        tmp_path / "small",
        progress=False,
    )
    assert load_index(tmp_path / "small" / "dense").fingerprint.dimension == 40
    assert retrieve(build_pipeline(None, tmp_path / "small"), TEXTS["c"], top_k=1)[0].id == "c"


def test_an_index_refuses_queries_of_the_other_representation(
    dupmae_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    from rag.encoders.dense import DenseEncoder
    from rag.encoders.dupmae import HEAD_DIR
    from rag.pipelines import build_bundle, build_pipeline

    duplex, cls = dense_config(dupmae_dir, representation="duplex"), dense_config(dupmae_dir)
    build_bundle(duplex, corpus, tmp_path / "duplex", progress=False)
    build_bundle(cls, corpus, tmp_path / "cls", progress=False)
    with pytest.raises(EncoderMismatchError, match=r"pooling: index has 'duplex', encoder has 'cls'"):
        build_pipeline(cls, tmp_path / "duplex").warm_up()
    with pytest.raises(EncoderMismatchError, match=r"pooling: index has 'cls', encoder has 'duplex'"):
        build_pipeline(duplex, tmp_path / "cls").warm_up()
    other_dims = dense_config(dupmae_dir, representation="duplex", ot_dims=8)
    with pytest.raises(EncoderMismatchError, match=r"dimension: index has 64, encoder has 40"):
        build_pipeline(other_dims, tmp_path / "duplex").warm_up()

    # The head is part of the duplex model's identity (not of the plain [CLS] model's).
    changed = tmp_path / "changed"
    shutil.copytree(dupmae_dir, changed)
    head = changed / HEAD_DIR / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0x01
    head.write_bytes(bytes(data))
    plain_a, plain_b = DenseEncoder(str(dupmae_dir)), DenseEncoder(str(changed))
    assert plain_a.fingerprint == plain_b.fingerprint
    duplex_a = DenseEncoder(str(dupmae_dir), representation="duplex")
    duplex_b = DenseEncoder(str(changed), representation="duplex")
    assert duplex_a.fingerprint.model_sha256 != duplex_b.fingerprint.model_sha256
    assert duplex_a.fingerprint.model_sha256 != plain_a.fingerprint.model_sha256


def test_a_folder_without_a_dupmae_head_is_a_config_error(
    tiny_model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    from rag.pipelines import build_bundle

    with pytest.raises(ConfigError, match=r"not a DupMAE checkpoint.*without encoder.representation: duplex"):
        build_bundle(
            dense_config(tiny_model_dir, representation="duplex"), corpus, tmp_path / "i", progress=False
        )
    assert not (tmp_path / "i" / "dense").exists()


def test_the_cli_indexes_queries_and_evaluates_with_duplex(dupmae_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in TEXTS.items()))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": TEXTS["b"]}))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tb\t1\n")
    config = tmp_path / "duplex.yaml"
    encoder = f"{{model: {dupmae_dir}, representation: duplex}}"
    config.write_text(f"name: duplex\nencoder: {encoder}\nretrieval: {{mode: dense}}\n")
    runner = CliRunner()
    index = str(tmp_path / "idx")
    result = runner.invoke(
        app, ["index", "--config", str(config), "--corpus", str(data), "--out", index, "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["query", "--index", index, "--top-k", "1", TEXTS["c"]])
    assert result.exit_code == 0 and "│ 1 │ c  │ 1.0000 │" in result.output, result.output
    out = tmp_path / "report"
    cache = str(tmp_path / "cache")
    result = runner.invoke(
        app,
        ["eval", "--config", str(config), "--dataset", str(data), "--output", str(out), "--cache-dir", cache],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["results"][0]["metrics"]["nDCG@10"] == 1.0
