"""`acceltune monitor serve` against its own OpenAPI document: schemathesis with all checks (what the schema
allows is accepted, what it forbids refused, every answer matches its documented status and body), as
tests/test_serve_schema.py does for `acceltune serve`."""

from __future__ import annotations


import httpx

from servers import assert_schemathesis_finds_nothing, running_server


def test_schemathesis_finds_no_disagreement_between_schema_and_monitor_server(int8_dir, tmp_path):
    args = ["monitor", "serve", int8_dir, "--db", f"sqlite:///{tmp_path / 'm.db'}", "--min-items", "2"]
    with running_server(args, tmp_path / "server.log") as base:
        schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
        assert {"/v1/items", "/v1/index", "/v1/alerts", "/v1/entities"} <= set(schema["paths"])
        assert_schemathesis_finds_nothing(base, tmp_path, max_examples=40)
