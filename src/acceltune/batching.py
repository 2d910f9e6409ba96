"""Examples → batches: tokenize once (cached by datasets) or per batch (big data), bucket by length, pad per batch.

The sampler works on index lists, so skipping to a position inside an epoch (exact resume) costs
nothing, and it shards whole batches across data-parallel ranks so each example is seen once per
epoch across all of them.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import numpy as np
import torch

TOKEN_COLUMNS = ("input_ids", "token_type_ids")


LAZY_ABOVE_ROWS = 1_000_000
"""--tokenize auto tokenizes per batch above this many training rows (up front: ~25k rows per CPU-second
before the first step, and a token cache on disk; --tokenize's help names the number)."""


def tokenize_lazily(mode: str, rows: int) -> bool:
    """--tokenize (auto | upfront | lazy) resolved for a training split of `rows` examples."""
    return mode == "lazy" or (mode == "auto" and rows > LAZY_ABOVE_ROWS)


def encode(batch: dict[str, list], tokenizer, max_length: int, text_pair: bool) -> dict[str, list]:
    """input_ids (and token_type_ids when the model takes them) and length of a batch of texts, truncated."""
    needs_token_types = "token_type_ids" in tokenizer.model_input_names
    args = (batch["text"], batch["text_pair"]) if text_pair else (batch["text"],)
    enc = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=needs_token_types)
    out = {"input_ids": enc["input_ids"], "length": [len(x) for x in enc["input_ids"]]}
    if needs_token_types:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def tokenize(dataset, tokenizer, max_length: int, text_pair: bool, num_proc: int | None = None):
    """Adds input_ids (and token_type_ids) and length; drops the text columns. Cached by datasets."""
    drop = [c for c in ("text", "text_pair") if c in dataset.column_names]
    return dataset.map(encode, batched=True, batch_size=2000, remove_columns=drop, num_proc=num_proc,
                       fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "text_pair": text_pair},
                       desc="tokenizing", load_from_cache_file=True)


def column_array(dataset, name: str) -> np.ndarray:
    """A flat column (lengths, class labels) as a numpy array straight from Arrow, honouring an indices
    mapping. `np.asarray(dataset[name])` builds a Python list first: ~7 s per million rows and
    gigabytes for a file bigger than memory. Nested columns (multi-label lists) take that path."""
    import pyarrow as pa

    col = dataset.data.column(name)
    if pa.types.is_nested(col.type):
        return np.asarray(dataset[name])
    if dataset._indices is not None:
        col = col.take(dataset._indices.column(0))
    return col.to_numpy()


def text_lengths(dataset, text_pair: bool) -> np.ndarray:
    """Characters per example (text plus text_pair): the sampler's length proxy when tokenizing per batch.
    Arrow kernels over the memory-mapped table, seconds for tens of millions of rows. Good for grouping
    by length (only the order matters), not for a token budget."""
    import pyarrow.compute as pc

    lengths = pc.utf8_length(dataset.data.column("text"))
    if text_pair:
        lengths = pc.add(lengths, pc.utf8_length(dataset.data.column("text_pair")))
    if dataset._indices is not None:  # take the lengths, not the texts: taking texts would copy them into memory
        lengths = lengths.take(dataset._indices.column(0))
    return lengths.to_numpy()


def token_lengths(dataset, tokenizer, text_pair: bool, limit: int = 20000, seed: int = 0) -> np.ndarray:
    """Untruncated token lengths of (a sample of) the texts, to choose max_length from the data."""
    n = len(dataset)
    idx = np.random.default_rng(seed).choice(n, size=min(n, limit), replace=False) if n > limit else np.arange(n)
    rows = dataset[idx.tolist()] if n > limit else dataset[:]
    args = (rows["text"], rows["text_pair"]) if text_pair else (rows["text"],)
    enc = tokenizer(*args, truncation=False, return_attention_mask=False, return_token_type_ids=False)
    return np.array([len(x) for x in enc["input_ids"]])


