"""Data-parallel launch: `acceltune train --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]`.

`launch` starts torch's elastic agent (the torchrun machinery, ``torch.distributed.launcher``) on this
machine; the agent runs N copies of `worker` (the config as YAML, launcher flags reset, and the Task by
its import path) with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, and Accelerate inside `acceltune.training.loop`
turns that environment into a process group: gloo on CPU, NCCL on GPUs (one process per GPU, GPU =
LOCAL_RANK). Everything distributed-specific in the loop itself (sharded sampler, gathered evaluation,
rank-0-only files, agreed stop flag) lives in acceltune.training.loop; this module only starts processes and
turns their exit codes into one. `train_here` is the one place that maps an interruption to exit code 130.

Already inside a launcher (``torchrun -m acceltune train ...``, ``accelerate launch -m acceltune train
...``, Slurm/Kubernetes/Ray setting RANK and WORLD_SIZE) nothing is relaunched: the flags are ignored
and this process trains as the rank it was given. FSDP and DeepSpeed come from Accelerate's own config:
``accelerate launch --config_file fsdp.yaml -m acceltune train ...`` (see docs/distributed.md).

Exit codes: 0 when every process succeeded; 2 and one line when a process hit a user error (only
local rank 0 writes to this terminal: the others' output goes to log files, shown when they fail);
130 when interrupted (SIGINT/SIGTERM reach the agent, which forwards them once to every process: each
checkpoints at the next step boundary, agreed across ranks, and stops); 1 for any other failure.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from acceltune.config import TrainConfig
from acceltune.errors import USER_ERROR_PREFIX, UserError

DEFAULT_TASK = "acceltune.training.classification:SequenceClassification"
PICKLED = "pickle:"  # a task reference that names a file written by launch()
"""The Task a worker trains unless told otherwise ("module:attribute" of a Task class)."""

LAUNCHER_FIELDS = ("nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port")
"""Flags for the launcher only: children get --nproc-per-node 1 and the defaults for the rest."""

SINGLE_PROCESS = {"nproc_per_node": 1, "nnodes": 1, "node_rank": 0}
"""The launcher fields as each launched process sees them: it trains as its rank and launches nothing."""

SHUTDOWN_TIMEOUT_S = 60
"""After a signal or a failed process, how long the others get to finish (e.g. write their checkpoint) before SIGKILL."""

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def already_launched(environ=os.environ) -> bool:
    """True inside torchrun, accelerate launch, Slurm+torchrun, a PyTorchJob or Ray Train: never relaunch there."""
    return "RANK" in environ and "WORLD_SIZE" in environ


def backend_for(device: str) -> str:
    """The process-group backend Accelerate will pick for this --device: NCCL for CUDA, gloo for CPU."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "gloo"
    return "nccl"


def _check(config: TrainConfig) -> str:
    t = config.train
    device = (t.device or "auto").lower()
    backend = backend_for(device)
    if backend == "nccl":
        import torch

        from acceltune.hardware import parse_device

        if parse_device(device)[1] is not None:  # one GPU named
            raise UserError(f"--device {t.device} names one GPU, but --nproc-per-node {t.nproc_per_node} runs one process "
                            "per GPU (process i uses GPU i): use --device cuda, and CUDA_VISIBLE_DEVICES to choose the GPUs")
        visible = torch.cuda.device_count()
        if visible == 0:
            raise UserError(f"--device {t.device} with --nproc-per-node {t.nproc_per_node}: no CUDA GPU is visible; "
                            "use --device cpu to train data-parallel on CPU (gloo)")
        if t.nproc_per_node > visible:
            raise UserError(f"--nproc-per-node {t.nproc_per_node} asks for one process per GPU, but {visible} GPU(s) are "
                            f"visible: use --nproc-per-node {visible} or fewer (or --device cpu)")
    if t.nnodes > 1 and t.master_addr in ("127.0.0.1", "localhost"):
        raise UserError(f"--nnodes {t.nnodes}: --master-addr must be the address of the node-rank-0 machine that the "
                        "others can reach (not 127.0.0.1)")
    if t.resume and t.output_dir is None:
        raise UserError("--resume needs --output-dir (the run to continue)")
    return backend


def needs_launch(config: TrainConfig) -> bool:
    """More than one process asked for, and no launcher has started this one."""
    return (config.train.nproc_per_node > 1 or config.train.nnodes > 1) and not already_launched()


