"""`acceltune recommend serve` against its own OpenAPI document: schemathesis with all checks on a running
server (what the schema allows is accepted, what it forbids is refused, every answer as documented)."""

from __future__ import annotations



from acceltune import train
from acceltune.recommend.task import SequentialRecommendation
from servers import assert_schemathesis_finds_nothing, running_server
from test_recommend import recommend_config, small_settings, write_planted


def test_schemathesis_finds_no_disagreement_between_schema_and_recommend_server(tmp_path):
    inter, _ = write_planted(tmp_path, users=30)
    train(recommend_config(inter, tmp_path / "model", max_steps=2), task=SequentialRecommendation(small_settings()), quiet=True)
    args = ["recommend", "serve", tmp_path / "model", "--db", f"sqlite:///{tmp_path / 'events.db'}"]
    with running_server(args, tmp_path / "server.log") as base:
        assert_schemathesis_finds_nothing(base, tmp_path, max_examples=30)
