"""The dashboard in a real headless Chromium, offline: the page loads its vendored chart library, charts the
index of each entity from the API, lists the latest items and shows the alert."""

from __future__ import annotations

import re

from browser import browser_or_skip, rendered_dom
from servers import running_server
from test_monitor import HOUR, T0, _row

from acceltune.monitor.settings import AlertRules, IndexSettings
from acceltune.monitor.store import Store


def test_dashboard_charts_the_index_and_shows_the_alert_in_headless_chromium(int8_dir, tmp_path):
    browser_or_skip()
    db = f"sqlite:///{tmp_path / 'm.db'}"
    store = Store.open(db)
    rules = AlertRules(min_items=3, negative_share=0.5)
    calm = [_row(f"c{h}-{i}", T0 + h * HOUR + i, 0.25, ("Nokia",), "positive") for h in range(4) for i in range(3)]
    burst = [_row(f"b{i}", T0 + 4 * HOUR + i, -0.8, ("Nokia",), "negative") for i in range(4)]
    store.write_batch(calm, model_version="v", windows=IndexSettings().spans, rules=rules)
    _, raised = store.write_batch(burst, model_version="v", windows=IndexSettings().spans, rules=rules)
    assert any(a.key == f"Nokia/1h/{T0 + 4 * HOUR}/negative_share" for a in raised)

    with running_server(["monitor", "serve", int8_dir, "--db", db], tmp_path / "server.log") as base:
        dom = rendered_dom(f"{base}/", tmp_path / "profile", budget_ms=8000)
    assert 'data-state="ok"' in dom, dom[-3000:]
    nokia = re.search(r'<div class="chart" data-entity="Nokia">(.*?)</div>\s*(?=<div class="chart"|</div>)', dom, re.S)
    assert nokia and "<canvas" in nokia.group(1), dom[-4000:]  # uPlot drew into its canvas
    # The chart's caption comes from the data: the latest 1h bucket is the burst.
    assert "index -0.800 over 4 items (2024-05-01T04:00:00.000Z)" in dom
    assert re.search(r'<li class="alert" data-rule="negative_share">Nokia 1h from 2024-05-01T04:00:00.000Z: 100% of 4 items', dom)
    assert dom.count('<tr class="item">') == 16 and ">negative</td>" in dom


def test_with_api_keys_the_dashboard_asks_for_one_and_uses_a_key_from_its_link(int8_dir, tmp_path):
    browser_or_skip()
    db = f"sqlite:///{tmp_path / 'm.db'}"
    Store.open(db).write_batch([_row("a", T0, 0.5, ("Nokia",), "positive")], model_version="v",
                               windows=IndexSettings().spans, rules=AlertRules())
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    with running_server(["monitor", "serve", int8_dir, "--db", db, "--api-key-file", keys], tmp_path / "server.log") as base:
        asked = rendered_dom(f"{base}/", tmp_path / "profile1", budget_ms=3000)
        keyed = rendered_dom(f"{base}/#key=k1", tmp_path / "profile2", budget_ms=6000)
    assert 'data-state="unauthorized"' in asked and '<form id="key-form">' in asked, asked[-3000:]  # shown, not hidden
    assert 'data-state="ok"' in keyed and '<form id="key-form" hidden="">' in keyed, keyed[-3000:]
    assert '<div class="chart" data-entity="Nokia">' in keyed
