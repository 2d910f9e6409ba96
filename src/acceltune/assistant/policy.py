"""The hand-off policy: from one prediction and the conversation's low-confidence streak to an answer.

In this order:

1. out of scope (the model's out-of-scope rule says so, or its best class is the out-of-scope intent) ->
   hand off (``out_of_scope``);
2. confidence below the threshold -> a low-confidence turn: the fallback reply asking to rephrase
   (``low_confidence``), or, on the ``low_confidence_turns``-th such turn in a row, hand off
   (``low_confidence_streak``). A confident turn ends the streak, and so does a hand-off;
3. an intent marked ``handoff: true`` -> its reply, and hand off (``handoff_intent``);
4. otherwise the intent's reply.

A model without an out-of-scope rule gives no ``oos`` key: then only rules 2 and 3 hand off.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Literal

from acceltune.assistant.replies import Replies

Reason = Literal["out_of_scope", "low_confidence", "low_confidence_streak", "handoff_intent"]
REASONS: tuple[str, ...] = Reason.__args__


@dataclass(frozen=True)
class Decision:
    intent: str
    """What the message was answered as: the model's label, or the out-of-scope intent."""
    confidence: float
    oos: bool
    template: Template
    handoff: bool
    reason: Reason | None
    low_confidence: bool
    streak: int
    """The conversation's low-confidence streak after this turn."""


def decide(replies: Replies, prediction: dict, streak: int) -> Decision:
    """The answer to one message. ``prediction``: a Predictor result (label, score, and oos when the model
    has an out-of-scope rule); ``streak``: low-confidence turns in a row before this one."""
    label, confidence = prediction["label"], float(prediction["score"])
    oos = bool(prediction.get("oos", False)) or label == replies.out_of_scope_intent
    if oos:
        return Decision(replies.out_of_scope_intent, confidence, True, replies.out_of_scope, True, "out_of_scope",
                        False, 0)
    if confidence < replies.threshold:
        streak += 1
        if streak >= replies.low_confidence_turns:
            return Decision(label, confidence, False, replies.handoff, True, "low_confidence_streak", True, 0)
        return Decision(label, confidence, False, replies.fallback, False, "low_confidence", True, streak)
    intent = replies.intents[label]
    return Decision(label, confidence, False, intent.template, intent.handoff,
                    "handoff_intent" if intent.handoff else None, False, 0)
