"""`acceltune assistant`: the customer-service assistant's server and its review export.

    acceltune assistant MODEL_DIR --replies replies.yaml [--db URL] [--retention-days N] [server flags]
    acceltune assistant review --db URL --output handoffs.csv [--overwrite]
    acceltune assistant replies MODEL_DIR --output replies.yaml [--overwrite]   # a replies file to edit

``acceltune assistant MODEL_DIR`` is short for ``acceltune assistant serve MODEL_DIR``. The server flags
(--host, --port, limits, --api-key-file, ...) are `acceltune serve`'s, generated from ServeSettings.
"""

from __future__ import annotations

import argparse

from acceltune.assistant.store import DEFAULT_DB, DEFAULT_RETENTION_DAYS, PURGE_EVERY_S



class _AnyFirstWord(dict):
    """argparse's check of the first word: any word passes (one that names no sub-command is serve's MODEL_DIR)."""

    def __contains__(self, key) -> bool:
        return True


class _ServeUnlessNamed(argparse._SubParsersAction):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.choices = _AnyFirstWord()  # _name_parser_map stays the real table

    def __call__(self, parser, namespace, values, option_string=None):
        if values and values[0] not in self._name_parser_map:
            values = ["serve", *values]
        super().__call__(parser, namespace, values, option_string)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acceltune.extras import require

    require("fastapi", "assistant")
    from acceltune.serve import add_server_arguments

    sub = p.add_subparsers(dest="assistant_command", metavar="{MODEL_DIR,serve,review,replies}", required=True,
                           action=_ServeUnlessNamed)
    serve = sub.add_parser("serve", help="serve the assistant (the default: acceltune assistant MODEL_DIR ...)",
                           formatter_class=p.formatter_class)
    serve.add_argument("model_dir", metavar="MODEL_DIR", help="an intent model from 'acceltune train' or 'acceltune export'")
    serve.add_argument("--replies", required=True, metavar="YAML",
                       help="reply templates per intent and the hand-off policy (docs/assistant.md)")
    _add_db(serve)
    serve.add_argument("--retention-days", type=float, default=DEFAULT_RETENTION_DAYS,
                       help=f"delete conversations older than this (at start, then every {PURGE_EVERY_S / 3600:g} h)")
    add_server_arguments(serve)
    review = sub.add_parser("review", help="export handed-off and low-confidence messages for labelling",
                            formatter_class=p.formatter_class)
    _add_db(review)
    review.add_argument("--output", required=True, metavar="CSV",
                        help="the CSV to write (text,label,...: fill in label, then train on it)")
    review.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    replies = sub.add_parser("replies", help="write a replies file for a model's intents, to edit",
                             formatter_class=p.formatter_class)
    replies.add_argument("model_dir", metavar="MODEL_DIR", help="the intent model the assistant will serve")
    replies.add_argument("--output", required=True, metavar="YAML", help="the replies file to write")
    replies.add_argument("--overwrite", action="store_true", help="replace --output if it exists")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                   help="where conversations are stored: any SQLAlchemy URL, e.g. postgresql://user@host/db")


def run(args: argparse.Namespace) -> int:
    return {"serve": _serve, "review": _review, "replies": _replies}[args.assistant_command](args)


def _serve(args: argparse.Namespace) -> int:
    from acceltune import ModelInfo
    from acceltune.assistant.app import create_assistant_app
    from acceltune.assistant.routes import ONE_PROCESS
    from acceltune.assistant.replies import load_replies
    from acceltune.assistant.store import ConversationStore
    from acceltune.serve import run_server, settings_from_args

    settings = settings_from_args(args, model_dir=args.model_dir).one_process(ONE_PROCESS)
    replies = load_replies(args.replies, ModelInfo.load(args.model_dir).labels)
    store = ConversationStore(args.db, args.retention_days)
    return run_server(lambda on_load_error: create_assistant_app(settings, replies, store, on_load_error=on_load_error),
                      settings, access_log=args.access_log)


def _review(args: argparse.Namespace) -> int:
    import sys

    from acceltune.assistant.review import export_for_review
    from acceltune.assistant.store import ConversationStore

    n = export_for_review(ConversationStore(args.db, existing=True), args.output, overwrite=args.overwrite)
    print(f"wrote {n} message(s) to {args.output}: fill in the label column, then add the rows to your training "
          f"data and train again ('acceltune train' reads this file as it is: text and label, other columns ignored)",
          file=sys.stderr)
    return 0


def _replies(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from acceltune import ModelInfo, UserError
    from acceltune.assistant.replies import scaffold

    labels = ModelInfo.load(args.model_dir).labels
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UserError(f"--output {args.output} exists: pass --overwrite to replace it, or choose another file")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(scaffold(labels), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {args.output} with {len(labels)} intent(s): write their replies, then "
          f"'acceltune assistant {args.model_dir} --replies {args.output}'", file=sys.stderr)
    return 0
