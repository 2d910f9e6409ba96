"""The monitor's pieces in-process: timestamps, item parsing, entity tagging, label polarity, index math,
alert rules, and the pipeline over a real database (SQLite and PostgreSQL: ``database_url``): idempotent
replay, resumption, following a growing file, webhook delivery with retries."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from acceltune.errors import UserError
from acceltune.monitor.alerts import Bucket, evaluate
from acceltune.monitor.entities import load_entities
from acceltune.monitor.ingest import Ingester, resume_point, run_stream
from acceltune.monitor.items import CsvParser, JsonLinesParser, Malformed
from acceltune.monitor.models import buckets, items
from acceltune.monitor.reader import InputReader
from acceltune.monitor.sentiment import Polarity
from acceltune.monitor.settings import AlertRules, IndexSettings, WebhookSettings
from acceltune.monitor.store import Row, Store
from acceltune.monitor.timestamps import format_ms, parse_ms
from acceltune.monitor.webhook import WebhookSender

HOUR = 3_600_000
T0 = parse_ms("2024-05-01T00:00:00Z")
LABELS = ("negative", "neutral", "positive")
ENTITIES = """
entities:
  - name: Nokia
    tickers: [NOK]
    aliases: [Nokia Oyj]
  - name: Bank of America
    tickers: [BAC]
  - name: America Movil
    tickers: [AMX]
    aliases: [America]
  - name: Allstate
    tickers: [ALL]
