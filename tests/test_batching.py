"""The length-grouped sampler and the collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acceltune.batching import Collator, LengthGroupedSampler, choose_max_length, eval_batches


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(3, 60, size=503)


@pytest.mark.parametrize("group", [True, False])
def test_every_example_exactly_once_per_epoch(lengths, group):
    s = LengthGroupedSampler(lengths, batch_size=16, seed=1, group_by_length=group)
    for epoch in range(3):
        s.set_epoch(epoch)
        seen = [i for b in s for i in b]
        assert sorted(seen) == list(range(len(lengths)))
        assert len(list(s)) == len(s)


def test_deterministic_for_a_seed_and_different_across_epochs(lengths):
    a, b = LengthGroupedSampler(lengths, 16, seed=3), LengthGroupedSampler(lengths, 16, seed=3)
    assert [x for x in a] == [x for x in b]
    b.set_epoch(1)
    assert [x for x in a] != [x for x in b]
    assert [x for x in a] != [x for x in LengthGroupedSampler(lengths, 16, seed=4)]


def test_grouping_reduces_padding(lengths):
    def padded(sampler):
        return sum(len(b) * max(lengths[b]) for b in sampler)

    grouped = padded(LengthGroupedSampler(lengths, 32, seed=0))
    random_ = padded(LengthGroupedSampler(lengths, 32, seed=0, group_by_length=False))
    assert grouped < 0.8 * random_
    assert grouped >= lengths.sum()


def test_batches_are_shuffled_between_buckets(lengths):
    maxima = [max(lengths[b]) for b in LengthGroupedSampler(lengths, 16, seed=0)]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)


def test_resume_inside_an_epoch_skips_exactly(lengths):
    s = LengthGroupedSampler(lengths, 16, seed=5)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=7)
    assert list(s) == full[7:]


def test_respects_token_budget(lengths):
    s = LengthGroupedSampler(lengths, 64, seed=0, max_tokens=512)
    batches = list(s)
    assert all(len(b) * max(lengths[b]) <= 512 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_the_data_once_across_ranks(lengths, world):
    per_rank = [list(LengthGroupedSampler(lengths, 8, seed=2, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1, "every rank must take the same number of steps"
    seen = [i for p in per_rank for b in p for i in b]
    assert set(seen) == set(range(len(lengths)))
    assert len(seen) - len(lengths) < world, "only the remainder may repeat"
    # The ranks' step-k batches together are the single-process batch k of size 8 * world (same global batch).
    even = lengths[:480]
    per_rank = [list(LengthGroupedSampler(even, 8, seed=2, num_replicas=world, rank=r)) for r in range(world)]
    single = list(LengthGroupedSampler(even, 8 * world, seed=2))
    assert len(single) == len(per_rank[0])
    for k in range(len(single)):
        assert sorted(i for p in per_rank for i in p[k]) == sorted(single[k])


def test_eval_batches_partition_without_duplicates(lengths):
    for world in (1, 2, 3):
        parts = [eval_batches(lengths, 1024, 64, world, r) for r in range(world)]
        seen = [int(i) for p in parts for b in p for i in b]
        assert sorted(seen) == list(range(len(lengths)))


def test_collator_pads_to_the_longest_and_masks():
    c = Collator(pad_token_id=0)
    batch = c({"input_ids": [[101, 5, 102], [101, 102]], "token_type_ids": [[0, 0, 0], [0, 0]], "labels": [2, 0]})
    assert batch["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].dtype == torch.long
    c8 = Collator(pad_token_id=0, pad_to_multiple_of=8, padding_side="left", multi_label=True)
    batch = c8({"input_ids": [[7, 8, 9]], "labels": [[1.0, 0.0]]})
    assert batch["input_ids"].shape == (1, 8) and batch["input_ids"][0, -3:].tolist() == [7, 8, 9]
    assert batch["labels"].dtype == torch.float


def test_max_length_from_the_data():
    assert choose_max_length(np.array([10] * 99 + [300]), 512) == 16
    assert choose_max_length(np.array([1000] * 10), 512) == 512
