"""Numpy dropout masks: the rate, reproducibility, and a model that computes the same as before."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from acceltune.speedups import dropout


def test_mask_rate_scale_and_reproducibility():
    x = torch.ones(400, 1000)
    masks = dropout.MaskSource()
    masks.reseed(1, 0, 0, 1)
    a = dropout.numpy_dropout(x, 0.1, masks)
    masks.reseed(1, 0, 0, 1)
    b = dropout.numpy_dropout(x, 0.1, masks)
    masks.reseed(1, 0, 0, 2)
    c = dropout.numpy_dropout(x, 0.1, masks)
    keep = (a != 0).float().mean().item()
    assert abs(keep - 0.9) < 0.003
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.9))  # inverted dropout: expectation kept
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(dropout.numpy_dropout(x, 0.1, masks, training=False), x)
    assert torch.count_nonzero(dropout.numpy_dropout(x, 1.0, masks)) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kept_values_are_scaled_in_the_input_dtype(dtype):
    # bf16 multipliers are built as bit patterns in numpy: the result must be torch's own x * bf16(1/(1-p)).
    x = (torch.rand(64, 300) + 0.5).to(dtype)
    masks = dropout.MaskSource()
    masks.reseed(5)
    y = dropout.numpy_dropout(x, 0.1, masks)
    kept = y != 0
    assert y.dtype == dtype and 0.85 < kept.float().mean().item() < 0.95
    assert torch.equal(y[kept], (x * torch.tensor(1 / 0.9, dtype=dtype))[kept])


def test_gradient_flows_through_kept_elements_only():
    x = torch.randn(64, 32, requires_grad=True)
    masks = dropout.MaskSource()
    masks.reseed(3)
    y = dropout.numpy_dropout(x, 0.5, masks)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.count_nonzero(x.grad[~kept]) == 0


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_gpt2_model_dir"])
def test_patched_model_matches_the_original_in_eval_and_trains(fixture, request):
    path = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    patched = copy.deepcopy(model)
    masks = dropout.use_numpy_dropout(patched)
    assert sum(isinstance(m, dropout.NumpyDropout) for m in patched.modules()) > 0
    assert all(m.masks is masks for m in patched.modules() if isinstance(m, dropout.NumpyDropout))
    assert not any(type(m) is torch.nn.Dropout for m in patched.modules())
    batch = tok(["a much longer first text here", "short"], padding=True, return_tensors="pt")
    model.eval(), patched.eval()
    with torch.no_grad():  # padding masked alike: same logits
        torch.testing.assert_close(patched(**batch).logits, model(**batch).logits, rtol=0, atol=1e-5)
    patched.train()
    masks.reseed(0)
    out1 = patched(**batch).logits
    masks.reseed(0)
    out2 = patched(**batch).logits
    torch.testing.assert_close(out1, out2)  # the masks follow the seed
    masks.reseed(1)
    assert not torch.allclose(patched(**batch).logits, out1)  # and dropout is really on in training
    out1.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in patched.parameters())
    assert patched.state_dict().keys() == model.state_dict().keys()


def test_two_patched_models_in_one_process_draw_their_own_masks(tiny_model_dir):
    """Each model owns its mask source: using one model does not move the other's masks."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(["a first text", "and a second, longer one"], padding=True, return_tensors="pt")
    a = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).train()
    b = copy.deepcopy(a)
    masks_a, masks_b = dropout.use_numpy_dropout(a), dropout.use_numpy_dropout(b)
    assert masks_a is not masks_b
    masks_a.reseed(0)
    expected = a(**batch).logits
    masks_a.reseed(0)
    masks_b.reseed(0)
    b(**batch)  # draws from b's source only
    torch.testing.assert_close(a(**batch).logits, expected)