"""


def write_items(path: Path, n: int, *, start: int = 0, text: str = "Nokia reports quarterly results {i}",
                every_ms: int = 60_000) -> Path:
    """n JSON Lines items with ids item-<start>..., one a minute from T0 (appends)."""
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"id": f"item-{i}", "timestamp": format_ms(T0 + i * every_ms), "text": text.format(i=i)}) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- pure parts

def test_timestamps_need_a_zone_and_round_trip_through_milliseconds():
    assert parse_ms("2024-05-01T11:30:00+02:00") == parse_ms("2024-05-01T09:30:00Z") == parse_ms("2024-05-01t09:30:00.000z")
    assert format_ms(parse_ms("2024-05-01T09:30:00.250Z")) == "2024-05-01T09:30:00.250Z"
    assert format_ms(parse_ms("0001-01-01T00:00:00+01:00")) == "0000-12-31T23:00:00.000Z"  # beyond datetime, still one value
    for bad in ("2024-05-01T09:30:00", "2024-05-01", "yesterday", "2024-13-01T00:00:00Z", "20240501T093000Z"):
        with pytest.raises(ValueError):
            parse_ms(bad)


def test_lines_become_items_or_a_reason():
    p = JsonLinesParser()
    item = p.feed(b'{"id": 7, "timestamp": "2024-05-01T09:30:00Z", "text": "hi", "entity": "Nokia"}\n')
    assert (item.id, item.ts, item.entity, item.source) == ("7", parse_ms("2024-05-01T09:30:00Z"), "Nokia", None)
    assert p.feed(b"  \n") is None
    reasons = {}
    for line in (b"not json", b"[1]", b'{"id": "1", "text": "x"}', b'{"id": "1", "timestamp": "soon", "text": "x"}',
                 b'{"id": "1", "timestamp": "2024-05-01T09:30:00Z", "text": " \\t "}',
                 b'{"id": "", "timestamp": "2024-05-01T09:30:00Z", "text": "x"}'):
        with pytest.raises(Malformed) as e:
            p.feed(line)
        reasons[line] = str(e.value)
    assert list(reasons.values())[:3] == ["not JSON", "not a JSON object", "missing field timestamp"]
    assert "bad timestamp" in list(reasons.values())[3] and list(reasons.values())[4:] == ["empty text", "empty id"]

    csv = CsvParser(b"id,timestamp,text,source\n")
    assert csv.feed(b'1,2024-05-01T09:30:00Z,"a ""quoted""\n') is None and csv.pending()  # the quote is open
    item = csv.feed(b'second line",wire\n')
    assert item.text == 'a "quoted"\nsecond line' and item.source == "wire" and not csv.pending()
    with pytest.raises(Malformed, match="3 fields where the header has 4"):
        csv.feed(b"2,2024-05-01T09:30:00Z,x\n")
    with pytest.raises(Malformed, match="no column timestamp"):
        CsvParser(b"id,text\n")


def test_entities_match_whole_words_tickers_by_case_names_in_any_case(tmp_path):
    f = tmp_path / "entities.yaml"
    f.write_text(ENTITIES)
    tag = load_entities(f).tag
    assert tag("NOKIA OYJ and nokia's rivals") == ["Nokia"]
    assert tag("Nokiaphone sales") == [] and tag("nok is not a ticker") == []
    assert tag("$NOK rose; BAC fell") == ["Nokia", "Bank of America"]
    assert tag("all insurers, ALL included") == ["Allstate"]  # ticker ALL only in capitals
    assert tag("Bank of America and America Movil") == ["Bank of America", "America Movil"]
    assert tag("Latin America") == ["America Movil"]  # an alias is a word like any other
    f.write_text("entities:\n  - name: X\n    tickrs: [X]\n")
    with pytest.raises(UserError, match="unknown key"):
        load_entities(f)


def test_polarity_is_read_from_the_labels_or_given():
    p = Polarity.of(["Bearish", "neutral", "Bullish"])
    assert (p.positive, p.negative) == (2, 0)
    assert p.sentiment(np.array([[0.7, 0.2, 0.1]])).round(6).tolist() == [-0.6]
    with pytest.raises(UserError, match="--positive-label"):
        Polarity.of(["good", "bad"])
    assert Polarity.of(["good", "bad"], positive="good", negative="bad").negative == 1


def _b(start: int, index: float, n: int = 20, negative: int = 0) -> Bucket:
    return Bucket(start, n, index * n, negative)


def test_alert_fires_on_a_negative_burst_not_on_noise_nor_on_too_few_items():
    rules = AlertRules(alert_k=3, history=24, min_history=3, min_items=10, negative_share=0.5, min_std=0.05)
    history = [_b(T0 - k * HOUR, x) for k, x in enumerate([0.10, 0.05, 0.12, 0.08, 0.02, 0.11], start=1)]
    burst = evaluate("Nokia", "1h", _b(T0, -0.6, n=20, negative=14), history, rules)
    assert [a.rule for a in burst] == ["index_drop", "negative_share"]
    assert burst[0].key == f"Nokia/1h/{T0}/index_drop" and burst[0].threshold < 0.08 - 3 * 0.035
    assert evaluate("Nokia", "1h", _b(T0, 0.0, negative=4), history, rules) == []  # noise: within k std
    assert evaluate("Nokia", "1h", _b(T0, -0.9, n=9, negative=9), history, rules) == []  # too few items
    assert [a.rule for a in evaluate("Nokia", "1h", _b(T0, -0.9, negative=3), history[:2], rules)] == []  # short history
    few = [_b(T0 - k * HOUR, 0.1, n=5) for k in range(1, 6)]  # history buckets below min_items do not count
    assert evaluate("Nokia", "1h", _b(T0, -0.9, negative=3), few, rules) == []


def test_settings_refuse_bad_values_in_one_line():
    with pytest.raises(UserError, match="--windows"):
        IndexSettings(windows="1h,fortnight")
    assert [w.ms for w in IndexSettings(windows="15m, 1d").spans] == [900_000, 86_400_000]
    with pytest.raises(UserError, match="--negative-share"):
        AlertRules(negative_share=0)
    with pytest.raises(UserError, match="--webhook"):
        WebhookSettings(webhook="ftp://x")


# ---------------------------------------------------------------------------------------------- the database

def _row(i: str, ts: int, sentiment: float, entities=("Nokia",), label: str = "neutral") -> Row:
    return Row(i, ts, format_ms(ts), f"text {i}", None, tuple(entities), label, 0.9, sentiment,
               {"negative": 0.1, "neutral": 0.8, "positive": 0.1}, label == "negative", label == "positive")


def test_the_index_is_the_mean_sentiment_per_bucket_kept_incrementally(database_url):
    store = Store.open(database_url)
    windows = IndexSettings(windows="1h,1d").spans
    rules = AlertRules(negative_share=1.0)
    rows = [_row("a", T0 + 10, 0.5), _row("b", T0 + 20, -0.3, label="negative"), _row("c", T0 + HOUR + 5, 0.2, ("Nokia", "UPM")),
            _row("d", T0 - 1, -1.0, ("UPM",), "negative")]
    store.write_batch(rows[:2], model_version="v", windows=windows, rules=rules)
    inserted, _ = store.write_batch(rows[1:], model_version="v", windows=windows, rules=rules)  # b again: skipped
    assert inserted == ["c", "d"]
    h = store.index_points("Nokia", "1h", since=None, until=None, after=None, limit=10)
    assert [(p["start_ms"], p["n"], round(p["index"], 6), p["negative_share"]) for p in h] == [
        (T0, 2, 0.1, 0.5), (T0 + HOUR, 1, 0.2, 0.0)]
    d = store.index_points("Nokia", "1d", since=None, until=None, after=None, limit=10)
    assert [(p["n"], round(p["index"], 6)) for p in d] == [(3, round((0.5 - 0.3 + 0.2) / 3, 6))]
    upm = store.index_points("UPM", "1h", since=None, until=None, after=None, limit=10)
    assert [p["start_ms"] for p in upm] == [T0 - HOUR, T0 + HOUR]  # 1 ms before midnight: the previous bucket
    every = store.index_points("*", "1d", since=None, until=None, after=None, limit=10)
    assert [p["n"] for p in every] == [1, 3]  # all items, whatever they mention
    page = store.index_points("Nokia", "1h", since=T0, until=None, after=T0, limit=1)
    assert [p["start_ms"] for p in page] == [T0 + HOUR]
    assert [r["id"] for r in store.latest_items("Nokia", before=None, limit=2)] == ["c", "b"]
    assert [r["id"] for r in store.latest_items("Nokia", before=(T0 + 20, "b"), limit=5)] == ["a"]


def test_an_alert_is_stored_once_however_often_its_bucket_changes(database_url):
    store = Store.open(database_url)
    windows = IndexSettings(windows="1h").spans
    rules = AlertRules(min_items=3, negative_share=0.5)
    _, first = store.write_batch([_row(f"n{i}", T0 + i, -0.8, label="negative") for i in range(3)],
                                 model_version="v", windows=windows, rules=rules)
    _, again = store.write_batch([_row(f"m{i}", T0 + 100 + i, -0.8, label="negative") for i in range(3)],
                                 model_version="v", windows=windows, rules=rules)
    assert sorted(a.key for a in first) == [f"*/1h/{T0}/negative_share", f"Nokia/1h/{T0}/negative_share"]
    assert again == [] and len(store.alerts(None, before=None, limit=10)) == 2


@pytest.fixture(scope="module")
def tiny_predictor(tiny_model_dir):
    from acceltune import Predictor

    return Predictor(tiny_model_dir, backend="torch", device="cpu")


def _ingester(store: Store, predictor, **rules) -> Ingester:
    return Ingester(store, Polarity.of(predictor.labels), "tiny", IndexSettings(windows="1h"), AlertRules(**rules))


def _ingest_file(store, predictor, path: Path, *, follow=False, stop=None, batch_size=64, fmt="jsonl"):
    source, resumed = resume_point(store, str(path))
    reader = InputReader(str(path), follow=follow, poll_s=0.01, stop=stop or threading.Event(),
                         start=resumed.offset if resumed else 0, start_line=resumed.line if resumed else 0)
    malformed = []
    try:
        return run_stream(_ingester(store, predictor), lambda t: predictor.scores(t).probabilities, reader, fmt=fmt,
                          batch_size=batch_size, source=source, resumed=resumed,
                          on_malformed=lambda n, why: malformed.append((n, why))), malformed
    finally:
        reader.close()


def _count(store: Store, table=items) -> int:
    with store.engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def test_replaying_a_file_adds_nothing_and_a_restart_resumes(database_url, tiny_predictor, tmp_path):
    store = Store.open(database_url)
    f = write_items(tmp_path / "news.jsonl", 150)
    with open(f, "a") as out:
        out.write("not json\n")
    tally, malformed = _ingest_file(store, tiny_predictor, f)
    assert (tally.inserted, tally.duplicates, tally.malformed, tally.lines) == (150, 0, 1, 151)
    assert malformed == [(151, "not JSON")]
    again, _ = _ingest_file(store, tiny_predictor, f)  # resumes at the end: nothing read
    assert (again.inserted, again.duplicates, again.resumed_at_line) == (0, 0, 151)
    write_items(f, 10, start=150)
    more, _ = _ingest_file(store, tiny_predictor, f)
    assert (more.inserted, more.resumed_at_line, more.lines) == (10, 151, 161)
    copy = tmp_path / "copy.jsonl"  # the same items in another file: read whole, all duplicates
    copy.write_bytes(f.read_bytes())
    replay, _ = _ingest_file(store, tiny_predictor, copy)
    assert (replay.inserted, replay.duplicates) == (0, 160)
    assert _count(store) == 160
    with store.engine.connect() as c:
        total = c.execute(select(func.sum(buckets.c.n)).where(buckets.c.entity == "*")).scalar_one()
    assert total == 160  # the index counted every item once


def test_follow_reads_a_growing_file_until_stopped(tiny_predictor, tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    f = write_items(tmp_path / "feed.jsonl", 5)
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(out=_ingest_file(store, tiny_predictor, f, follow=True, stop=stop)))
    t.start()
    try:
        _wait(lambda: _count(store) == 5, "the first 5 items committed")  # committed without a full batch
        with open(f, "a") as out:
            out.write('{"id": "late", "timestamp": "2024-05-02T00:00:00Z", "text": "half a li')
        write_items(f, 3, start=100)  # ...the line above ends in this append
        _wait(lambda: _count(store) == 7, "the appended lines committed")
    finally:
        stop.set()
        t.join(30)
    tally, malformed = result["out"]
    assert tally.inserted == 7 and malformed == [(6, "not JSON")]


def _wait(condition, what: str, timeout_s: float = 30) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        done.wait(0.01)  # bounded poll of the condition
    raise AssertionError(f"{what}: not reached in {timeout_s} s")


class _FlakyReceiver(http.server.BaseHTTPRequestHandler):
    failures = 2
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers["Idempotency-Key"], body["key"]))
        status = 503 if len(type(self).seen) <= type(self).failures else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_is_retried_until_the_receiver_takes_the_alert(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    _, raised = store.write_batch([_row(f"n{i}", T0 + i, -0.8, ("Nokia",), "negative") for i in range(3)],
                                  model_version="v", windows=IndexSettings(windows="1h").spans,
                                  rules=AlertRules(min_items=3))
    assert len(raised) == 2
    _FlakyReceiver.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = WebhookSender(store, WebhookSettings(webhook=f"http://127.0.0.1:{server.server_port}/hook",
                                                      webhook_retries=3, webhook_backoff_s=0.01))
        assert sender.deliver_pending() == 2
    finally:
        server.shutdown()
    keys = [k for k, _ in _FlakyReceiver.seen]
    first = sorted(a.key for a in raised)[0]
    assert keys[:3] == [first] * 3 and len(keys) == 4  # failed twice, then taken; the second alert at once
    assert all(k == body for k, body in _FlakyReceiver.seen)  # the idempotency key is the alert's key
    assert store.undelivered_alerts() == [] and all(a["delivered"] for a in store.alerts(None, before=None, limit=5))


def test_the_api_ingests_like_the_cli_and_pages_with_cursors(tiny_model_dir, tmp_path):
    import asyncio

    import httpx

    from acceltune.monitor.api import MonitorRoutes
    from acceltune.serve import ServeSettings, create_app

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    routes = MonitorRoutes(store, tiny_model_dir, index=IndexSettings(windows="1h"), rules=AlertRules(),
                           webhook=WebhookSettings())
    app = create_app(ServeSettings(model_dir=tiny_model_dir, backend="torch"), routers=[routes.router])
    batch = {"items": [{"id": f"h{i}", "timestamp": format_ms(T0 + i * 1000), "text": f"Nokia news {i}",
                        "entity": "Nokia"} for i in range(5)]}

    async def main():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=30) as c:
                ready = threading.Event()
                for _ in range(3000):
                    if app.state.serve.ready:
                        break
                    await asyncio.to_thread(ready.wait, 0.01)  # bounded poll of readiness
                first, again = await c.post("/v1/items", json=batch), await c.post("/v1/items", json=batch)
                page1 = (await c.get("/v1/items", params={"entity": "Nokia", "limit": 3})).json()
                page2 = (await c.get("/v1/items", params={"entity": "Nokia", "limit": 3, "cursor": page1["next_cursor"]})).json()
                index = (await c.get("/v1/index", params={"entity": "Nokia", "window": "1h"})).json()
                bad = await c.get("/v1/index", params={"entity": "Nokia", "window": "1h", "since": "yesterday"})
                unknown = await c.get("/v1/index", params={"entity": "Nokia", "window": "1d"})
                return first.json(), again.json(), page1, page2, index, bad, unknown

    first, again, page1, page2, index, bad, unknown = asyncio.run(main())
    assert (first["inserted"], first["duplicates"], again["inserted"], again["duplicates"]) == (5, 0, 0, 5)
    assert [i["id"] for i in page1["items"]] == ["h4", "h3", "h2"] and page2["next_cursor"] is None
    assert [i["id"] for i in page2["items"]] == ["h1", "h0"]
    expected = sum(r["sentiment"] for r in page1["items"] + page2["items"]) / 5
    assert index["points"][0]["n"] == 5 and abs(index["points"][0]["index"] - expected) < 1e-9
    assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]
    assert unknown.status_code == 404 and "1h" in unknown.json()["error"]["message"]
