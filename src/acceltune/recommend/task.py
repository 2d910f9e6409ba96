"""Sequential recommendation as a Task of the core training loop (acceltune.train(config, task=...)).

Items are the words of a user's "sentence": the examples' ``text`` is their item indices, the tokenizer a
word-level vocabulary over the catalogue (built from the splits), so the loop's tokenization, length-grouped
batches, padding, precision, checkpoints and resume apply unchanged. Training examples are windows of each
user's training events (causal: next-item targets at every position; masked: copies with items replaced by
[MASK]); validation and test examples are one per split user, the label the held-out item.
The validation and test logits come back from the model with the history excluded, so the Task's metrics
are the full-ranking ones; finalize adds the baselines on the same split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from acceltune import Task
from acceltune.errors import UserError
from acceltune.recommend import artifacts
from acceltune.recommend.data import (Catalogue, InteractionColumns, Interactions, LeaveOneOut, leave_one_out,
                                      read_interactions, read_items)
from acceltune.recommend.metrics import evaluation_rows, rows_metrics
from acceltune.recommend.model import (ITEM_OFFSET, MASK_ID, SPECIAL_TOKENS, RecommendationLoss, RecommenderConfig,
                                       SequenceRecommender)

SELECTION_METRIC = "ndcg@10"


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


DEFAULT_COLD_TARGETS = 0.1
"""Measured on MovieLens' cold split (docs/recommend.md): cold items then take about their share of the top-10
slots, at no measurable cost to the others; 0.2 lets them crowd the known items out."""


@dataclass
class RecommendSettings:
    """What `acceltune recommend train` adds to the core's TrainConfig (data columns, the model's shape)."""

    items: str | None = _f(None, "items file (CSV/TSV/Parquet): an id column and text fields (title, genres, description, ...)")
    user_column: str | None = _f(None, "user column of --interactions (default: detected: user_id, userId, user, ...)")
    item_column: str | None = _f(None, "item column of --interactions (default: detected: item_id, movieId, item, ...)")
    timestamp_column: str | None = _f(None, "timestamp column, numeric (default: detected: timestamp, time, ts, ...)")
    rating_column: str | None = _f(None, "rating column for --min-rating (default: detected: rating, score, stars)")
    min_rating: float | None = _f(None, "keep only interactions rated at least this (default: keep all)")
    item_id_column: str | None = _f(None, "id column of --items (default: detected: item_id, id, movieId, ...)")
    item_text_columns: list[str] | None = _f(None, "text columns of --items (default: every column but the id)")
    hidden: int = _f(64, "width of item vectors and of the transformer")
    blocks: int = _f(2, "transformer blocks")
    heads: int = _f(2, "attention heads per block")
    max_len: int = _f(200, "most recent items of a history the model reads")
    dropout: float = _f(0.2, "dropout on embeddings, attention output and feed-forward")
    id_dropout: float = _f(0.1, "with item text: share of items whose id embedding is dropped per step, so text alone learns to score (cold start)")
    cold_targets: float | None = _f(None, f"with item text: share of training targets scored from their text alone, every other item keeping its id, for cold start (default: {DEFAULT_COLD_TARGETS} with the causal objective; 0: off)")
    objective: str = _f("causal", "causal (SASRec: next item at every position) or masked (BERT4Rec: hidden items from both sides)")
    negatives: int = _f(0, "0: full softmax over every item; N: sampled softmax over the target and N uniform negatives (huge catalogues; causal only)")
    mask_probability: float = _f(0.2, "masked objective: share of items hidden per training copy")
    masked_copies: int = _f(10, "masked objective: masked copies of each training sequence (BERT4Rec's dupe factor)")
    max_validation_users: int = _f(10_000, "validate during training on at most this many users (sampled); test uses all")
    text: bool = _f(True, "use the items' text (--no-text: id-only, even with --items)")

    def __post_init__(self):
        if self.cold_targets is None:
            self.cold_targets = DEFAULT_COLD_TARGETS if self.objective == "causal" else 0.0
        self.model_config(1)  # validates the model's shape
        if not 0 < self.mask_probability < 1:
            raise UserError(f"--mask-probability must be in (0, 1), got {self.mask_probability}")
        if self.masked_copies < 1 or self.max_validation_users < 1:
            raise UserError("--masked-copies and --max-validation-users must be positive")

    def model_config(self, num_items: int, text_dim: int = 0) -> RecommenderConfig:
        return RecommenderConfig(num_items=num_items, text_dim=text_dim, hidden=self.hidden, blocks=self.blocks,
                                 heads=self.heads, max_len=self.max_len, dropout=self.dropout, id_dropout=self.id_dropout,
                                 objective=self.objective, negatives=self.negatives, cold_targets=self.cold_targets)

    def columns(self) -> InteractionColumns:
        return InteractionColumns(self.user_column, self.item_column, self.timestamp_column, self.rating_column, self.min_rating)


@dataclass
class RecommendationSplits:
    """The core's Splits fields plus what the recommender's steps need (duck-typed: the loop reads the first six)."""

    train: object
    validation: object
    test: object
    interactions: Interactions
    split: LeaveOneOut
    validation_users: np.ndarray
    """Indices into split.eval_users of the users in the validation dataset (all of them, or a sample)."""
    labels: list = field(default_factory=list)
    multi_label: bool = False
    text_pair: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def catalogue(self) -> Catalogue:
        return self.interactions.catalogue


def item_words(items: np.ndarray) -> str:
    return " ".join(map(str, items.tolist()))


def causal_windows(seq: np.ndarray, max_len: int):
    """(tokens, targets) windows covering every next-item transition of ``seq`` once, newest first."""
    end = len(seq)
    while end >= 2:
        chunk = seq[max(0, end - max_len - 1):end]
        yield chunk, chunk[1:]
        end -= max_len


def padded(targets: np.ndarray, width: int) -> np.ndarray:
    row = np.full(width, -100, dtype=np.int64)
    row[:len(targets)] = targets
    return row


def label_rows(rows: list[np.ndarray], width: int) -> np.ndarray:
    """(examples, width) int64: one array, not lists of Python ints (10M events: ~0.6 GB less while building)."""
    return np.stack(rows) if rows else np.zeros((0, width), dtype=np.int64)


def training_examples(train: list[np.ndarray], settings: RecommendSettings, seed: int) -> dict[str, list]:
    texts, labels = [], []
    width = settings.max_len
    if settings.objective == "causal":
        for seq in train:
            for tokens, targets in causal_windows(seq, width):
                texts.append(item_words(tokens))
                labels.append(padded(targets, width))
        return {"text": texts, "labels": label_rows(labels, width)}
    rng = np.random.default_rng(seed)
    for seq in train:
        for end in range(len(seq), 0, -width):
            window = seq[max(0, end - width):end]
            masks = [rng.random(len(window)) < settings.mask_probability for _ in range(settings.masked_copies)]
            last = np.zeros(len(window), bool)
            last[-1] = True  # BERT4Rec's extra copy with only the last item masked: the inference-time task
            for m in [*masks, last]:
                if not m.any():
                    m[rng.integers(len(window))] = True
                words = [SPECIAL_TOKENS[MASK_ID] if hide else str(i) for i, hide in zip(window.tolist(), m)]
                texts.append(" ".join(words))
                labels.append(padded(window[m], width))
    return {"text": texts, "labels": label_rows(labels, width)}


def evaluation_examples(histories: list[np.ndarray], targets: np.ndarray, objective: str) -> dict[str, list]:
    suffix = f" {SPECIAL_TOKENS[MASK_ID]}" if objective == "masked" else ""
    return {"text": [item_words(h) + suffix for h in histories], "labels": targets.tolist()}


def item_tokenizer(num_items: int):
    """A word-level tokenizer whose words are item indices: "17" -> token id 17 + ITEM_OFFSET."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({str(i): i + ITEM_OFFSET for i in range(num_items)})
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[1]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=SPECIAL_TOKENS[0], unk_token=SPECIAL_TOKENS[1],
                                   mask_token=SPECIAL_TOKENS[2], model_input_names=["input_ids", "attention_mask"],
                                   model_max_length=1 << 24, padding_side="right")


