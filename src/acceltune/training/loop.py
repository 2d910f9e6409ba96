"""The training loop over a `Task`: setup → fit → finish, top to bottom.

setup turns the config into a run (device, data, model, speed-ups, optimizer, resumed state), fit runs
the optimizer steps with evaluation, checkpoints and early stopping, finish evaluates the best model
and writes metrics and the report. What depends on the problem (data, model, loss, metrics, the model
directory) comes from the Task (acceltune.training.task); the CPU speed-ups from acceltune.speedups,
called the same way on every device. The config is never changed: values it leaves open (output
directory, max length, head learning rate) are resolved into a copy, which is what gets saved.

Accelerate hides device, precision and distribution; the loop itself stays plain PyTorch.
Mixed precision is a no-op when off (accelerate's autocast and GradScaler), not a branch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from acceltune import batching, speedups
from acceltune.config import TrainConfig
from acceltune.data import Splits
from acceltune.errors import UserError
from acceltune.hardware import apply_precision_flags, resolve_device, resolve_precision
from acceltune.metrics import write_metrics
from acceltune.modeldir import TRAINING_CONFIG_FILE, ModelInfo
from acceltune.modeling import model_max_positions, resolve_model
from acceltune.training import checkpoint
from acceltune.training.progress import RunLogger, ThroughputWindow
from acceltune.training.task import Task, labels_tensor

EVAL_MAX_TOKENS = 16384
EVAL_MAX_TOKENS_CPU = 4096
"""On the CPU 4,096 tokens already keep the matmuls at full speed; 16,384 only add ~200 MB of peak RSS."""
EVAL_MAX_BATCH = 256


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, checkpoint_dir: Path, step: int):
        super().__init__(f"interrupted at step {step}; checkpoint saved in {checkpoint_dir}: continue with --resume")
        self.checkpoint_dir = checkpoint_dir


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checkpoints at the next step boundary and stops."""

    def __init__(self):
        self.set = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


#: Files only an acceltune run leaves: --overwrite deletes a directory only when one is there.
RUN_MARKERS = (TRAINING_CONFIG_FILE, "checkpoints", "log.jsonl")


def default_output_dir(accelerator) -> Path:
    """runs/<timestamp>: rank 0's timestamp on every rank (one directory for all)."""
    name = f"runs/{datetime.now():%Y%m%d-%H%M%S}"
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        name = broadcast_object_list([name])[0]
    return Path(name)


def prepare_output_dir(out: Path, args, is_main: bool) -> Path:
    if args.resume:
        if checkpoint.latest_checkpoint(out) is None:
            raise UserError(f"--resume: no checkpoint in {out}/checkpoints; start without --resume (and --overwrite to replace {out})")
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.overwrite:
            raise UserError(f"output directory {out} already exists and is not empty: pass --overwrite to replace it, --resume to continue it, or another --output-dir")
        if not out.is_dir() or not any((out / marker).exists() for marker in RUN_MARKERS):
            # --overwrite replaces an earlier run, never an arbitrary directory given by mistake (".", $HOME).
            raise UserError(f"--overwrite refuses to delete {out}: it does not look like an acceltune run (no {', '.join(RUN_MARKERS)}); remove it yourself or choose another --output-dir")
        if is_main:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


