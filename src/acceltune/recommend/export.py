"""`acceltune recommend export MODEL_DIR --output DIR`: the sequence encoder and the item matrix as one ONNX graph.

The graph takes ``input_ids`` and ``attention_mask`` of shape (batch, length), length <= max_len: the last
``max_len`` items of each history as token ids (item index + 3), right-padded with 0, and returns ``scores``
(batch, items): the next-item scores with nothing excluded (exclusion is the caller's, as in the server). The
item matrix (ids and projected text) is a constant of the graph: export again after add-items. The export is
checked against the PyTorch model on random histories, padded to max_len and to a quarter of it, before it is
kept (max absolute difference of the scores). `acceltune recommend serve` serves the output directory with
ONNX Runtime.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from acceltune import ModelInfo
from acceltune.errors import UserError
from acceltune.recommend import artifacts
from acceltune.recommend.artifacts import ONNX_FILE
from acceltune.recommend.model import ITEM_OFFSET

EXPORT_FORMAT = "recommender-onnx"
PARITY_ATOL = 1e-3
PARITY_EXAMPLES = 16


class Scorer(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        with torch.no_grad():
            self.register_buffer("items", model.item_vectors().float())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.model.encode(input_ids, attention_mask, self.items)
        last = h[torch.arange(h.shape[0]), attention_mask.sum(1) - 1]
        return last @ self.items.T


def random_histories(num_items: int, max_len: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, max_len), np.int64)
    mask = np.zeros((n, max_len), np.int64)
    for r in range(n):
        length = int(rng.integers(1, max_len + 1))
        ids[r, :length] = rng.integers(0, num_items, length) + ITEM_OFFSET
        mask[r, :length] = 1
    return ids, mask


def export_onnx(model_dir: str | Path, output: str | Path) -> dict:
    """Write ``output``/recommender.onnx (+ the catalogue files); returns the parity check's numbers."""
    import onnxruntime as ort

    model, catalogue, meta = artifacts.load(model_dir)
    if model.config.objective != "causal":
        raise UserError("export supports --objective causal models (the masked objective's query token is not in the graph yet)")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output} exists and is not empty: choose another directory")
    output.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(model).eval()
    max_len = model.config.max_len
    ids, mask = random_histories(model.config.num_items, max_len, PARITY_EXAMPLES)
    short = max(1, max_len // 4)  # the server pads to the longest history of a batch, not to max_len
    short_ids, short_mask = random_histories(model.config.num_items, short, PARITY_EXAMPLES, seed=1)
    tmp = output / f".{ONNX_FILE}.tmp"
    with torch.no_grad():
        torch.onnx.export(scorer, (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2])), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["scores"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
                                        "scores": {0: "batch"}},
                          opset_version=17, dynamo=False)
        expected = [scorer(torch.from_numpy(i), torch.from_numpy(m)).numpy() for i, m in ((ids, mask), (short_ids, short_mask))]
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = [session.run(["scores"], {"input_ids": i, "attention_mask": m})[0] for i, m in ((ids, mask), (short_ids, short_mask))]
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
    same_top = float(np.mean(np.concatenate([np.argmax(g, 1) == np.argmax(e, 1) for g, e in zip(got, expected)])))
    if diff > PARITY_ATOL:
        tmp.unlink()
        raise UserError(f"the ONNX export differs from the model by {diff:.2e} (> {PARITY_ATOL}): not kept")
    tmp.replace(output / ONNX_FILE)
    for name in (artifacts.RECOMMENDER_FILE, artifacts.CATALOGUE_FILE, artifacts.ARRAYS_FILE):
        shutil.copy2(Path(model_dir) / name, output / name)
    parity = {"max_abs_diff": diff, "same_top1": same_top, "examples": 2 * PARITY_EXAMPLES, "lengths": [max_len, short],
              "items": model.config.num_items}
    info = ModelInfo.load(model_dir)
    replace(info, format=EXPORT_FORMAT, extra={"file": ONNX_FILE, "parity": parity}).save(output)
    return parity
