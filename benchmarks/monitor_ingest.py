"""The monitor's numbers, printed as JSON: end-to-end ingest rate (parse, tag, score, store, update the index)
on SQLite and PostgreSQL, the peak RSS and rate of a backfill, and API latency with that backfill stored.

    # a modest run (about 3 minutes on 2 busy cores)
    python benchmarks/monitor_ingest.py --model /tmp/fpb_int8 --items 5000 --backfill-items 20000 \
        --postgres-url postgresql://postgres@127.0.0.1:55432/postgres
    # the real backfill: 1,000,000 items (about 20 minutes at 1,000 items/s), then GET /v1/index p99 over it
    python benchmarks/monitor_ingest.py --model /tmp/fpb_int8 --items 5000 --backfill-items 1000000

The model: `acceltune export runs/fpb --format onnx --quantize int8 --output /tmp/fpb_int8`. Items are synthetic
headlines in Financial PhraseBank's style about six Finnish companies (examples/monitor/entities.yaml), one every
3 seconds, with a negative burst; `--write-items FILE` writes such a file and exits (examples/monitor/items.jsonl:
`--write-items examples/monitor/items.jsonl --items 3000 --spacing-s 60`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = ROOT / "examples" / "monitor" / "entities.yaml"
START_MS = 1714521600000  # 2024-05-01T00:00:00Z
COMPANIES = [("Nokia", "Nokia Oyj", "NOK"), ("Stora Enso", "Stora", "STERV"), ("Fortum", "Fortum Oyj", "FORTUM"),
             ("Kone", "Kone Corporation", "KNEBV"), ("Sampo", "Sampo Group", "SAMPO"), ("UPM", "UPM-Kymmene", "UPM")]
PHRASES = {
    "positive": ["{co}'s operating profit rose to EUR {n} mn from EUR {m} mn", "{co} wins a EUR {n} mn order from {client}",
                 "{co} raises its full-year outlook after strong {q} sales", "Net sales of {co} increased by {p} % in {q}",
                 "{co} shares jump after the company beat forecasts"],
    "negative": ["{co} swings to an operating loss of EUR {n} mn", "{co} to cut {n} jobs as sales fall",
                 "{co} shares slump after a profit warning", "Net sales of {co} decreased by {p} % in {q}",
                 "{co} lowers its guidance, citing weak demand"],
    "neutral": ["{co} will publish its interim report on {day}", "{co} appoints a new chief financial officer",
                "{co} holds its annual general meeting in {city}", "{co} has about {n} employees in {city}",
                "The order was placed with {co} in {q}"],
}
WORDS = {"client": ["Siemens", "a Swedish utility", "the city of Oulu", "Ericsson"], "q": ["Q1", "Q2", "Q3", "the first half"],
         "day": ["Monday", "Tuesday", "24 April", "3 May"], "city": ["Helsinki", "Espoo", "Tampere", "Vantaa"]}


def synthetic_items(n: int, *, seed: int = 0, spacing_s: int = 3, burst=("Nokia", 0.45, 0.5)):
    """n item dicts, one every spacing_s seconds; burst: (entity, from, to) as fractions of n where its news turn negative."""
    rng = random.Random(seed)
    burst_company = next(c for c in COMPANIES if c[0] == burst[0])
    for i in range(n):
        burst_now = burst[1] <= i / n < burst[2]
        name, alias, ticker = burst_company if burst_now and rng.random() < 0.5 else COMPANIES[rng.randrange(len(COMPANIES))]
        in_burst = burst_now and name == burst[0]
        kind = "negative" if in_burst and rng.random() < 0.9 else rng.choices(["positive", "negative", "neutral"], [3, 2, 5])[0]
        mention = rng.choice([name, name, alias, f"${ticker}"])
        fields = {k: rng.choice(v) for k, v in WORDS.items()}
        text = rng.choice(PHRASES[kind]).format(co=mention, n=rng.randint(2, 900), m=rng.randint(2, 900),
                                                p=rng.randint(1, 40), **fields)
        ts = START_MS + i * spacing_s * 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000))
        yield {"id": f"syn-{seed}-{i}", "timestamp": stamp, "text": text, "source": "synthetic"}


def write_items(path: Path, n: int, seed: int = 0, spacing_s: int = 3) -> Path:
    with open(path, "w") as f:
        for item in synthetic_items(n, seed=seed, spacing_s=spacing_s):
            f.write(json.dumps(item) + "\n")
    return path


def ingest_in_process(model: str, db: str, path: Path, batch_size: int) -> dict:
    """End-to-end through the same pipeline as `monitor ingest` (no process start-up in the time)."""
    from acceltune import Predictor
    from acceltune.monitor.entities import load_entities
    from acceltune.monitor.ingest import Ingester, resume_point, run_stream
    from acceltune.monitor.reader import InputReader
    from acceltune.monitor.sentiment import Polarity
    from acceltune.monitor.settings import AlertRules, IndexSettings
    from acceltune.monitor.store import Store

    store = Store.open(db)
    predictor = Predictor(model)
    predictor.scores(["warm up"] * 8)
    ingester = Ingester(store, Polarity.of(predictor.labels), predictor.info.version, IndexSettings(), AlertRules(),
                        load_entities(ENTITIES))
    source, resumed = resume_point(store, str(path))
    reader = InputReader(str(path), follow=False, poll_s=0.5, stop=threading.Event())
    scoring = [0.0]

    def score(texts):
        t0 = time.perf_counter()
        probs = predictor.scores(texts).probabilities
        scoring[0] += time.perf_counter() - t0
        return probs

    started = time.perf_counter()
    tally = run_stream(ingester, score, reader, fmt="jsonl", batch_size=batch_size, source=source, resumed=resumed,
                       on_malformed=lambda n, why: None)
    elapsed = time.perf_counter() - started
    reader.close()
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()[:2000]]
    t0 = time.perf_counter()
    predictor.scores(texts)
    score_only = len(texts) / (time.perf_counter() - t0)
    return {"items": tally.inserted, "seconds": round(elapsed, 2), "items_per_s": round(tally.inserted / elapsed, 1),
            "alerts": tally.alerts, "scoring_only_items_per_s": round(score_only, 1),
            # everything but the model (read, parse, tag, dedup, store, index, alerts): robust to a busy machine
            "pipeline_ms_per_item_besides_scoring": round((elapsed - scoring[0]) * 1000 / max(tally.inserted, 1), 3)}


def backfill(model: str, db: str, path: Path, timeout_s: int) -> dict:
    """`acceltune monitor ingest` as a user runs it (a fresh process), its wall time and peak RSS."""
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "acceltune", "monitor", "ingest", model, "--db", db, "--input", str(path),
                        "--entities", str(ENTITIES), "--no-progress"], capture_output=True, text=True, timeout=timeout_s,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    elapsed = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"backfill failed: {r.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest child so far
    return {"seconds_with_startup": round(elapsed, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
            "summary": r.stderr.strip().splitlines()[-1]}


def api_latency(model: str, db: str, requests: int) -> dict:
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from servers import running_server

    out = {}
    with tempfile.TemporaryDirectory() as tmp, running_server(["monitor", "serve", model, "--db", db], Path(tmp) / "log") as base:
        with httpx.Client(base_url=base, timeout=30) as c:
            for name, path in {"index_1h": "/v1/index?entity=Nokia&window=1h", "index_1d": "/v1/index?entity=*&window=1d",
                               "items": "/v1/items?entity=Nokia&limit=50", "alerts": "/v1/alerts?limit=50",
                               "entities": "/v1/entities"}.items():
                assert c.get(path).status_code == 200
                times = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200
                times.sort()
                out[name] = {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2),
                             "points_or_rows": len(next(iter(v for k, v in r.json().items() if isinstance(v, list))))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="/tmp/fpb_int8", help="model directory (the int8 export of runs/fpb)")
    p.add_argument("--items", type=int, default=5000, help="items for the end-to-end rate, per database")
    p.add_argument("--backfill-items", type=int, default=20000, help="items of the backfill (1000000 for the real run)")
    p.add_argument("--postgres-url", help="also measure on this PostgreSQL (a fresh database is created and dropped)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--requests", type=int, default=300, help="requests per API route for the latency")
    p.add_argument("--timeout-s", type=int, default=3600, help="bound of the backfill process")
    p.add_argument("--write-items", metavar="FILE", help="only write --items synthetic items to FILE")
    p.add_argument("--spacing-s", type=int, default=3, help="seconds between two items' timestamps")
    args = p.parse_args()
    if args.write_items:
        write_items(Path(args.write_items), args.items, spacing_s=args.spacing_s)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()
    result = {"model": args.model, "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load],
              "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        e2e = write_items(tmp / "e2e.jsonl", args.items, seed=1)
        result["sqlite"] = ingest_in_process(args.model, f"sqlite:///{tmp / 'e2e.db'}", e2e, args.batch_size)
        if args.postgres_url:
            result["postgresql"] = _with_postgres(args.postgres_url, lambda url: ingest_in_process(args.model, url, e2e, args.batch_size))
        big = write_items(tmp / "backfill.jsonl", args.backfill_items, seed=2)
        db = f"sqlite:///{tmp / 'backfill.db'}"
        result["backfill_sqlite"] = {"items": args.backfill_items, **backfill(args.model, db, big, args.timeout_s)}
        result["backfill_sqlite"]["items_per_s_with_startup"] = round(args.backfill_items / result["backfill_sqlite"]["seconds_with_startup"], 1)
        result["api_latency_sqlite"] = {"items_stored": args.backfill_items, **api_latency(args.model, db, args.requests)}
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


def _with_postgres(admin: str, measure):
    import uuid

    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        return measure(admin.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