def param_groups(model, args, head_modules: tuple[str, ...] = Task.head_modules) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm; the new head (``head_modules``) at its own learning rate."""
    head_names = {n for n, _ in model.named_parameters() if n.split(".")[0] in head_modules}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        head = name in head_names
        key = (head, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else args.weight_decay,
                           "lr": args.head_lr if head else args.learning_rate}
        groups[key]["params"].append(p)
    return list(groups.values())


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def predict_logits(model, dataset, collator, accelerator, reduce=None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example, in dataset order, gathered from all ranks without duplicates;
    with ``reduce(logits, labels)`` (a Task's eval_outputs), what it keeps of each batch instead of the logits."""
    model.eval()
    lengths = batching.column_array(dataset, "length")
    max_tokens = EVAL_MAX_TOKENS if accelerator.device.type == "cuda" else EVAL_MAX_TOKENS_CPU
    batches = batching.eval_batches(lengths, max_tokens, EVAL_MAX_BATCH, accelerator.num_processes, accelerator.process_index)
    # Every rank runs the same number of forwards: a wrapped model's forward can be a collective (DDP
    # broadcasts buffers on the first one after training, FSDP all-gathers), so a rank short of batches
    # runs a one-example dummy and drops its output; otherwise the ranks' collectives mismatch and hang.
    rounds = -(-len(batching.eval_batches(lengths, max_tokens, EVAL_MAX_BATCH)) // accelerator.num_processes)
    view = batching.BatchedArrowDataset(dataset, (*batching.TOKEN_COLUMNS, "labels"))
    indices, outputs = [], []
    for i in range(rounds):
        dummy = i >= len(batches)
        idx = np.asarray([0]) if dummy else batches[i]
        batch = collator(view.__getitems__(idx.tolist()))
        labels = batch.pop("labels", None)
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**batch).logits.float()
        if dummy:
            continue
        outputs.append(logits if reduce is None else reduce(logits, labels.to(accelerator.device)).float())
        indices.append(torch.as_tensor(idx, device=accelerator.device))
    if outputs:
        local_logits = torch.cat(outputs)
    else:  # a rank with no examples still takes part in the gather, with the width the others have
        width = model.config.num_labels if hasattr(model, "config") else accelerator.unwrap_model(model).config.num_labels
        if reduce is not None:
            probe = torch.zeros((1, width), device=accelerator.device)
            width = reduce(probe, torch.zeros(1, dtype=torch.long, device=accelerator.device)).shape[1]
        local_logits = torch.zeros((0, width), device=accelerator.device)
    local_idx = torch.cat(indices) if indices else torch.zeros((0,), dtype=torch.long, device=accelerator.device)
    if accelerator.num_processes > 1:
        # Ranks hold different counts: pad with index -1, gather, drop the padding.
        local_idx = accelerator.pad_across_processes(local_idx, pad_index=-1)
        local_logits = accelerator.pad_across_processes(local_logits, pad_index=0)
        local_idx, local_logits = accelerator.gather(local_idx), accelerator.gather(local_logits)
        keep = local_idx >= 0
        local_idx, local_logits = local_idx[keep], local_logits[keep]
    logits = np.zeros((len(dataset), local_logits.shape[1]), dtype=np.float32)
    logits[local_idx.cpu().numpy()] = local_logits.cpu().numpy()
    model.train()
    return logits, batching.column_array(dataset, "labels")


def evaluate_split(run: "Run", dataset, detailed: bool = False) -> dict:
    logits, labels = predict_logits(run.model, dataset, run.collator, run.accelerator, run.task.eval_outputs)
    metrics = run.task.metrics(logits, labels, run.splits, detailed)
    if "loss" in metrics:  # a Task that reduces its outputs scores the loss itself (eval_outputs)
        return metrics
    target = labels_tensor(labels, run.task.float_labels(run.splits))
    # On a copy: .cpu() moves a module in place, and the training loss (class weights) must stay on the device.
    metrics["loss"] = float(copy.deepcopy(run.loss_fn).cpu()(torch.from_numpy(logits), target))
    return metrics


def publish_model(run: "Run") -> None:
    """Write the model directory atomically: the Task's files into a temporary directory, then moved one by one."""
    if not run.accelerator.is_main_process:
        return
    tmp = run.output_dir / ".model-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run.task.save_model(tmp, run.accelerator.unwrap_model(run.model), run.tokenizer, run.info, run.config)
    for f in tmp.iterdir():
        f.replace(run.output_dir / f.name)
    tmp.rmdir()


def make_accelerator(precision, device: torch.device):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # Accelerate keeps process-wide state; a second run in the same process (tests, notebooks) may
    # ask for another precision, so start from a clean state. The distributed part is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(mixed_precision=precision.accelerate_name, cpu=device.type == "cpu")


def improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


