"""Data-parallel training with two CPU processes (gloo), through the real launcher.

One module-scoped set of runs (about 1.5 minutes on two cores) backs the end-to-end tests:
  single  in-process, 1 process, batch 6            (the reference)
  multi   `acceltune train --nproc-per-node 2`, batch 3 per process (same global batch, same seed)
  part    the same through `launch` with a test Task whose loss raises SIGINT in each process during
          step 5 (a real interruption, through the loop's own handler), then resumed under
          `torchrun -m acceltune train --resume --nproc-per-node 2` (no relaunch inside torchrun)
The model has no dropout: dropout masks differ by rank, so only then are the runs comparable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from acceltune.batching import LengthGroupedSampler
from acceltune.config import DataArgs, ModelArgs, TrainArgs, TrainConfig
from acceltune.training.loop import train
from conftest import make_tiny_bert_dir
from helpers import write_labeled_csv

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

STEPS, STOP_AT = 8, 5
# 60 rows, 20% validation, 20% test: 36 training examples = 6 global batches of 6 per epoch, 3 steps
# per epoch with accumulation 2; the run spans three epochs and the interruption lands mid-epoch.
COMMON = dict(max_length=32, max_steps=STEPS, eval_every=4, save_every=4, log_every=2, seed=7, grad_accumulation=2,
              validation_fraction=0.2, test_fraction=0.2, learning_rate=5e-4, device="cpu",
              precision="fp32")  # bf16 rounding depends on the batch shape: exact equality needs fp32


def make_dropout_free_bert_dir(path: Path) -> Path:
    """tests/conftest.py's tiny BERT with dropout 0: the same forward pass on every rank."""
    make_tiny_bert_dir(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=None)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def flags(**kw) -> list[str]:
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [f"{flag}={v}"]
    return out


