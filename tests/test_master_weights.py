"""bf16 weight copies: the numba update equals torch's fused AdamW, training equals autocast, state stays fp32."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from acceltune.speedups import master_weights
from acceltune.hardware import cpu_has_bf16

pytestmark = pytest.mark.skipif(master_weights.kernels() is None, reason="numba is not installed")


def bf16_bits(t: torch.Tensor):
    return t.contiguous().view(torch.uint16).view(-1).numpy()


@pytest.mark.parametrize("factor,weight_decay", [(1.0, 0.01), (0.37, 0.0)])
def test_kernel_matches_torch_fused_adamw(factor, weight_decay):
    k = master_weights.kernels()
    gen = torch.Generator().manual_seed(0)
    n = 70_001  # several parallel chunks and a ragged tail
    weight = torch.randn(n, generator=gen)
    exp_avg, exp_avg_sq = torch.zeros(n), torch.zeros(n)
    ref = [weight.clone(), exp_avg.clone(), exp_avg_sq.clone()]
    copy16 = weight.to(torch.bfloat16)
    step = torch.tensor(0.0)
    lr, beta1, beta2, eps = 1e-3, 0.9, 0.999, 1e-8
    for t in range(1, 4):
        grad16 = (torch.randn(n, generator=gen) * 10 ** -t).to(torch.bfloat16)
        k.adamw_update(bf16_bits(copy16), weight.numpy(), exp_avg.numpy(), exp_avg_sq.numpy(), bf16_bits(grad16), factor,
                       lr, beta1, beta2, eps, weight_decay, 1 - beta1 ** t, (1 - beta2 ** t) ** 0.5)
        step += 1  # torch.optim increments the step before its fused kernel reads it
        torch._fused_adamw_([ref[0]], [grad16.float() * factor], [ref[1]], [ref[2]], [], [step], lr=lr, beta1=beta1,
                            beta2=beta2, weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False)
        torch.testing.assert_close(weight, ref[0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(exp_avg, ref[1], rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(exp_avg_sq, ref[2], rtol=1e-5, atol=1e-12)
        assert torch.equal(copy16, weight.to(torch.bfloat16))  # the copy is torch's rounding of the new weight


def test_sum_of_squares_reads_bf16_in_fp32():
    g = (torch.randn(123_457) * 3).to(torch.bfloat16)
    expected = float(g.double().square().sum())
    assert master_weights.kernels().sum_of_squares(bf16_bits(g)) == pytest.approx(expected, rel=1e-5)


def tiny_batch(path: Path, n: int = 6):
    tok = AutoTokenizer.from_pretrained(path)
    texts = [f"message number {i} " + "word " * (i % 5) for i in range(n)]
    return tok(texts, padding=True, return_tensors="pt"), torch.arange(n) % 3


def train_steps(model, optimizer, batch, labels, steps: int, clip) -> list[float]:
    norms = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**batch).logits
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        norms.append(float(clip()))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return norms


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX-512 BF16 or AMX")
@pytest.mark.parametrize("fuse", [False, True])
def test_training_with_copies_equals_autocast_and_keeps_fp32_state(tiny_model_dir, fuse):
    # Unfused, the arithmetic is autocast's (to summation order); fused query/key/value round the input
    # gradient once instead of three times, so the runs drift apart by rounding only.
    tol = dict(norm=2e-2, weight=3e-4) if fuse else dict(norm=1e-4, weight=2e-5)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0)
    batch, labels = tiny_batch(tiny_model_dir)
    ref, fast = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    copies = master_weights.use_bf16_weight_copies(fast, fuse_projections=fuse)
    assert len(copies) == sum(type(m) is torch.nn.Linear for m in base.modules())
    groups = {id(m.group) for m in copies.values() if m.group is not None}
    assert len(groups) == (base.config.num_hidden_layers if fuse else 0)  # one query/key/value group per layer
    opt = master_weights.Bf16CopyAdamW(fast.parameters(), copies, lr=1e-3, weight_decay=0.01, fused=True)
    max_norm = 0.05  # small enough that every step clips
    ref_norms = train_steps(ref, ref_opt, batch, labels, 5, lambda: torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm))
    norms = train_steps(fast, opt, batch, labels, 5, lambda: opt.clip_grad_norm_(max_norm))
    assert min(norms) > max_norm
    assert norms == pytest.approx(ref_norms, rel=tol["norm"])
    a, b = ref.state_dict(), fast.state_dict()
    assert a.keys() == b.keys()  # same parameters, no copies in the state dict
    for name in a:
        assert b[name].dtype == a[name].dtype
        if fuse and name.endswith("key.bias"):
            continue  # its true gradient is 0 (softmax ignores a per-query shift): Adam turns rounding noise into full steps
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=tol["weight"], msg=name)
    assert set(opt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}  # torch AdamW's state: loads either way
    # The copy follows weights loaded from elsewhere (load_state_dict writes through copy_, bumping the version).
    fast.load_state_dict(base.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast.eval()
        expected = fast(**batch).logits
        fast.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(fast(**batch).logits.detach(), expected)


def test_copies_only_where_they_apply_and_autocast_otherwise(monkeypatch, tmp_path, tiny_model_dir):
    from helpers import write_labeled_csv

    from acceltune.config import DataArgs, ModelArgs, TrainArgs, TrainConfig
    from acceltune.training.loop import train

    used = []
    real = master_weights.use_bf16_weight_copies
    monkeypatch.setattr(master_weights, "use_bf16_weight_copies", lambda model: used.append(1) or real(model))
    data = write_labeled_csv(tmp_path / "d.csv", n_per_class=8)

    def run(name: str, **kw):
        cfg = TrainConfig(data=DataArgs(train=str(data)), model=ModelArgs(model=str(tiny_model_dir), max_length=32),
                          train=TrainArgs(output_dir=str(tmp_path / name), batch_size=4, max_steps=3, **kw))
        return train(cfg, quiet=True)

    if cpu_has_bf16():
        run("on", precision="bf16")
        assert used == [1]
        weights = load_file(tmp_path / "on" / "model.safetensors")
        assert all(t.dtype == torch.float32 for t in weights.values())  # the published model is the fp32 masters
    run("accumulating", precision="bf16" if cpu_has_bf16() else "fp32", grad_accumulation=2)
    run("off", precision="bf16" if cpu_has_bf16() else "fp32", bf16_weight_copies=False)
    monkeypatch.setattr(master_weights, "_KERNELS", False)  # as if numba were missing
    run("no-numba", precision="bf16" if cpu_has_bf16() else "fp32")
    assert used == ([1] if cpu_has_bf16() else [])
