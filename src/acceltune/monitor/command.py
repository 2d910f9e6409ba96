"""`acceltune monitor ingest|serve`: thin commands over the monitor's modules (see docs/monitor.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

from acceltune import add_dataclass_arguments, dataclass_values
from acceltune.errors import UserError
from acceltune.monitor.settings import AlertRules, IndexSettings, ReadSettings, WebhookSettings

log = logging.getLogger("acceltune.monitor")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model from 'acceltune train' or 'acceltune export' (int8 ONNX: fastest on a CPU)")
    p.add_argument("--db", default="sqlite:///monitor.db", help="database URL: SQLite file or postgresql://user@host/db")
    p.add_argument("--entities", metavar="YAML", help="entities file (name, tickers, aliases) to tag items that name no entity")
    for title, cls in (("index", IndexSettings), ("alerts", AlertRules), ("webhook", WebhookSettings)):
        add_dataclass_arguments(p.add_argument_group(title), cls)


def add_arguments(p: argparse.ArgumentParser) -> None:
    HelpFormatter = p.formatter_class  # the one `acceltune` gives every command (shows defaults)
    sub = p.add_subparsers(dest="monitor_command", metavar="SUBCOMMAND", required=True)
    ingest = sub.add_parser("ingest", formatter_class=HelpFormatter,
                            help="score items from a file or stdin into the database (idempotent, resumable)")
    _common(ingest)
    ingest.add_argument("--input", required=True, metavar="FILE|-", help="JSON Lines or CSV items; - reads stdin")
    ingest.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"), help="inference backend")
    ingest.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal and the input a file)")
    add_dataclass_arguments(ingest.add_argument_group("input"), ReadSettings)

    serve = sub.add_parser("serve", formatter_class=HelpFormatter,
                           help="the HTTP API (POST /v1/items, GET /v1/index, /v1/alerts, /v1/items) and the dashboard at /")
    _common(serve)
    from acceltune.extras import require

    require("fastapi", "monitor")
    from acceltune.serve import add_server_arguments

    add_server_arguments(serve.add_argument_group("server"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start plugin chatter
    return _ingest(args) if args.monitor_command == "ingest" else _serve(args)


def _settings(args):
    return (IndexSettings(**dataclass_values(args, IndexSettings)), AlertRules(**dataclass_values(args, AlertRules)),
            WebhookSettings(**dataclass_values(args, WebhookSettings)))


def _tagger(args):
    from acceltune.monitor.entities import load_entities

    return load_entities(args.entities) if args.entities else None


def _ingest(args) -> int:
    from acceltune import Predictor
    from acceltune.monitor.ingest import Ingester, resume_point, run_stream
    from acceltune.monitor.progress import IngestProgress
    from acceltune.monitor.reader import InputReader
    from acceltune.monitor.sentiment import Polarity
    from acceltune.monitor.store import Store
    from acceltune.monitor.webhook import WebhookSender

    index, rules, hook = _settings(args)
    read = ReadSettings(**dataclass_values(args, ReadSettings))
    tagger = _tagger(args)
    if args.input != "-" and not Path(args.input).is_file():
        raise UserError(f"--input {args.input}: no such file")
    store = Store.open(args.db)
    predictor = Predictor(args.model_dir, backend=args.backend)
    polarity = Polarity.of(predictor.labels, index.positive_label, index.negative_label)
    fmt = read.format
    if fmt == "auto" and args.input != "-":
        fmt = "csv" if args.input.lower().endswith(".csv") else "jsonl"

    stop = threading.Event()
    with ExitStack() as stack:
        for sig in (signal.SIGINT, signal.SIGTERM):  # finish and commit the batch in hand, then stop
            stack.callback(signal.signal, sig, signal.signal(sig, lambda signum, frame: stop.set()))
        sender = WebhookSender(store, hook).start() if hook.webhook else None
        if sender is not None:
            stack.callback(sender.close)

        def on_alerts(alerts):
            for a in alerts:
                log.warning("alert %s: %s", a.key, a.message)
            if sender is not None:
                sender.notify()

        ingester = Ingester(store, polarity, predictor.info.version, index, rules, tagger, on_alerts)
        source, resumed = resume_point(store, args.input)
        if resumed is not None:
            log.info("resuming %s after line %d (byte %d)", args.input, resumed.line, resumed.offset)
        reader = InputReader(args.input, follow=read.follow, poll_s=read.poll_interval_s, stop=stop,
                             start=resumed.offset if resumed else 0, start_line=resumed.line if resumed else 0)
        stack.callback(reader.close)
        show = args.progress if args.progress is not None else (sys.stderr.isatty() and args.input != "-")
        bar = stack.enter_context(IngestProgress(None if reader.pipe else Path(args.input).stat().st_size,
                                                 reader.offset)) if show else None
        tally = run_stream(ingester, lambda texts: predictor.scores(texts).probabilities, reader, fmt=fmt,
                           batch_size=read.batch_size, source=source, resumed=resumed,
                           on_malformed=lambda n, why: print(f"acceltune: line {n}: {why} (skipped)", file=sys.stderr),
                           on_batch=(lambda t, offset: bar.update(t.inserted + t.duplicates, offset)) if bar else
                           (lambda t, offset: None))
    print(f"acceltune: {tally.inserted} items stored, {tally.duplicates} duplicates skipped, {tally.malformed} "
          f"malformed lines skipped, {tally.alerts} alerts; read to line {tally.lines}"
          + (" (stopped)" if stop.is_set() else ""), file=sys.stderr)
    return 0


def _serve(args) -> int:
    from acceltune.monitor.api import IN_ORDER, MonitorRoutes
    from acceltune.monitor.store import Store
    from acceltune.serve import create_app, run_server, settings_from_args

    index, rules, hook = _settings(args)
    settings = settings_from_args(args, model_dir=args.model_dir).in_order(IN_ORDER)
    routes = MonitorRoutes(Store.open(args.db), args.model_dir, index=index, rules=rules, webhook=hook,
                           tagger=_tagger(args))
    return run_server(lambda on_load_error: create_app(
        settings, routers=[routes.router], pages=[routes.page_router], on_load_error=on_load_error, title="acceltune monitor",
        description="Financial news sentiment: items, an index per entity, alerts. See docs/monitor.md."),
        settings, access_log=args.access_log)
