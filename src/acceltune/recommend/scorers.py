"""What scores a batch of histories for the Recommender: the PyTorch model of a trained directory, or the ONNX
graph of its export (`acceltune recommend export`). Both take right-padded token ids (batch, length) and return
(batch, items) float32 next-item scores with nothing excluded; test_recommend checks that they agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from acceltune.recommend import artifacts


class TorchScorer:
    """The trained model; the item vectors are computed once."""

    backend = "torch"

    def __init__(self, model, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self.model = model
        with torch.inference_mode():
            self.items = self.model.item_vectors().float()

    def __call__(self, ids: np.ndarray) -> torch.Tensor:
        ids = torch.from_numpy(ids)
        with torch.inference_mode():
            return self.model.recommend(ids, (ids != 0).long(), self.items, exclude_history=False)


class OnnxScorer:
    """ONNX Runtime on the CPU (``threads`` intra-op threads; None: every usable core). It runs without the GIL,
    so the event loop keeps answering while a batch is scored."""

    backend = "onnx"

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        from acceltune import onnx_session_options
        from acceltune.extras import require

        ort = require("onnxruntime", "export")
        self.session = ort.InferenceSession(str(Path(model_dir) / artifacts.ONNX_FILE), onnx_session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, ids: np.ndarray) -> torch.Tensor:
        mask = (ids != 0).astype(np.int64)
        return torch.from_numpy(self.session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0])