class SequentialRecommendation(Task):
    """Next-item recommendation over users' interaction sequences (see the module docstring)."""

    head_modules = ()  # nothing pretrained: one learning rate for the whole model

    def __init__(self, settings: RecommendSettings | None = None, text_cache_dir: str | Path | None = None):
        """``text_cache_dir``: where the item text embeddings are kept between runs (the output directory:
        a resumed run does not encode the catalogue again); None: encoded every run."""
        self.settings = settings or RecommendSettings()
        self.text_cache_dir = text_cache_dir

    def read(self, interactions_path: str) -> Interactions:
        s = self.settings
        items = read_items(s.items, s.item_id_column, s.item_text_columns) if s.items else None
        return read_interactions(interactions_path, s.columns(), items, s.items)

    def load_splits(self, data_args, seed: int) -> RecommendationSplits:
        import datasets

        if data_args.train is None:
            raise UserError("no interactions file: pass --interactions FILE (user, item, timestamp columns)")
        data = self.read(data_args.train)
        split = leave_one_out(data.sequences)
        notes = [*data.notes, f"{len(data.users)} users, {len(data.catalogue)} items, {data.num_events} interactions; "
                 f"leave-one-out: {len(split.eval_users)} users with validation and test items"]
        if split.short_users:
            notes.append(f"{split.short_users} user(s) with fewer than 3 interactions: training only (no validation or test item)")
        if len(split.eval_users) == 0:
            raise UserError(f"{data_args.train}: no user has 3 or more interactions, so nothing can be validated or tested: "
                            "give more history per user")
        rng = np.random.default_rng(seed)
        val_rows = np.arange(len(split.eval_users))
        if len(val_rows) > self.settings.max_validation_users:
            val_rows = np.sort(rng.choice(val_rows, self.settings.max_validation_users, replace=False))
            notes.append(f"validation during training on {len(val_rows)} sampled users (--max-validation-users); test on all")
        val_hist = [split.history(int(split.eval_users[r]), "validation") for r in val_rows]
        test_hist = [split.history(int(u), "test") for u in split.eval_users]
        objective = self.settings.objective
        train = datasets.Dataset.from_dict(training_examples(split.train, self.settings, seed))
        if len(train) == 0:
            raise UserError(f"{data_args.train}: no user has two training interactions in a row: nothing to learn from")
        validation = datasets.Dataset.from_dict(evaluation_examples(val_hist, split.validation_targets[val_rows], objective))
        test = datasets.Dataset.from_dict(evaluation_examples(test_hist, split.test_targets, objective))
        return RecommendationSplits(train, validation, test, data, split, val_rows, notes=notes)

    def load_tokenizer(self, model_path: str, splits: RecommendationSplits, trust_remote_code: bool):
        return item_tokenizer(len(splits.catalogue))

    def build_model(self, model_path: str, splits: RecommendationSplits, tokenizer, trust_remote_code: bool) -> nn.Module:
        import torch

        catalogue = splits.catalogue
        text = None
        if self.settings.text and catalogue.has_text:
            from acceltune.recommend.text import cached_text_embeddings

            text = torch.from_numpy(cached_text_embeddings(model_path, catalogue.texts, self.text_cache_dir))
        config = self.settings.model_config(len(catalogue), 0 if text is None else text.shape[1])
        model = SequenceRecommender(config, text)
        # Not weights, but part of the model directory: which item each row is, and what serving starts from.
        model.catalogue = artifacts.Catalogue.from_interactions(splits.interactions)
        return model

    def float_labels(self, splits) -> bool:
        return False

    def loss_function(self, splits, args, model) -> nn.Module:
        return RecommendationLoss(self.settings.negatives)

    def selection_metric(self, args) -> str:
        return "loss" if args.early_stopping_metric == "loss" else SELECTION_METRIC

    def eval_outputs(self, logits, labels):
        """A score per catalogue item is too wide to keep for every user: the rank, loss and top 10 of each."""
        return evaluation_rows(logits, labels)

    def metrics(self, logits: np.ndarray, labels: np.ndarray, splits, detailed: bool) -> dict:
        return rows_metrics(logits, len(splits.catalogue))

    def model_info(self, splits, max_length: int, version: str):
        from acceltune import ModelInfo

        return ModelInfo(labels=[], max_length=self.settings.max_len, version=version, format="recommender")

    def save_model(self, model_dir: Path, model: nn.Module, tokenizer, info, config) -> None:
        """The recommender's files (artifacts) and acceltune.json; the loop keeps training_config.yaml beside them."""
        artifacts.save(model_dir, model, model.catalogue, text_encoder=config.model.model, settings=asdict(self.settings))
        info.save(model_dir)

    def finalize(self, output_dir: Path, splits, config, metrics: dict) -> None:
        """The baselines on the same split, into metrics.json."""
        from acceltune.recommend.report import add_baselines

        add_baselines(metrics, splits)

    def write_report(self, output_dir: Path, metrics: dict, history: list[dict], splits, split: str, title: str) -> None:
        from acceltune.recommend.report import write_recommend_report

        write_recommend_report(output_dir, metrics, history, splits, title)

    def eval_line(self, metrics: dict) -> str:
        return (f"validation NDCG@10 {metrics['ndcg@10']:.4f} · HR@10 {metrics['hr@10']:.4f} · "
                f"MRR {metrics['mrr']:.4f} · loss {metrics['loss']:.4f}")