def train_or_launch(config: TrainConfig, task=None) -> tuple[int, Path | None, dict | None]:
    """Train ``task`` (default: sequence classification) in this process, or launch the processes ``config``
    asks for (--nproc-per-node, --nnodes); (exit code, output directory, metrics). The metrics are rank 0's
    (None in the other processes, and after a failure), for the caller's summary."""
    if needs_launch(config):
        code, output_dir = launch(config, DEFAULT_TASK if task is None else task)
        done = code == 0 and config.train.node_rank == 0
        return code, output_dir, json.loads((output_dir / "metrics.json").read_text()) if done else None
    code, result = train_here(config, task)
    if result is None:
        return code, None, None
    return code, result.output_dir, result.metrics if int(os.environ.get("RANK", "0")) == 0 else None


def launch(config: TrainConfig, task=DEFAULT_TASK) -> tuple[int, Path]:
    """Run ``task`` data-parallel on this machine's share of the processes; (exit code, output directory).

    ``task``: "module:Class" (built with no arguments in each process) or a Task instance, which is pickled
    for the processes (so it must be picklable: settings, paths; no open files or models)."""
    t = config.train
    backend = _check(config)
    if t.output_dir is None:  # every process, on every node, must write into the same directory
        if t.nnodes > 1:
            raise UserError("--nnodes > 1 needs --output-dir, on a filesystem every node shares (checkpoints are written by rank 0 and read by all)")
    output_dir = t.output_dir or f"runs/{datetime.now():%Y%m%d-%H%M%S}"

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = t.nproc_per_node
    if t.nnodes == 1:  # one machine: torchrun --standalone (a free port, no clash with another run)
        rdzv = dict(rdzv_backend="c10d", rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()))
    else:  # several: torchrun --nnodes M --node-rank R --master-addr A --master-port P (static rendezvous)
        rdzv = dict(rdzv_backend="static", rdzv_endpoint=f"{t.master_addr}:{t.master_port}", run_id="acceltune",
                    rdzv_configs={"rank": t.node_rank, "timeout": 900})
    log_dir = Path(tempfile.mkdtemp(prefix="acceltune-launch-"))
    # Local rank 0 keeps this terminal (progress bar, notes, its error line); the others write log files.
    redirects = {i: Std.NONE if i == 0 else Std.ALL for i in range(nproc)}
    lc = LaunchConfig(min_nodes=t.nnodes, max_nodes=t.nnodes, nproc_per_node=nproc, max_restarts=0,
                      monitor_interval=0.1, logs_specs=DefaultLogsSpecs(log_dir=str(log_dir), redirects=redirects),
                      shutdown_timeout=int(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_S)), **rdzv)
    worker_config = log_dir / "config.yaml"
    dataclasses.replace(config, train=dataclasses.replace(t, output_dir=output_dir, **SINGLE_PROCESS)).save(worker_config)
    if not isinstance(task, str):
        with open(log_dir / "task.pickle", "wb") as f:
            pickle.dump(task, f)
        task = f"{PICKLED}{log_dir / 'task.pickle'}"
    child = ["-c", "from acceltune.training.launch import worker; worker()", str(worker_config), task]

    env_backup = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}
    if "OMP_NUM_THREADS" not in os.environ:  # N processes on one machine share its cores (torchrun sets 1; on CPU that starves the math)
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    # The agent's loggers (each with its own level) print failure tables and tracebacks that repeat
    # what the exit code and our one line say; ACCELTUNE_LAUNCH_DEBUG=1 keeps them.
    agent_logs = [] if os.environ.get("ACCELTUNE_LAUNCH_DEBUG") else [
        logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("torch.distributed")]
    levels = [log.level for log in agent_logs]
    for log in agent_logs:
        log.setLevel(logging.CRITICAL)
    if t.node_rank == 0:
        print(f"acceltune: launching {nproc * t.nnodes} processes ({nproc} here, {t.nnodes} node(s), {backend}) "
              f"into {output_dir}", file=sys.stderr)
    ok = False
    try:
        elastic_launch(lc, entrypoint=sys.executable)(*child)
        ok = True
        return 0, Path(output_dir)
    except SignalException as e:
        print(f"acceltune: {signal.Signals(e.sigval).name}: processes stopped (each checkpoints at its next step "
              f"boundary; continue with --resume --output-dir {output_dir})", file=sys.stderr)
        return EXIT_INTERRUPTED, Path(output_dir)
    except ChildFailedError as e:
        return _report_failure(e, log_dir), Path(output_dir)
    finally:
        for log, lvl in zip(agent_logs, levels):
            log.setLevel(lvl)
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)


