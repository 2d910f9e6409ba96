"""`acceltune recommend export MODEL_DIR --output DIR`: the sequence encoder and the item matrix as one ONNX graph.

The graph takes ``input_ids`` and ``attention_mask`` of shape (batch, max_len): the last ``max_len`` items of
each history as token ids (item index + 3), right-padded with 0, and returns ``scores`` (batch, items): the
next-item scores with nothing excluded (exclusion is the caller's, as in the server). The item matrix (ids and
projected text) is a constant of the graph: export again after add-items. The export is checked against the
PyTorch model on random histories before it is kept (max absolute difference of the scores).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from acceltune.errors import UserError
from acceltune.recommend import artifacts
from acceltune.recommend.model import ITEM_OFFSET

ONNX_FILE = "recommender.onnx"
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
    tmp = output / f".{ONNX_FILE}.tmp"
    with torch.no_grad():
        torch.onnx.export(scorer, (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2])), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["scores"],
                          dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "scores": {0: "batch"}},
                          opset_version=17, dynamo=False)
        expected = scorer(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
    diff = float(np.max(np.abs(got - expected)))
    same_top = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
    if diff > PARITY_ATOL:
        tmp.unlink()
        raise UserError(f"the ONNX export differs from the model by {diff:.2e} (> {PARITY_ATOL}): not kept")
    tmp.replace(output / ONNX_FILE)
    for name in (artifacts.RECOMMENDER_FILE, artifacts.CATALOGUE_FILE, artifacts.ARRAYS_FILE):
        shutil.copy2(Path(model_dir) / name, output / name)
    return {"max_abs_diff": diff, "same_top1": same_top, "examples": PARITY_EXAMPLES, "max_len": max_len,
            "items": model.config.num_items}
