"""The assistant's server against its own OpenAPI document, as in tests/test_serve_schema.py: schemathesis with
all checks on a running `acceltune assistant` (what the schema allows is answered, what it forbids is refused,
every answer matches its documented status, headers and body)."""

from __future__ import annotations



from servers import assert_schemathesis_finds_nothing, running_server
from test_assistant import REPLIES, constant_models


def test_schemathesis_finds_no_disagreement_between_schema_and_assistant(tmp_path):
    model = constant_models(tmp_path / "models", {"confident": ("card_arrival", 0.9)})["confident"]
    replies = tmp_path / "replies.yaml"
    replies.write_text(REPLIES)
    args = ["assistant", model, "--replies", replies, "--db", f"sqlite:///{tmp_path / 'a.db'}", "--backend", "torch"]
    with running_server(args, tmp_path / "server.log") as base:
        assert_schemathesis_finds_nothing(base, tmp_path, max_examples=50)