def run(argv: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def acceltune_train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(["-m", "acceltune", "train", *args], env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_labeled_csv(root / "train.csv", n_per_class=20)
    model = make_dropout_free_bert_dir(root / "model")
    common = flags(train=data, model=model, **COMMON)
    out = {"root": root}

    # The reference: one process, twice the per-process batch.
    cfg = TrainConfig(data=DataArgs(train=str(data), validation_fraction=0.2, test_fraction=0.2),
                      model=ModelArgs(model=str(model), max_length=32),
                      train=TrainArgs(output_dir=str(root / "single"), batch_size=6,
                                      **{k: v for k, v in COMMON.items() if k not in ("max_length", "validation_fraction", "test_fraction")}))
    train(cfg, quiet=True)

    out["multi"] = acceltune_train(*common, "--batch-size=3", "--nproc-per-node=2", f"--output-dir={root / 'multi'}")
    part_config = root / "part.yaml"
    TrainConfig(data=DataArgs(train=str(data), validation_fraction=0.2, test_fraction=0.2),
                model=ModelArgs(model=str(model), max_length=32),
                train=TrainArgs(output_dir=str(root / "part"), batch_size=3, nproc_per_node=2,
                                **{k: v for k, v in COMMON.items() if k not in ("max_length", "validation_fraction", "test_fraction")})
                ).save(part_config)
    # The library's launcher with a Task by import path (tests/ on the workers' path): what an application does.
    out["part"] = run(["-c", "import sys; from acceltune.config import TrainConfig; from acceltune.training.launch import launch; "
                       f"sys.exit(launch(TrainConfig.load(sys.argv[1]), 'test_task:InterruptingClassificationAt{STOP_AT}')[0])",
                       str(part_config)], env={"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])})
    latest = root / "part" / "checkpoints" / "latest"
    out["part_latest"] = latest.read_text().strip() if latest.is_file() else None
    # Resume under torchrun itself: acceltune must see the launcher's environment and not relaunch.
    out["resumed"] = run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "acceltune", "train",
                          *common, "--batch-size=3", "--nproc-per-node=2", f"--output-dir={root / 'part'}", "--resume"])
    out["user_error"] = acceltune_train(*flags(train=root / "missing.csv", model=model, device="cpu"), "--nproc-per-node=2",
                                        f"--output-dir={root / 'bad'}")
    return out


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def assert_ok(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_same_metrics(a: dict, b: dict):
    for split in ("validation", "test"):
        assert a[split]["examples"] == b[split]["examples"]
        for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1"):
            assert a[split][key] == b[split][key], (split, key)
        assert a[split]["loss"] == pytest.approx(b[split]["loss"], rel=1e-5), split


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    assert_ok(runs["multi"])
    root = runs["root"]
    single, multi = weights(root / "single"), weights(root / "multi")
    assert single.keys() == multi.keys()
    for k in single:
        torch.testing.assert_close(multi[k], single[k], rtol=0, atol=1e-5, msg=k)
    m1, m2 = metrics(root / "single"), metrics(root / "multi")
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["global_steps"] == STEPS and m2["best_step"] == m1["best_step"]
    assert_same_metrics(m2, m1)  # gathered across ranks without padding duplicates
    # The logged training loss is the mean over both ranks' shards, as one process computes it.
    def losses(d):
        return [r["loss"] for r in map(json.loads, (d / "log.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    np.testing.assert_allclose(losses(root / "multi"), losses(root / "single"), rtol=1e-5)


def test_rank_zero_writes_every_file_once(runs):
    assert_ok(runs["multi"])
    root = runs["root"]
    multi = root / "multi"
    lines = (multi / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))
    records = Counter((r["kind"], r["step"]) for r in map(json.loads, lines))
    assert max(records.values()) == 1, records
    assert records == Counter((r["kind"], r["step"]) for r in map(json.loads, (root / "single" / "log.jsonl").read_text().splitlines()))
    assert len(list((multi / "logs").glob("events.out.tfevents.*"))) == 1
    # The same files as a one-process run; the checkpoint adds one RNG state per rank, nothing else.
    def files(d):
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "logs" not in p.parts)
    single_files = files(root / "single")
    assert [f for f in files(multi) if not f.endswith("random_states_1.pkl")] == single_files
    assert any(f.endswith("random_states_1.pkl") for f in files(multi))
    assert not [p for p in multi.rglob("*") if p.name.startswith(".")], "temporary files left behind"
    # One launcher line, one summary: only local rank 0 writes to the terminal.
    assert runs["multi"].stderr.count("acceltune: launching 2 processes") == 1
    assert runs["multi"].stdout.count("model written to") == 1


def test_interrupted_two_process_run_resumed_under_torchrun_matches_an_uninterrupted_one(runs):
    assert runs["part"].returncode == 130, runs["part"].stderr[-3000:]
    assert runs["part_latest"] == f"step-{STOP_AT:08d}"
    assert_ok(runs["resumed"])
    assert "acceltune: launching" not in runs["resumed"].stderr  # torchrun's processes did not relaunch
    root = runs["root"]
    full, resumed = weights(root / "multi"), weights(root / "part")
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=1e-6, msg=k)
    assert metrics(root / "part")["world_size"] == 2
    assert_same_metrics(metrics(root / "part"), metrics(root / "multi"))
    steps = [(r["kind"], r["step"]) for r in map(json.loads, (root / "part" / "log.jsonl").read_text().splitlines())]
    assert len(steps) == len(set(steps)), "a step logged twice across the interruption"


def test_a_user_error_in_the_processes_is_one_line_and_exit_2(runs):
    proc = runs["user_error"]
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("acceltune: error:")]
    assert len(errors) == 1 and "missing.csv" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_workers_get_the_config_exactly_as_one_process_each(tmp_path, monkeypatch):
    """launch hands each worker the config (as YAML) with the launcher flags reset, and the Task by import path."""
    from acceltune.training import launch

    seen = {}

    def fake_elastic_launch(config, entrypoint):
        def start(*argv):
            seen["argv"] = argv
            seen["config"] = TrainConfig.load(argv[-2])
        return start

    monkeypatch.setattr("torch.distributed.launcher.api.elastic_launch", fake_elastic_launch)
    monkeypatch.delenv("RANK", raising=False)
    cfg = TrainConfig(data=DataArgs(train="a b.csv", delimiter="-", max_examples=50),
                      model=ModelArgs(model="m", max_length=64, freeze_embeddings=False),
                      train=TrainArgs(output_dir=str(tmp_path / "out"), learning_rate=3e-5, nproc_per_node=2, device="cpu",
                                      group_by_length=False, patience=3))
    before = cfg.to_dict()
    assert launch.needs_launch(cfg)
    assert launch.launch(cfg, task="pkg.tasks:MyTask") == (0, tmp_path / "out")
    assert cfg.to_dict() == before  # the caller's config is not changed
    assert seen["argv"][-1] == "pkg.tasks:MyTask" and "launch import worker" in seen["argv"][1]
    want, got = cfg.to_dict(), seen["config"].to_dict()
    for name in launch.LAUNCHER_FIELDS:
        want["train"].pop(name), got["train"].pop(name)
    assert got == want
    assert (seen["config"].train.nproc_per_node, seen["config"].train.nnodes) == (1, 1)


def test_inside_an_existing_launcher_nothing_is_relaunched(monkeypatch):
    from acceltune.training import launch, loop

    seen = {}
    monkeypatch.setattr(loop, "train", lambda config, task=None, quiet=False: seen.setdefault("config", config))
    monkeypatch.setattr("torch.distributed.launcher.api.elastic_launch", lambda *a, **k: pytest.fail("relaunched"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = TrainConfig(train=TrainArgs(nproc_per_node=2))
    assert not launch.needs_launch(cfg)
    code, _ = launch.train_here(cfg)
    assert code == 0 and seen["config"].train.nproc_per_node == 1
    assert cfg.train.nproc_per_node == 2


def test_sharded_batches_are_the_one_process_batches_split_in_two():
    """The basis of the equality above: rank r's batch i is the r-th half of one process's batch i (batch x 2)."""
    lengths = np.random.default_rng(0).integers(3, 40, size=36)
    one = list(LengthGroupedSampler(lengths, 6, seed=7))
    ranks = [list(LengthGroupedSampler(lengths, 3, seed=7, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for i, batch in enumerate(one):
        assert ranks[0][i] + ranks[1][i] == batch
