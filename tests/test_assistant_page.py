"""The assistant's chat page in a real headless browser: it posts the messages of its ?say= link to
/v1/reply and shows each reply with the chosen intent and confidence, and the hand-off when it comes."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from acceltune.assistant.store import ConversationStore
from browser import browser_or_skip, rendered_dom
from servers import running_server
from test_assistant import REPLIES, constant_models


def test_the_chat_page_shows_the_reply_the_intent_and_the_handoff(tmp_path):
    browser_or_skip()
    model = constant_models(tmp_path / "models", {"unsure": ("greeting", 0.4)})["unsure"]
    replies = tmp_path / "replies.yaml"
    replies.write_text(REPLIES)
    db = f"sqlite:///{tmp_path / 'assistant.db'}"
    with running_server(["assistant", model, "--replies", replies, "--db", db, "--backend", "torch"],
                        tmp_path / "server.log") as base:
        # Two unsure turns in a row (threshold 0.5, low_confidence_turns 2): a reply asking to rephrase, then a hand-off.
        query = urlencode([("say", "where is my card"), ("say", "it has not come"), ("conversation", "page-1"),
                           ("slot.name", "Ann")])
        dom = rendered_dom(f"{base}/?{query}", tmp_path / "profile")
    items = re.findall(r'<li class="([^"]*)"[^>]*>(.*?)</li>', dom, re.S)
    shown = [(cls, html.unescape(re.sub(r"<[^>]+>", " | ", body))) for cls, body in items]
    assert [cls for cls, _ in shown] == ["user", "assistant", "user", "assistant handoff"], dom[-3000:]
    assert "Sorry Ann, could you say that another way?" in shown[1][1]
    assert "intent greeting · confidence 40.0%" in shown[1][1] and "Handed off" not in shown[1][1]
    assert "Passing you to a colleague, Ann." in shown[3][1] and "Handed off to a person" in shown[3][1]
    assert "too many low-confidence turns in a row" in shown[3][1]
    turns = ConversationStore(db).conversation("page-1")
    assert [(t.message, t.handoff, t.context) for t in turns] == [
        ("where is my card", False, {"name": "Ann"}), ("it has not come", True, {"name": "Ann"})]
