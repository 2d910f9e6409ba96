"""`acceltune monitor ingest` as a user runs it, on the tiny model's int8 export (the production path): a real process killed with SIGKILL mid-ingest and restarted
loses and duplicates nothing (both as real processes); malformed lines are reported with their numbers; bad databases and files are
one line and exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import func, select

from acceltune.cli import main
from acceltune.monitor.models import buckets, items
from acceltune.monitor.store import Store
from helpers import run_cli
from test_monitor import write_items

N = 800
ROOT = Path(__file__).resolve().parents[1]


def _count(store: Store) -> int:
    with store.engine.connect() as c:
        return c.execute(select(func.count()).select_from(items)).scalar_one()


def _ingest_cmd(model, db, path, *extra):
    return [sys.executable, "-m", "acceltune", "monitor", "ingest", str(model), "--db", db, "--input", str(path),
            *extra]


def test_kill_9_mid_ingest_then_restart_loses_and_duplicates_nothing(database_url, int8_dir, tmp_path):
    f = write_items(tmp_path / "archive.jsonl", N)
    store = Store.open(database_url)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(_ingest_cmd(int8_dir, database_url, f, "--batch-size", "40"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pause = threading.Event()
        for _ in range(6000):  # bounded poll of the real condition: some batches committed, not all
            if _count(store) >= 80 or proc.poll() is not None:
                break
            pause.wait(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    killed_at = _count(store)
    assert proc.returncode == -signal.SIGKILL and 0 < killed_at < N, (proc.returncode, killed_at, proc.stderr.read()[-2000:])
    assert killed_at % 40 == 0  # whole batches only: a batch and its position commit together
    r = run_cli(*_ingest_cmd(int8_dir, database_url, f)[3:], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {f}" in r.stderr or f"resuming {f.resolve()}" in r.stderr
    assert f"{N - killed_at} items stored, 0 duplicates skipped" in r.stderr, r.stderr[-1000:]
    assert _count(store) == N
    with store.engine.connect() as c:
        indexed = c.execute(select(func.sum(buckets.c.n)).where(buckets.c.entity == "*", buckets.c.window == "1d")).scalar_one()
    assert indexed == N  # the killed batch never reached the index either


def test_malformed_lines_are_reported_with_their_numbers_and_the_stream_goes_on(int8_dir, tmp_path, capsys):
    f = tmp_path / "news.csv"
    f.write_text("id,timestamp,text,entity\n"
                 "1,2024-05-01T09:30:00Z,Nokia profit up,\n"
                 "2,2024-05-01 09:30,no zone,\n"
                 "3,2024-05-01T09:31:00Z,,\n"
                 "1,2024-05-01T09:30:00Z,the same id again,\n"
                 "4,2024-05-01T09:32:00Z,\"a quoted\nheadline\",UPM\n"
                 "5,2024-05-01T09:33:00Z\n")
    code = main(["monitor", "ingest", str(int8_dir), "--db", f"sqlite:///{tmp_path / 'm.db'}", "--input", str(f),
                 "--entities", str(ROOT / "examples" / "monitor" / "entities.yaml")])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("acceltune: line")]
    assert lines[0].startswith("acceltune: line 3: bad timestamp '2024-05-01 09:30'")
    assert lines[1:] == ["acceltune: line 4: empty text (skipped)",
                         "acceltune: line 8: 2 fields where the header has 4 (skipped)"]
    assert "2 items stored, 1 duplicates skipped, 3 malformed lines skipped" in err
    rows = Store.open(f"sqlite:///{tmp_path / 'm.db'}").latest_items(None, before=None, limit=5)
    assert [(x["id"], x["entities"]) for x in rows] == [("4", ["UPM"]), ("1", ["Nokia"])]


def test_a_wrong_database_or_input_is_one_line_and_exit_2(int8_dir, tmp_path, capsys):
    other = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(other) as c:  # someone else's table under the monitor's name
        c.execute("CREATE TABLE monitor_items (id TEXT)")
    for args, message in [
        (["--db", f"sqlite:///{other}", "--input", str(tmp_path / "none.jsonl")], "--input"),
        (["--db", f"sqlite:///{other}", "--input", "-"], "does not hold the monitor's schema"),
        (["--db", "postgresql://nobody@127.0.0.1:1/none", "--input", "-"], "cannot open database"),
    ]:
        code = main(["monitor", "ingest", str(int8_dir), *args])
        err = capsys.readouterr().err
        assert code == 2, err[-2000:]
        assert len(err.strip().splitlines()) == 1 and message in err, err
    r = run_cli("monitor", "ingest", int8_dir, "--db", f"sqlite:///{other}", "--input", "-", timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr  # as a process
