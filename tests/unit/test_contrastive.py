"""Contriever-style training: the views, the MoCo queue and momentum update, the loss, checkpoints."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.core.errors import ConfigError
from rag.training.contrastive import (
    ContrastiveSettings,
    contrastive_views,
    crop_span,
    delete_words,
    make_view,
    train_contrastive,
)

words_lists = st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), min_size=1, max_size=200)
ratios = st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted)


def is_subsequence(small, big):
    it = iter(big)
    return all(word in it for word in small)


@given(n=st.integers(1, 2000), bounds=ratios, seed=st.integers(0, 2**32))
def test_crop_is_a_span_inside_the_passage_of_the_asked_share(n, bounds, seed):
    low, high = bounds
    start, end = crop_span(n, random.Random(seed), low, high)
    assert 0 <= start < end <= n
    assert end - start <= max(1, int(n * high))
    assert end - start >= min(n, max(1, int(n * low)))


@given(words=words_lists, prob=st.floats(0.0, 0.99), seed=st.integers(0, 2**32))
def test_deletion_keeps_an_ordered_non_empty_subsequence(words, prob, seed):
    kept = delete_words(words, random.Random(seed), prob)
    assert 1 <= len(kept) <= len(words)
    assert is_subsequence(kept, words)


@settings(max_examples=50)
@given(words=words_lists, seed=st.integers(0, 2**32))
def test_a_view_is_drawn_from_one_contiguous_span(words, seed):
    config = ContrastiveSettings()
    view = make_view(words, random.Random(seed), config).split()
    # Replaying the same draws gives the span the view was cut from.
    start, end = crop_span(len(words), random.Random(seed), config.crop_min, config.crop_max)
    assert is_subsequence(view, words[start:end])


def test_deletion_rate_is_about_the_asked_probability():
    rng = random.Random(0)
    words = [str(i) for i in range(20000)]
    assert len(delete_words(words, rng, 0.1)) / len(words) == pytest.approx(0.9, abs=0.01)
    assert delete_words(words, rng, 0.0) == words


def test_views_cycle_through_every_passage_and_both_views_share_one():
    passages = [" ".join(f"w{i}_{j}" for j in range(40)) for i in range(5)]
    views = contrastive_views(passages, 10, ContrastiveSettings(), seed=3)

    def source(view):
        (only,) = {word.split("_")[0] for word in view.split()}
        return only

    anchors, positives = [source(v) for v in views["anchor"]], [source(v) for v in views["positive"]]
    assert anchors == positives
    # Each pass of 5 rows covers every passage once.
    assert set(anchors[:5]) == set(anchors[5:]) == {f"w{i}" for i in range(5)}
    assert views["anchor"] != views["positive"]  # independent crops
    assert contrastive_views(passages, 10, ContrastiveSettings(), seed=3) == views


def test_settings_refuse_bad_values_with_the_fix():
    with pytest.raises(ConfigError, match="crop_min"):
        ContrastiveSettings(crop_min=0.6, crop_max=0.5)
    with pytest.raises(ConfigError, match="momentum"):
        ContrastiveSettings(momentum=1.5)
    with pytest.raises(ConfigError, match="batch_size"):
        ContrastiveSettings(batch_size=1)


# --- queue and momentum (torch) ---------------------------------------------------------------


def test_queue_is_fifo_and_wraps_around():
    import torch

    from rag.training.moco import KeyQueue

    queue = KeyQueue(5, 2)
    keys = torch.arange(16, dtype=torch.float32).reshape(8, 2)  # row i is (2i, 2i + 1)
    assert queue.contents().shape == (0, 2)
    queue.enqueue(keys[:3])
    assert torch.equal(queue.contents(), keys[:3])
    queue.enqueue(keys[3:7])  # 7 keys into 5 slots: the two oldest are overwritten
    assert torch.equal(queue.contents(), keys[2:7])
    assert int(queue.pointer) == 2 and int(queue.filled) == 5
    queue.enqueue(keys[7:8])
    assert torch.equal(queue.contents(), keys[3:8])
    big = torch.arange(14, dtype=torch.float32).reshape(7, 2) + 100
    queue.enqueue(big)  # a batch larger than the queue leaves its last 5 keys
    assert torch.equal(queue.contents(), big[2:])
    empty = KeyQueue(0, 2)
    empty.enqueue(keys)
    assert empty.contents().shape == (0, 2)


def test_momentum_update_moves_each_weight_by_one_minus_m_times_the_gap():
    import torch

    from rag.training.moco import momentum_update

    torch.manual_seed(0)
    query, key = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in key.parameters()]
    momentum_update(key, query, 0.9)
    for old, new, q in zip(before, key.parameters(), query.parameters(), strict=True):
        torch.testing.assert_close(new - old, (1 - 0.9) * (q - old), rtol=1e-5, atol=1e-6)
    momentum_update(key, query, 0.0)
    for new, q in zip(key.parameters(), query.parameters(), strict=True):
        assert torch.equal(new, q)


def _features(model, texts):
    return model.tokenize(texts)


def test_loss_uses_batch_and_queue_and_enqueues_only_in_training(tiny_model_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.training.moco import MoCoLoss

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    loss = MoCoLoss(model, queue_size=6, momentum=0.5, temperature=0.05)
    assert not any(p.requires_grad for p in loss.key_encoder.parameters())
    texts = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"]
    model.train()
    value = loss([_features(model, texts), _features(model, texts[::-1])])
    assert value.requires_grad and torch.isfinite(value)
    assert int(loss.queue.filled) == 4
    value.backward()
    assert all(p.grad is None for p in loss.key_encoder.parameters())
    model.eval()
    loss([_features(model, texts), _features(model, texts)])
    assert int(loss.queue.filled) == 4  # evaluation does not enqueue
    # With an empty queue and identical encoders the loss is plain in-batch InfoNCE.
    fresh = MoCoLoss(model, queue_size=0, momentum=0.0, temperature=0.05)
    with torch.no_grad():
        q = torch.nn.functional.normalize(model(_features(model, texts))["sentence_embedding"], dim=-1)
        expected = torch.nn.functional.cross_entropy(q @ q.T / 0.05, torch.arange(4))
        torch.testing.assert_close(fresh([_features(model, texts), _features(model, texts)]), expected)


# --- training through the trainer (tiny model) -------------------------------------------------

PASSAGES = [
    "the yeast ferments sugar in the warm dough and the bread rises slowly overnight",
    "the moon pulls the ocean water and the tides rise and fall twice every day",
    "honey bees dance in the hive to show the others where the flowers are",
    "volcanoes erupt when magma from deep below pushes up through the crust",
    "penguins huddle together on the ice to keep warm through the polar winter",
    "the heart pumps blood through arteries and veins to every organ of the body",
    "glaciers carve deep valleys as they slide slowly down the mountain sides",
    "photosynthesis turns sunlight water and carbon dioxide into sugar and oxygen",
    "the printing press spread books and ideas quickly across early modern europe",
    "lightning heats the air so fast that it expands with a crack of thunder",
    "coral reefs grow from the skeletons of tiny animals in warm shallow seas",
    "the roman aqueducts carried fresh water from the hills into the cities",
    "owls turn their heads far around because their eyes cannot move in the sockets",
    "a rainbow appears when sunlight is bent and reflected inside falling raindrops",
    "chess players open by moving pawns to control the centre of the board",
    "vaccines train the immune system to recognise a germ before an infection",
]


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_model_dir, tmp_path):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "out"
    # Long crops, so that a random 2-layer model learns to match two views within a few dozen steps.
    config = ContrastiveSettings(
        steps=24, batch_size=4, lr=3e-3, queue_size=4, momentum=0.9, save_steps=24, crop_min=0.6, crop_max=1.0
    )
    info = train_contrastive(PASSAGES, str(tiny_model_dir), out, config, progress=False, log=lambda _: None)
    assert info["steps"] == 24
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 25))
    # Step 1 has an empty queue (fewer negatives, a lower loss); from step 2 on the logits are the same size.
    losses = [r["loss"] for r in log]
    early, late = sum(losses[1:9]) / 8, sum(losses[-8:]) / 8
    assert late < early - 0.05, (early, late)
    assert json.loads((out / "training.json").read_text())["settings"]["queue_size"] == 4
    assert (out / "checkpoint-24" / "moco_state.safetensors").is_file()
    # The saved folder is a sentence-transformers model: loaded twice it embeds identically, and the
    # checkpoint holds the same weights.
    texts = ["bread and yeast", "ocean tides"]
    final = SentenceTransformer(str(out), device="cpu").encode(texts)
    again = SentenceTransformer(str(out), device="cpu").encode(texts)
    checkpoint = SentenceTransformer(str(out / "checkpoint-24"), device="cpu").encode(texts)
    np.testing.assert_array_equal(final, again)
    np.testing.assert_array_equal(final, checkpoint)


def test_resume_is_exact_and_continues_the_step_count(tiny_model_dir, tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    config = ContrastiveSettings(steps=6, batch_size=4, lr=2e-3, queue_size=6, momentum=0.9, save_steps=3)
    quiet = {"progress": False, "log": lambda _: None}
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_contrastive(PASSAGES, str(tiny_model_dir), whole, config, **quiet)
    # An interrupted run: everything after step 3 is lost, then --resume goes on from checkpoint-3.
    shutil.copytree(whole, parts, ignore=shutil.ignore_patterns("checkpoint-6"))
    (parts / "loss_log.jsonl").write_text(
        "".join(line + "\n" for line in (parts / "loss_log.jsonl").read_text().splitlines()[:3])
    )
    info = train_contrastive(PASSAGES, str(tiny_model_dir), parts, config, resume=True, **quiet)
    assert info["steps"] == 6 and info["resumed_from"].endswith("checkpoint-3")
    steps = [json.loads(line)["step"] for line in (parts / "loss_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    texts = ["bread and yeast", "ocean tides"]
    np.testing.assert_allclose(
        SentenceTransformer(str(parts), device="cpu").encode(texts),
        SentenceTransformer(str(whole), device="cpu").encode(texts),
        atol=1e-6,
    )
    resumed, uninterrupted = (
        load_file(str(p / "checkpoint-6" / "moco_state.safetensors")) for p in (parts, whole)
    )
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-6, rtol=1e-5)


def test_resume_without_moco_state_is_refused(tiny_model_dir, tmp_path):
    from rag.core.errors import InputFormatError

    config = ContrastiveSettings(steps=2, batch_size=4, queue_size=4, save_steps=1)
    out = tmp_path / "out"
    train_contrastive(PASSAGES, str(tiny_model_dir), out, config, progress=False, log=lambda _: None)
    for state in out.glob("checkpoint-*/moco_state.safetensors"):
        state.unlink()
    longer = ContrastiveSettings(steps=3, batch_size=4, queue_size=4, save_steps=1)
    with pytest.raises(InputFormatError, match="moco_state"):
        train_contrastive(PASSAGES, str(tiny_model_dir), out, longer, resume=True, progress=False, log=print)