def _report_failure(err, log_dir: Path) -> int:
    """One exit code (and at most a few lines) for a failed group of processes."""
    failures = err.failures  # global rank -> ProcessFailure(local_rank, exitcode, ...)
    codes = {rank: f.exitcode for rank, f in failures.items()}
    def stderr_of(local_rank: int) -> list[str]:
        files = sorted(log_dir.glob(f"**/attempt_*/{local_rank}/stderr.log"))
        return files[-1].read_text(errors="replace").splitlines() if files else []

    user_errors = [(rank, f) for rank, f in sorted(failures.items()) if f.exitcode == EXIT_USER_ERROR]
    if user_errors:
        # Local rank 0 printed its own line on this terminal; another rank's line comes from its log file.
        if not any(f.local_rank == 0 for _, f in user_errors):
            rank, f = user_errors[0]
            line = next((l for l in reversed(stderr_of(f.local_rank)) if l.startswith(USER_ERROR_PREFIX)), None)
            print(line or f"{USER_ERROR_PREFIX}rank {rank} stopped on a user error (output: {log_dir})", file=sys.stderr)
        return EXIT_USER_ERROR
    interrupted = (EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM)
    if all(c in interrupted for c in codes.values()):
        return EXIT_INTERRUPTED
    here = [rank for rank, f in failures.items() if f.local_rank == 0 and f.exitcode not in interrupted]
    # Local rank 0's traceback is already on this terminal; otherwise the earliest failure is the likely cause.
    first = here[0] if here else err.get_first_failure()[0] if hasattr(err, "get_first_failure") else min(codes)
    f = failures[first]
    where = "its traceback is above" if f.local_rank == 0 else f"its output: {log_dir}/**/{f.local_rank}/stderr.log"
    tail = [] if f.local_rank == 0 else stderr_of(f.local_rank)[-15:]
    for line in tail:
        print(f"[rank {first}] {line}", file=sys.stderr)
    code = f"signal {signal.Signals(-f.exitcode).name}" if f.exitcode < 0 else f"exit code {f.exitcode}"
    print(f"{USER_ERROR_PREFIX}training process rank {first} failed ({code}); {where}", file=sys.stderr)
    return 1


def train_here(config: TrainConfig, task=None, quiet: bool = False):
    """Train in this process (alone, or as the rank a launcher gave it); (exit code, TrainResult or None).

    The one place where an interruption becomes exit code 130 (the loop raises TrainingInterrupted
    after its checkpoint); a UserError propagates, for the caller to print as one line."""
    from acceltune.training.loop import TrainingInterrupted, train

    if already_launched():
        if os.environ.get("RANK") == "0" and (config.train.nproc_per_node > 1 or config.train.nnodes > 1):
            print(f"acceltune: already launched (WORLD_SIZE={os.environ['WORLD_SIZE']}): --nproc-per-node/--nnodes "
                  "are ignored, the launcher decides", file=sys.stderr)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **SINGLE_PROCESS))
    try:
        return 0, train(config, task=task, quiet=quiet)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return EXIT_INTERRUPTED, None


def load_task(ref: str):
    """A Task instance from "module:Class" (a class or a factory taking no arguments), or one that launch pickled."""
    if ref.startswith(PICKLED):
        with open(ref.removeprefix(PICKLED), "rb") as f:
            return pickle.load(f)  # written by launch() in this run's own temporary directory
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)()


def worker() -> None:
    """Entry point of each launched process: ``python -c '...worker()' CONFIG.yaml MODULE:TASK``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    config_path, task_ref = sys.argv[1:3]
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # as the CLI: our progress bar is the one that matters
    try:
        code, _ = train_here(TrainConfig.load(config_path), load_task(task_ref))
    except UserError as e:
        print(f"{USER_ERROR_PREFIX}{e}", file=sys.stderr)
        code = EXIT_USER_ERROR
    raise SystemExit(code)
