"""The `acceltune` command: one table of commands, each a thin module in acceltune.commands.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. Any flag can also
come from a YAML file given with --config (flags on the command line win). UserError becomes one
line on stderr and exit code 2; nothing the user did wrong prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from acceltune.errors import USER_ERROR_PREFIX, UserError

# name -> (module, one-line help). The only place commands are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("acceltune.commands.train", "fine-tune a classifier on a labeled text file, evaluate it and write the model"),
    "evaluate": ("acceltune.commands.evaluate", "score a trained or exported model on labeled data: metrics.json and a report"),
    "predict": ("acceltune.commands.predict", "classify texts from a file or stdin, one result per input, in input order"),
    "export": ("acceltune.commands.export", "export a trained model to ONNX (fp32/int8) or TensorRT, with a parity check"),
    "serve": ("acceltune.commands.serve", "serve a model over HTTP with dynamic batching"),
    "doctor": ("acceltune.commands.doctor", "show the hardware, libraries and the device and precision a run would use"),
    # Applications: each brings its own command module; the core never imports them.
    "assistant": ("acceltune.assistant.command", "a customer-service assistant over an intent model: replies, out-of-scope hand-off, review"),
    "monitor": ("acceltune.monitor.command", "score a stream of financial news: sentiment index per company, alerts, dashboard"),
    "recommend": ("acceltune.recommend.command", "train, evaluate and serve a sequential recommender over users' interactions"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is None or the help text already says what the default is."""

    def _get_help_string(self, action):
        if action.default is None or "default:" in (action.help or "") or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """All commands are listed; only `command`'s module is imported to add its flags (fast start-up)."""
    parser = argparse.ArgumentParser(prog="acceltune", description="Fine-tune, evaluate, optimise and serve text classifiers.")
    from acceltune import __version__

    parser.add_argument("--version", action="version", version=f"acceltune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            p.add_argument("--config", metavar="YAML", help="read flags from this YAML file (flags given here override it)")
            importlib.import_module(module).add_arguments(p)
        subparsers[name] = p
    return parser, subparsers


def apply_yaml_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"--config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"--config {path} must be a mapping of flag names to values")
    from acceltune.config import flatten_groups

    flat = flatten_groups(raw)
    dests = {a.dest for a in parser._actions}
    flat = {k.replace("-", "_"): v for k, v in flat.items()}
    unknown = sorted(k for k in flat if k not in dests or k in ("help", "config"))
    if unknown:
        raise UserError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; valid names are the command's flags, e.g. learning_rate")
    parser.set_defaults(**flat)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # datasets' per-file progress bars would mix with our own bar and with one-line errors.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:  # already imported (library use, tests): the variable is read at import
        sys.modules["datasets"].disable_progress_bars()
    argv = sys.argv[1:] if argv is None else argv
    try:
        command = next((a for a in argv if not a.startswith("-")), None)
        parser, subparsers = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.config:
            apply_yaml_defaults(subparsers[args.command], args.config)
            args = parser.parse_args(argv)
        from transformers.utils import logging as hf_logging  # here, not above: --help stays fast

        hf_logging.disable_progress_bar()  # "Loading weights" bars: ours is the progress that matters
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except UserError as e:
        print(f"{USER_ERROR_PREFIX}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("acceltune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