@dataclass
class Run:
    """Everything setup resolved for fit and finish: a record, no behaviour."""
    config: TrainConfig
    """The resolved copy of the caller's config (output_dir, max_length, head_learning_rate filled in): saved with the model."""
    task: Task
    accelerator: object
    precision: object
    splits: Splits
    info: ModelInfo
    tokenizer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    speedups: speedups.Speedups
    loss_fn: torch.nn.Module
    collator: batching.Collator
    sampler: batching.LengthGroupedSampler
    loader: object
    tokenized: dict
    lazy: bool
    output_dir: Path
    logger: RunLogger
    state: checkpoint.TrainerState
    total_steps: int
    batches_per_epoch: int
    eval_every: int
    save_every: int
    started: float
    """time.perf_counter() when train() was called: the wall time counts from here."""


def train(config: TrainConfig, *, task: Task | None = None, quiet: bool = False) -> TrainResult:
    """Run a whole fine-tuning job for ``task`` (default: sequence classification). ``config`` is not changed."""
    if task is None:
        from acceltune.training.classification import SequenceClassification

        task = SequenceClassification()
    run = setup(config, task, quiet)
    fit(run)
    return finish(run)


def setup(config: TrainConfig, task: Task, quiet: bool = False) -> Run:
    """Device, data, model, speed-ups, optimizer and the resumed state: everything before the first step."""
    from accelerate.utils import set_seed

    started = time.perf_counter()
    args, data_args, model_args = config.train, config.data, config.model

    # 1. Device and precision: one policy, loud errors.
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    apply_precision_flags(precision)
    accelerator = make_accelerator(precision, device)
    is_main = accelerator.is_main_process

    # 2. Data: file → examples (validated, split) → tokens: once and cached, or per batch for big data (--tokenize).
    with accelerator.main_process_first():  # rank 0 fills the datasets cache, the others read it (no concurrent writes)
        splits = task.load_splits(data_args, args.seed)
    if splits.train is None or len(splits.train) == 0:
        raise UserError("no training examples: check --train")
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(accelerator)
    with accelerator.main_process_first():  # rank 0 removes an --overwrite'n directory before the others look at it
        prepare_output_dir(output_dir, args, is_main)
    accelerator.wait_for_everyone()
    if args.resume:  # before the data is tokenized: a resume that cannot be exact fails at once
        checkpoint.check_resumable(checkpoint.latest_checkpoint(output_dir), config.to_dict(), accelerator.num_processes)
    model_path = resolve_model(model_args.model)
    tokenizer = task.load_tokenizer(model_path, splits, model_args.trust_remote_code)
    set_seed(args.seed)
    model = task.build_model(model_path, splits, tokenizer, model_args.trust_remote_code)
    model_limit = model_max_positions(model, tokenizer)
    max_length = model_args.max_length
    if max_length is None:
        max_length = batching.choose_max_length(
            batching.token_lengths(splits.train, tokenizer, splits.text_pair, seed=args.seed), model_limit)
    elif max_length > model_limit:
        raise UserError(f"--max-length {max_length} exceeds the model's limit of {model_limit} tokens: lower it")
    config = dataclasses.replace(config, model=dataclasses.replace(model_args, max_length=max_length),
                                 train=dataclasses.replace(args, output_dir=str(output_dir), head_learning_rate=args.head_lr))
    args = config.train
    info = task.model_info(splits, max_length, datetime.now().strftime("%Y%m%d-%H%M%S"))
    lazy = batching.tokenize_lazily(data_args.tokenize, len(splits.train))
    with accelerator.main_process_first():
        tokenized = {name: batching.tokenize(ds, tokenizer, max_length, splits.text_pair)
                     for name, ds in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
                     if ds is not None and len(ds) and not (lazy and name == "train")}
    if lazy:  # the up-front pass would delay the first step by ~25k rows per CPU-second
        train_view = batching.LazyTokenizedDataset(splits.train, tokenizer, max_length, splits.text_pair)
        train_lengths = batching.text_lengths(splits.train, splits.text_pair)
    else:
        train_view = batching.BatchedArrowDataset(tokenized["train"], (*batching.TOKEN_COLUMNS, "labels"))
        train_lengths = batching.column_array(tokenized["train"], "length")

    # 3. Model, speed-ups, optimizer, schedule.
    if model_args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    fast = speedups.prepare(model, param_groups(model, args, task.head_modules), args, precision, accelerator)
    sampler = batching.LengthGroupedSampler(
        train_lengths, args.batch_size, seed=args.seed, num_replicas=accelerator.num_processes,
        rank=accelerator.process_index, group_by_length=args.group_by_length)
    batches_per_epoch = len(sampler)
    steps_per_epoch = math.ceil(batches_per_epoch / args.grad_accumulation)
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    scheduler = linear_warmup_decay(fast.optimizer, int(args.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(fast.model, fast.optimizer)
    accelerator.register_for_checkpointing(scheduler)
    loss_fn = task.loss_function(splits, args, accelerator.unwrap_model(model)).to(accelerator.device)
    collator = batching.Collator(tokenizer.pad_token_id, 8 if accelerator.device.type == "cuda" else None,
                                 tokenizer.padding_side, task.float_labels(splits))
    loader = batching.make_loader(train_view, sampler, collator, args.num_workers,
                                  pin_memory=accelerator.device.type == "cuda")
    eval_every = args.eval_every or steps_per_epoch

    # 4. Resume exactly where the last checkpoint left off.
    state = checkpoint.TrainerState(world_size=accelerator.num_processes)
    if args.resume:
        state = checkpoint.load_checkpoint(accelerator, checkpoint.latest_checkpoint(output_dir))
        state.world_size = accelerator.num_processes
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir / TRAINING_CONFIG_FILE)
    logger = RunLogger(output_dir, is_main, total_steps, quiet=quiet, resume_step=state.global_step,
                       history=state.history if args.resume else None)
    copies = " (bf16 weight copies)" if "bf16 weight copies" in fast.names else ""
    logger.note(f"device {accelerator.device} · precision {precision.name}{copies} · world size {accelerator.num_processes} · "
                f"{len(splits.train)} train examples{' (tokenized per batch)' if lazy else ''} · max length {max_length} · "
                f"{total_steps} steps")
    for note in splits.notes:
        logger.note(note)
    return Run(config=config, task=task, accelerator=accelerator, precision=precision, splits=splits, info=info,
               tokenizer=tokenizer, model=model, optimizer=optimizer, scheduler=scheduler, speedups=fast, loss_fn=loss_fn,
               collator=collator, sampler=sampler, loader=loader, tokenized=tokenized, lazy=lazy, output_dir=output_dir,
               logger=logger, state=state, total_steps=total_steps, batches_per_epoch=batches_per_epoch,
               eval_every=eval_every, save_every=args.save_every or eval_every, started=started)


def fit(run: Run) -> None:
    """Optimizer steps until max steps, early stopping or a signal (TrainingInterrupted after a checkpoint)."""
    args, accelerator, state, logger = run.config.train, run.accelerator, run.state, run.logger
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    config_yaml = _config_yaml(run.config)
    selection_metric = run.task.selection_metric(args)
    model.train()
    stop_early = False
    window = ThroughputWindow()
    with StopFlag() as stop:
        while state.global_step < run.total_steps and not stop_early:
            run.sampler.set_epoch(state.epoch, state.batches_in_epoch)
            micro = 0
            for batch in run.loader:
                batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
                labels = batch.pop("labels")
                micro += 1
                state.batches_in_epoch += 1
                run.speedups.before_micro_batch(state.epoch, state.batches_in_epoch)
                last_micro = micro == args.grad_accumulation or state.batches_in_epoch == run.batches_per_epoch
                with (nullcontext() if last_micro else accelerator.no_sync(model)):
                    with accelerator.autocast():
                        logits = model(**batch).logits
                    loss = run.loss_fn(logits.float(), labels) / args.grad_accumulation
                    accelerator.backward(loss)
                # Device tensors, read at log time: no host-device sync per micro-step.
                window.loss += loss.detach()
                window.samples += len(labels) * accelerator.num_processes
                window.tokens += batch["attention_mask"].sum() * accelerator.num_processes
                if not last_micro:
                    continue
                micro = 0
                grad_norm = run.speedups.clip(model, args.max_grad_norm)  # before the step: see acceltune.speedups
                optimizer.step()
                if not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                window.steps += 1

                if state.global_step % args.log_every == 0 or state.global_step == run.total_steps:
                    elapsed = window.elapsed()
                    state.samples_seen += window.samples
                    state.train_seconds += elapsed
                    record = {"kind": "train", "step": state.global_step, "epoch": state.epoch + state.batches_in_epoch / run.batches_per_epoch,
                              "loss": _mean_over_ranks(accelerator, float(window.loss) / window.steps), "learning_rate": scheduler.get_last_lr()[0],
                              "grad_norm": float(grad_norm) if grad_norm is not None else None,
                              "samples_per_second": window.samples / elapsed, "tokens_per_second": float(window.tokens) / elapsed}
                    state.history.append(record)
                    logger.log(record)
                    window.reset()
                logger.advance(state.global_step)

                window.pause()  # evaluation and checkpoints are not training time
                if "validation" in run.tokenized and (state.global_step % run.eval_every == 0 or state.global_step == run.total_steps):
                    metrics = evaluate_split(run, run.tokenized["validation"])
                    record = {"kind": "eval", "step": state.global_step, **metrics}
                    state.history.append(record)
                    logger.log(record, f"step {state.global_step}: {run.task.eval_line(metrics)}")
                    value = metrics[selection_metric]
                    if improved(selection_metric, value, state.best_metric):
                        state.best_metric, state.best_step, state.evals_without_improvement = value, state.global_step, 0
                        publish_model(run)
                    else:
                        state.evals_without_improvement += 1
                        stop_early = args.patience is not None and state.evals_without_improvement >= args.patience

                interrupted = _any_rank(accelerator, stop.set)
                if interrupted or stop_early or state.global_step % run.save_every == 0 or state.global_step == run.total_steps:
                    path = checkpoint.save_checkpoint(accelerator, run.output_dir, state, config_yaml, args.keep_checkpoints)
                    if interrupted:
                        logger.close()
                        raise TrainingInterrupted(path, state.global_step)
                if stop_early:
                    logger.note(f"early stopping: no {selection_metric} improvement in {args.patience} evaluations")
                    break
                if state.global_step >= run.total_steps:
                    break
                window.resume()
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
    logger.close()
    run.speedups.after_training()


def finish(run: Run) -> TrainResult:
    """The final model is the best checkpoint (or the last, without validation): evaluate it, write metrics and the report."""
    accelerator, state, output_dir = run.accelerator, run.state, run.output_dir
    if "validation" not in run.tokenized:
        publish_model(run)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(run.model)
    from safetensors.torch import load_file

    # safetensors takes "cpu", not the "cpu:N" Accelerate names a CPU rank's device.
    best_weights = load_file(str(output_dir / "model.safetensors"),
                             device="cpu" if accelerator.device.type == "cpu" else str(accelerator.device))
    missing = unwrapped.load_state_dict(best_weights, strict=False)
    if missing.missing_keys and any("embeddings" not in k for k in missing.missing_keys):
        raise RuntimeError(f"best model is missing weights: {missing.missing_keys[:5]}")
    metrics = {"world_size": accelerator.num_processes, "device": str(accelerator.device), "precision": run.precision.name,
               "model": run.config.model.model, "global_steps": state.global_step, "best_step": state.best_step,
               "train_runtime_s": round(state.train_seconds, 2),
               "train_samples_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
               "train_examples": len(run.splits.train), "tokenize": "lazy" if run.lazy else "upfront",
               "max_length": run.info.max_length}
    for split in ("validation", "test"):
        if split in run.tokenized:
            metrics[split] = evaluate_split(run, run.tokenized[split], detailed=True)
    run.speedups.after_training()  # and evaluation's: the report's figures then start from the live set
    # From the call to the final evaluation (setup, evaluation, checkpoints included); train_runtime_s counts optimizer steps only.
    metrics["wall_time_s"] = round(time.perf_counter() - run.started, 2)
    if accelerator.is_main_process:
        run.task.finalize(output_dir, run.splits, run.config, metrics)
        write_metrics(output_dir / "metrics.json", metrics)
        run.task.write_report(output_dir, metrics, state.history, run.splits,
                              split="test" if "test" in metrics else "validation",
                              title=f"acceltune training report: {output_dir.name}")
    accelerator.wait_for_everyone()
    return TrainResult(output_dir, metrics)


def _mean_over_ranks(accelerator, value: float) -> float:
    """The logged training loss: every rank's shard, not rank 0's alone (called by all ranks at the same steps)."""
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor([value], device=accelerator.device), reduction="mean").item())


def _any_rank(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def _config_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
