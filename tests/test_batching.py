"""The length-grouped sampler, the collator and up-front vs per-batch tokenization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acceltune import batching
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


def _splits(tmp_path, pair: bool):
    """Train split made from a CSV: it carries an indices mapping, as a real run's does."""
    import csv

    from helpers import write_labeled_csv

    from acceltune.config import DataArgs
    from acceltune.data import load_splits

    path = write_labeled_csv(tmp_path / "train.csv", n_per_class=20)
    if pair:  # a second text column: the row's words reversed
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "pair", "label"])
            w.writeheader()
            w.writerows({**r, "pair": " ".join(reversed(r["text"].split()))} for r in rows)
    splits = load_splits(DataArgs(train=str(path), text_pair_column="pair" if pair else None,
                                  validation_fraction=0.2, test_fraction=0.2), seed=3)
    assert splits.train._indices is not None
    return splits


@pytest.mark.parametrize("pair", [False, True])
def test_lazy_and_upfront_tokenization_give_identical_batches(tmp_path, tiny_model_dir, pair):
    from transformers import AutoTokenizer

    splits = _splits(tmp_path, pair)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    max_length = 8  # below the longest rows: truncation is part of what must match
    upfront = batching.BatchedArrowDataset(batching.tokenize(splits.train, tok, max_length, pair),
                                           (*batching.TOKEN_COLUMNS, "labels"))
    lazy = batching.LazyTokenizedDataset(splits.train, tok, max_length, pair)
    idx = [7, 0, 3, 20, 3]
    a, b = upfront.__getitems__(idx), lazy.__getitems__(idx)
    assert a == b and set(b) == {"input_ids", "token_type_ids", "labels"}
    assert max(len(x) for x in b["input_ids"]) == max_length
    assert lazy[7] == {k: v[0] for k, v in a.items()}
    # Through DataLoaders with one sampler; the lazy view in a worker process (the tokenizer travels with it).
    sampler = LengthGroupedSampler(batching.text_lengths(splits.train, pair), batch_size=5, seed=1)
    collator = Collator(tok.pad_token_id)
    up_batches = list(batching.make_loader(upfront, sampler, collator))
    lazy_batches = list(batching.make_loader(lazy, sampler, collator, num_workers=1))
    assert len(up_batches) == len(lazy_batches) == len(sampler)
    for x, y in zip(up_batches, lazy_batches):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_text_lengths_count_characters_in_mapped_order(tmp_path):
    splits = _splits(tmp_path, pair=True)
    rows = splits.train[:]
    expected = [len(t) + len(p) for t, p in zip(rows["text"], rows["text_pair"])]
    assert batching.text_lengths(splits.train, text_pair=True).tolist() == expected
    assert batching.text_lengths(splits.train, text_pair=False).tolist() == [len(t) for t in rows["text"]]


def test_auto_tokenizes_lazily_above_the_threshold(monkeypatch):
    monkeypatch.setattr(batching, "LAZY_ABOVE_ROWS", 10)
    assert batching.tokenize_lazily("auto", 11)
    assert not batching.tokenize_lazily("auto", 10)
    assert not batching.tokenize_lazily("upfront", 10**9)
    assert batching.tokenize_lazily("lazy", 2)


def test_tokenize_setting_is_validated():
    from acceltune.config import DataArgs
    from acceltune.errors import UserError

    with pytest.raises(UserError, match="--tokenize must be auto, upfront or lazy, got 'eager'"):
        DataArgs(tokenize="eager")