def choose_max_length(lengths: np.ndarray, model_limit: int, percentile: float = 99.0) -> int:
    """The 99th percentile of the data's token lengths, rounded up to 8, capped by the model."""
    p = int(math.ceil(np.percentile(lengths, percentile))) if len(lengths) else model_limit
    return int(max(8, min(model_limit, -(-p // 8) * 8)))


class LengthGroupedSampler:
    """Yields lists of indices: batches of similar-length examples, shuffled between buckets.

    Each epoch: shuffle all indices (seed, epoch), cut into mega-batches of `bucket_batches`
    global batches, sort each by length, cut into global batches, shuffle the batch order. A global
    batch of batch_size * num_replicas examples is split into one contiguous slice per rank, so all
    ranks see examples of similar length and the same number of steps. With `max_tokens`, a batch
    whose padded size would exceed it is split (token budget). `group_by_length=False` gives plain
    random batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0,
                 group_by_length: bool = True, bucket_batches: int = 64, max_tokens: int | None = None,
                 shuffle: bool = True):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.group_by_length = group_by_length
        self.bucket_batches = bucket_batches
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def _epoch_plan(self) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's example order (global batches are its consecutive slices) and the order in which
        those global batches are visited. Two arrays, not a list of per-batch arrays: at tens of millions
        of rows a list costs ~100 bytes of Python object per batch on top of the indices."""
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if n < 2**31:  # same values, half the memory of the index arrays below (tens of millions of rows)
            order = order.astype(np.int32)
        gbs = self.batch_size * self.num_replicas
        if len(order) % self.num_replicas:  # every rank needs the same number of examples: repeat a few (as DistributedSampler)
            order = np.concatenate([order, order[: self.num_replicas - len(order) % self.num_replicas]])
        if self.group_by_length:
            mega = gbs * self.bucket_batches
            order = np.concatenate([
                chunk[np.argsort(-self.lengths[chunk], kind="stable")] for chunk in np.array_split(order, max(1, math.ceil(len(order) / mega)))
            ])
        count = math.ceil(len(order) / gbs)
        visit = rng.permutation(count) if self.group_by_length and self.shuffle else np.arange(count)
        return order, visit

    def _iter_global_batches(self) -> Iterator[np.ndarray]:
        order, visit = self._epoch_plan()
        gbs = self.batch_size * self.num_replicas
        for i in visit:
            yield order[i * gbs:(i + 1) * gbs]

    def global_batches(self) -> list[np.ndarray]:
        return list(self._iter_global_batches())

    def _split_by_budget(self, batch: np.ndarray) -> list[np.ndarray]:
        if not self.max_tokens:
            return [batch]
        return budget_batches(batch[np.argsort(-self.lengths[batch], kind="stable")], self.lengths, self.max_tokens)

    def _rank_batches(self) -> Iterator[np.ndarray]:
        for g in self._iter_global_batches():
            yield from self._split_by_budget(np.array_split(g, self.num_replicas)[self.rank])

    def batches(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch, from the start (ignores start_batch)."""
        return list(self._rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        for batch in itertools.islice(self._rank_batches(), self.start_batch, None):
            yield batch.tolist()

    def __len__(self) -> int:
        if self.max_tokens:
            return len(self.batches())
        n = len(self.lengths)
        per_rank = math.ceil(n / self.num_replicas)
        return math.ceil(per_rank / self.batch_size)


def budget_batches(order: np.ndarray, lengths: np.ndarray, max_tokens: int, max_batch_size: int | None = None) -> list[np.ndarray]:
    """Cut `order` (indices sorted longest first) into consecutive batches whose padded size, the first
    (longest) member's length times the batch size, stays within `max_tokens`; one example at least."""
    out, start = [], 0
    while start < len(order):
        size = max(1, max_tokens // max(int(lengths[order[start]]), 1))
        if max_batch_size:
            size = min(size, max_batch_size)
        out.append(order[start:start + size])
        start += size
    return out


def eval_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int, num_replicas: int = 1, rank: int = 0) -> list[np.ndarray]:
    """Length-sorted batches within a token budget, dealt round-robin to ranks (no duplicates)."""
    lengths = np.asarray(lengths)
    return budget_batches(np.argsort(-lengths, kind="stable"), lengths, max_tokens, max_batch_size)[rank::num_replicas]


class Collator:
    """Pads a batch of token lists to its longest member (a multiple of 8 on GPUs)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None, padding_side: str = "right",
                 multi_label: bool = False):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of
        self.left = padding_side == "left"
        self.multi_label = multi_label

    def __call__(self, rows: dict[str, list]) -> dict[str, torch.Tensor]:
        ids = rows["input_ids"]
        width = max(len(x) for x in ids)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        n = len(ids)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        types = torch.zeros((n, width), dtype=torch.long) if "token_type_ids" in rows else None
        for i, x in enumerate(ids):
            cols = slice(width - len(x), width) if self.left else slice(0, len(x))
            input_ids[i, cols] = torch.tensor(x, dtype=torch.long)
            attention[i, cols] = 1
            if types is not None:
                types[i, cols] = torch.tensor(rows["token_type_ids"][i], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if types is not None:
            batch["token_type_ids"] = types
        if "labels" in rows:
            batch["labels"] = torch.tensor(rows["labels"], dtype=torch.float if self.multi_label else torch.long)
        return batch


class BatchedArrowDataset(torch.utils.data.Dataset):
    """Fetches a whole batch with one Arrow take (DataLoader calls __getitems__ with the batch's indices)."""

    def __init__(self, dataset, columns: Sequence[str]):
        self.dataset = dataset.with_format(None).select_columns([c for c in columns if c in dataset.column_names])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> dict[str, list]:
        return self.dataset[indices]

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index]


class LazyTokenizedDataset(BatchedArrowDataset):
    """Tokenizes each batch as the DataLoader fetches it (one Arrow take of texts and labels): no pass over
    the whole training set before the first step and no token cache. Same rows as `tokenize`'s output."""

    def __init__(self, dataset, tokenizer, max_length: int, text_pair: bool):
        super().__init__(dataset, ("text", "text_pair", "labels"))
        self.encoding = {"tokenizer": tokenizer, "max_length": max_length, "text_pair": text_pair}

    def __getitems__(self, indices: list[int]) -> dict[str, list]:
        rows = self.dataset[indices]
        out = encode(rows, **self.encoding)
        del out["length"]  # the sampler has its lengths already
        return {**out, "labels": rows["labels"]}

    def __getitem__(self, index: int) -> dict:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def make_loader(view: torch.utils.data.Dataset, batch_sampler, collator, num_workers: int = 0, pin_memory: bool = False):
    """`view`: a BatchedArrowDataset of tokenized rows or a LazyTokenizedDataset."""
    return torch.utils.data.DataLoader(
        view,
        batch_sampler=batch_sampler,
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # Its own generator: creating an iterator must not draw from the global RNG (exact resume).
        generator=torch.Generator(),
    )
