"""`acceltune train`: flags generated from the typed config, a thin call into acceltune.train."""

from __future__ import annotations

import argparse
import os

from acceltune.config import TrainConfig, add_dataclass_arguments, config_fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    titles = {"data": "data", "model": "model", "train": "training"}
    for group, cls in TrainConfig.group_classes().items():
        add_dataclass_arguments(parser.add_argument_group(titles[group]), cls)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_flat({f.name: getattr(args, f.name) for _, f in config_fields()})


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.train.nproc_per_node > 1 or config.train.nnodes > 1:
        from acceltune.training.launch import launch

        return launch(config, args)
    from rich.console import Console

    from acceltune.training.loop import TrainingInterrupted, train

    console = Console(stderr=True)
    try:
        result = train(config)
    except TrainingInterrupted as e:
        console.print(f"[yellow]{e}")
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns here; one summary
        print_summary(result, Console())
    return 0


def print_summary(result, console) -> None:
    m = result.metrics
    console.print(f"model written to [bold]{result.output_dir}[/] · {m['train_samples_per_second']} samples/s over {m['train_runtime_s']} s")
    for split in ("validation", "test"):
        if split in m:
            s = m[split]
            console.print(f"{split}: accuracy {s['accuracy']:.4f} · macro F1 {s['macro_f1']:.4f} · {s['examples']} examples")
    console.print(f"report: {result.output_dir / 'report.md'} · TensorBoard: tensorboard --logdir {result.output_dir / 'logs'}")
