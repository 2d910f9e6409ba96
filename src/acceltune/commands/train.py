"""`acceltune train`: flags generated from the typed config, a thin call into acceltune.training."""

from __future__ import annotations

import argparse
from pathlib import Path

from acceltune.config import TrainConfig, add_dataclass_arguments, config_fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    titles = {"data": "data", "model": "model", "train": "training"}
    for group, cls in TrainConfig.group_classes().items():
        add_dataclass_arguments(parser.add_argument_group(titles[group]), cls)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_flat({f.name: getattr(args, f.name) for _, f in config_fields()})


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from acceltune.training import launch

    code, output_dir, metrics = launch.train_or_launch(config_from_args(args))
    if metrics is not None:  # rank 0 only: one summary
        print_summary(output_dir, metrics, Console())
    return code


def print_summary(output_dir: Path, m: dict, console) -> None:
    # Throughput over the optimizer steps (what the progress bar shows), wall time over the whole run.
    console.print(f"model written to [bold]{output_dir}[/] · training throughput {m['train_samples_per_second']} samples/s "
                  f"over {m['train_runtime_s']} s of training steps · wall time {m['wall_time_s']} s")
    for split in ("validation", "test"):
        if split in m and "accuracy" in m[split]:
            s = m[split]
            console.print(f"{split}: accuracy {s['accuracy']:.4f} · macro F1 {s['macro_f1']:.4f} · {s['examples']} examples")
            if "in_scope_accuracy" in s:
                from acceltune.oos.calibration import summary_line

                console.print(f"{split}: {summary_line(s, m['oos']['score'])}")
    if "oos" in m and "threshold" in m["oos"]:
        console.print(f"out-of-scope rule: {m['oos']['score']} > {m['oos']['threshold']:.6g} ({m['oos']['goal']}; "
                      f"chosen by {m['oos']['chosen_by']})")
    console.print(f"report: {output_dir / 'report.md'} · TensorBoard: tensorboard --logdir {output_dir / 'logs'}")
