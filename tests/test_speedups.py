"""acceltune.speedups.prepare: the same parts on every device, plain where a speed-up does not apply."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from acceltune import speedups
from acceltune.config import TrainArgs
from acceltune.speedups import dropout, master_weights


def fake_accelerator(device: str, processes: int = 1):
    clipped = []

    def clip_grad_norm_(params, max_norm):
        clipped.append(max_norm)
        return torch.nn.utils.clip_grad_norm_(list(params), max_norm)

    return SimpleNamespace(device=torch.device(device), num_processes=processes, process_index=0,
                           clip_grad_norm_=clip_grad_norm_, clipped=clipped)


def groups(model):
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


@pytest.mark.parametrize("device,processes", [("cuda", 1), ("cpu", 2)])
def test_where_no_weight_copies_apply_the_parts_are_torch_adamw_and_accelerate_clipping(tiny_model_dir, device, processes):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    accelerator = fake_accelerator(device, processes)
    fast = speedups.prepare(model, groups(model), TrainArgs(), SimpleNamespace(name="bf16"), accelerator)
    assert fast.model is model and type(fast.optimizer) is torch.optim.AdamW
    assert not any(isinstance(m, master_weights.Bf16CopyLinear) for m in model.modules())
    assert any(isinstance(m, dropout.NumpyDropout) for m in model.modules()) == (device == "cpu")
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    fast.clip(model, 1.0)
    assert accelerator.clipped == [1.0]
    assert fast.clip(model, 0.0) is None and accelerator.clipped == [1.0]  # 0 disables clipping
    fast.before_micro_batch(0, 1)
    fast.after_training()
    assert "bf16 weight copies" not in fast.names


def test_numpy_dropout_masks_follow_the_per_micro_batch_hook(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).train()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(["a few words here", "and some more"], padding=True, return_tensors="pt")
    fast = speedups.prepare(model, groups(model), TrainArgs(seed=1), SimpleNamespace(name="fp32"), fake_accelerator("cpu"))
    fast.before_micro_batch(0, 1)
    first = model(**batch).logits
    fast.before_micro_batch(0, 2)
    second = model(**batch).logits
    fast.before_micro_batch(0, 1)
    torch.testing.assert_close(model(**batch).logits, first)  # (epoch, batch) decides the masks
    assert not torch.allclose(first, second)


@pytest.mark.skipif(master_weights.kernels() is None, reason="numba is not installed")
def test_bf16_weight_copies_bring_their_optimizer_and_clip(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    accelerator = fake_accelerator("cpu")
    fast = speedups.prepare(model, groups(model), TrainArgs(), SimpleNamespace(name="bf16"), accelerator)
    assert isinstance(fast.optimizer, master_weights.Bf16CopyAdamW) and fast.names == ["bf16 weight copies"]
    assert any(isinstance(m, master_weights.Bf16CopyLinear) for m in model.modules())  # classes changed in place
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=torch.tensor([[1, 2, 3]])).logits.float().sum().backward()
    norm = fast.clip(model, 1e-3)
    assert norm is not None and accelerator.clipped == []  # clipping inside the update, not accelerate's
    assert fast.optimizer._clip_factor < 1.0
    fast.optimizer.step()
    assert fast.optimizer._clip_factor == 1.0  # used by this step only
