"""The sequence recommender: a SASRec-style transformer over item sequences (causal, next-item targets) or
a BERT4Rec-style one (bidirectional, masked-item targets), plain PyTorch.

Items are the model's tokens: ids 0..2 are [PAD], [UNK], [MASK], id 3 + i is catalogue item i. An item's
vector is its id embedding plus a linear projection of its text embedding (computed once, kept in the
``item_text`` buffer), so an item never seen in training still has a vector from its text; the same
vectors embed the input sequence and score the next item (shared input and output embeddings, as SASRec).
During training the id part of each item is dropped with probability ``id_dropout``, so that the text
part alone learns to score: that is what a cold item has.
With ``cold_targets`` P the scored items keep their ids and a share P of the targets is scored from its text
alone instead: the model still learns to rank an item it has no id for, but not that an id-less item is a
likely negative (with id dropout on the scored items, almost every id-less item in training is one).

What forward returns (``.logits``):
- training, causal: one row per target (next items, in row-major order of the positions that have one),
  over every item, or with ``negatives`` N over [the target, N items drawn uniformly for the batch]
  (the target is column 0);
- training, masked: one row per [MASK] position (row-major), over every item;
- evaluation: one row per sequence, the scores of the next item after the last position, the sequence's
  own items excluded (metrics.EXCLUDED): the field's full-ranking protocol, and what serving asks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from acceltune.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[MASK]")
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
ITEM_OFFSET = len(SPECIAL_TOKENS)
OBJECTIVES = ("causal", "masked")
EXCLUDED = -1e9
"""Score of excluded items (finite: the cross-entropy of an excluded target stays a number)."""


@dataclass
class RecommenderConfig:
    num_items: int
    text_dim: int = 0
    """Width of the item text embeddings (0: id-only model)."""
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 200
    """Items of history the encoder reads (the most recent ones)."""
    dropout: float = 0.2
    id_dropout: float = 0.1
    objective: str = "causal"
    negatives: int = 0
    """0: full softmax over every item; N: sampled softmax over the target and N uniform negatives."""
    cold_targets: float = 0.0
    """Share of training targets scored from their text alone while every other item keeps its id (the
    inputs' ids are still dropped at id_dropout): the model learns to rank an item it has no id for, without
    learning that an id-less item is a likely negative. Causal objective, items with text."""

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.negatives < 0:
            raise UserError(f"--negatives must be 0 (full softmax) or positive, got {self.negatives}")
        if self.negatives and self.objective == "masked":
            raise UserError("--negatives works with --objective causal (the masked objective's targets are hidden from the model): drop one")
        if self.hidden % self.heads:
            raise UserError(f"--hidden {self.hidden} must be a multiple of --heads {self.heads}")
        for name in ("hidden", "blocks", "heads", "max_len"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.cold_targets and self.objective != "causal":
            raise UserError("--cold-targets works with --objective causal: drop one")
        if not 0 <= self.cold_targets <= 1:
            raise UserError(f"--cold-targets must be in [0, 1], got {self.cold_targets}")
        for name in ("dropout", "id_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")

    # What the training loop reads off a model's config.
    @property
    def max_position_embeddings(self) -> int:
        return MAX_INPUT_TOKENS

    @property
    def num_labels(self) -> int:
        return self.num_items

    def to_dict(self) -> dict:
        return asdict(self)


MAX_INPUT_TOKENS = 1 << 24
"""Longest token list the model accepts: any; it reads the last ``max_len`` and excludes all of them."""


@dataclass
class RecommenderOutput:
    logits: torch.Tensor


class Block(nn.Module):
    """Pre-norm transformer block: self-attention and a GELU feed-forward (SASRec's width)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.feed_forward_norm = nn.LayerNorm(hidden)
        self.up = nn.Linear(hidden, hidden)
        self.down = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        x = x + self.dropout(self.out(a.transpose(1, 2).reshape(b, length, d)))
        return x + self.dropout(self.down(self.dropout(F.gelu(self.up(self.feed_forward_norm(x))))))


class SequenceRecommender(nn.Module):
    def __init__(self, config: RecommenderConfig, item_text: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        d = config.hidden
        self.item_ids = nn.Embedding(ITEM_OFFSET + config.num_items, d, padding_idx=PAD_ID)
        nn.init.normal_(self.item_ids.weight, std=0.02)
        with torch.no_grad():
            self.item_ids.weight[PAD_ID].zero_()
        if config.text_dim:
            self.text_projection = nn.Linear(config.text_dim, d)
            text = item_text if item_text is not None else torch.zeros(config.num_items, config.text_dim)
            self.register_buffer("item_text", text.float().contiguous())
        self.positions = nn.Embedding(config.max_len + 1, d)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(d, config.heads, config.dropout) for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(d)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_ids

    def item_vectors(self, drop_ids: bool = True, text: torch.Tensor | None = None) -> torch.Tensor:
        """(num_items, hidden): id embedding (randomly dropped in training, unless ``drop_ids`` is False) plus
        projected text (``text``: that projection, when the caller has it already)."""
        ids = self.item_ids.weight[ITEM_OFFSET:]
        if drop_ids and self.training and self.config.id_dropout and self.config.text_dim:
            keep = torch.rand(ids.shape[0], 1, device=ids.device) >= self.config.id_dropout
            ids = ids * keep
        if self.config.text_dim:
            return ids + (self.text_projection(self.item_text) if text is None else text)
        return ids

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, length, hidden) of right-padded token ids."""
        table = torch.cat([self.item_ids.weight[:ITEM_OFFSET], items])
        length = input_ids.shape[1]
        x = F.embedding(input_ids, table) * math.sqrt(self.config.hidden)
        x = x + self.positions.weight[:length]
        x = self.input_dropout(x) * attention_mask.unsqueeze(-1).to(x.dtype)
        causal = self.config.objective == "causal"
        # Causal: right padding never reaches a real position. Bidirectional: padding keys are masked.
        mask = None if causal else attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask, causal)
        return self.final_norm(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> RecommenderOutput:
        cold_targets = self.config.cold_targets if self.training and self.config.text_dim else 0.0
        text = self.text_projection(self.item_text) if cold_targets else None  # projected once, used three times
        items = self.item_vectors(text=text)
        if not self.training:
            return RecommenderOutput(self.recommend(input_ids, attention_mask, items))
        if self.config.objective == "masked":
            h = self.encode(input_ids, attention_mask, items)
            return RecommenderOutput(h[input_ids == MASK_ID] @ items.T)
        # Causal: every position but the last predicts the next token; the last item is a target only.
        inputs, mask = input_ids[:, :-1], attention_mask[:, :-1]
        h = self.encode(inputs, mask, items)
        has_target = attention_mask[:, 1:].bool()
        h = h[has_target]
        targets = input_ids[:, 1:][has_target] - ITEM_OFFSET
        scored = self.item_vectors(drop_ids=False, text=text) if cold_targets else items
        if not self.config.negatives:
            logits, target_column = h @ scored.T, targets
        else:
            negatives = torch.randint(0, scored.shape[0], (self.config.negatives,), device=h.device)
            positive = (h * scored[targets]).sum(-1, keepdim=True)
            sampled = h @ scored[negatives].T
            sampled = sampled.masked_fill(negatives[None, :] == targets[:, None], EXCLUDED)  # an accidental hit is no negative
            logits, target_column = torch.cat([positive, sampled], dim=1), torch.zeros_like(targets)
        if cold_targets:
            rows = torch.nonzero(torch.rand(len(targets), device=h.device) < cold_targets).squeeze(1)
            logits = logits.index_put((rows, target_column[rows]), (h[rows] * text[targets[rows]]).sum(-1).to(logits.dtype))
        return RecommenderOutput(logits)

    def recommend(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, items: torch.Tensor | None = None,
                  exclude_history: bool = True) -> torch.Tensor:
        """(batch, num_items) next-item scores after each right-padded history (any length: the last
        ``max_len`` tokens are read), the history's own items excluded unless ``exclude_history`` is False."""
        items = self.item_vectors() if items is None else items
        lengths = attention_mask.sum(1)
        window = min(self.config.max_len, input_ids.shape[1])
        # The last `window` tokens of each history, right-padded again.
        offsets = torch.clamp(lengths - window, min=0)
        cols = offsets[:, None] + torch.arange(window, device=input_ids.device)[None, :]
        recent_mask = (torch.arange(window, device=input_ids.device)[None, :] < torch.clamp(lengths, max=window)[:, None]).long()
        recent = torch.gather(input_ids, 1, cols.clamp(max=input_ids.shape[1] - 1)) * recent_mask
        h = self.encode(recent, recent_mask, items)
        last = h[torch.arange(len(h), device=h.device), torch.clamp(recent_mask.sum(1) - 1, min=0)]
        scores = last.float() @ items.float().T
        if exclude_history:
            item_tokens = torch.where(input_ids >= ITEM_OFFSET, input_ids - ITEM_OFFSET, torch.zeros_like(input_ids))
            hit = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, item_tokens, input_ids >= ITEM_OFFSET)
            scores = scores.masked_fill(hit, EXCLUDED)
        return scores


class RecommendationLoss(nn.Module):
    """Cross-entropy of the model's logits. Training labels come as (batch, max_len) rows padded with -100:
    their non-padding entries, row-major, are the targets of the logits' rows. With sampled negatives the
    target is column 0. Evaluation labels are one target per row over every item."""

    def __init__(self, negatives: int):
        super().__init__()
        self.negatives = negatives

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() == 2:
            labels = labels[labels != -100]
            if self.negatives:
                labels = torch.zeros_like(labels)
        return F.cross_entropy(logits, labels)
