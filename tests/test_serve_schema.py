"""The server against its own OpenAPI document, as clients nobody here wrote see it: schemathesis with all
checks on a running `acceltune serve` (what the schema allows is accepted, what it forbids is refused,
every answer matches its documented status, headers and body)."""

from __future__ import annotations



from servers import assert_schemathesis_finds_nothing, running_server


def test_schemathesis_finds_no_disagreement_between_schema_and_server(tiny_model_dir, tmp_path):
    with running_server(["serve", tiny_model_dir, "--backend", "torch"], tmp_path / "server.log") as base:
        assert_schemathesis_finds_nothing(base, tmp_path, max_examples=100)
