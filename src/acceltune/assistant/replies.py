"""The replies file: one reply template per intent, the slots templates may use, and the hand-off policy.

    threshold: 0.5               # a turn whose confidence is below this is low-confidence (default 0.5)
    low_confidence_turns: 2      # this many low-confidence turns in a row in one conversation hand off (default 2)
    out_of_scope_intent: oos     # the name out-of-scope messages are answered under (default oos)
    fallback: "Sorry, I did not get that. Could you say it another way?"    # a low-confidence turn's reply
    handoff: "I am passing you to a colleague."   # the reply when a conversation is handed off (no own reply)
    slots:                       # what `context` may carry, each with the value used when a request omits it
      name: "there"
    intents:
      card_arrival: "Hello ${name}, cards arrive within 5 working days."   # a reply
      lost_or_stolen_card: {reply: "I am blocking your card now.", handoff: true}
      oos: "I cannot help with that; a colleague will."   # optional: out-of-scope messages (else `handoff`)

Templates are Python's ``string.Template`` (``$slot`` / ``${slot}``, ``$$`` for a dollar sign): substitution
only, no expressions, attribute access or filters, so what a request's context holds is only ever pasted
in, never evaluated, and every slot a template names is known when the file is read. Each slot must be
declared under ``slots`` (a typo is a start-up error naming the intent, not a reply with a hole in it at
run time), and a request's ``context`` may carry only the declared slots (the API's schema lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Mapping, Sequence

from acceltune.errors import UserError

DEFAULT_THRESHOLD = 0.5
"""Below it, a turn is answered with the fallback (a softmax probability; the model's own calibration decides
how high in-scope messages score, so check the review export after a retrain)."""
DEFAULT_LOW_CONFIDENCE_TURNS = 2
DEFAULT_OUT_OF_SCOPE_INTENT = "oos"
DEFAULT_FALLBACK = "Sorry, I did not quite get that. Could you say it another way?"
DEFAULT_HANDOFF = "I am passing you to a colleague who can help. Please stay in this chat."
SLOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
"""Slot names: identifiers (what string.Template can name), at most 64 characters."""
SLOT_VALUE_MAX_CHARS = 500
"""The longest value a request's context may give a slot."""

TOP_LEVEL = ("threshold", "low_confidence_turns", "out_of_scope_intent", "fallback", "handoff", "slots", "intents")
INTENT_KEYS = ("reply", "handoff")


@dataclass(frozen=True)
class IntentReply:
    template: Template
    handoff: bool = False


@dataclass(frozen=True)
class Replies:
    intents: dict[str, IntentReply]
    slots: dict[str, str] = field(default_factory=dict)
    """Slot name -> the value used when a request's context omits it."""
    threshold: float = DEFAULT_THRESHOLD
    low_confidence_turns: int = DEFAULT_LOW_CONFIDENCE_TURNS
    out_of_scope_intent: str = DEFAULT_OUT_OF_SCOPE_INTENT
    fallback: Template = Template(DEFAULT_FALLBACK)
    handoff: Template = Template(DEFAULT_HANDOFF)

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.low_confidence_turns < 1:
            raise UserError(f"low_confidence_turns must be >= 1, got {self.low_confidence_turns}")

    def render(self, template: Template, context: Mapping[str, str]) -> str:
        """The reply with its slots filled from ``context``, declared defaults for the rest (every slot a
        template names was checked against the declared ones when the file was read)."""
        return template.substitute(self.slots, **context)

    @property
    def out_of_scope(self) -> Template:
        """The reply to out-of-scope messages: the out-of-scope intent's own, else the hand-off reply."""
        own = self.intents.get(self.out_of_scope_intent)
        return own.template if own is not None else self.handoff


def load_replies(path: str | Path, labels: Sequence[str]) -> Replies:
    """Read and check a replies file against the model's labels; every problem is one UserError line."""
    import yaml

    p = Path(path)
    where = f"--replies {path}"
    if not p.is_file():
        raise UserError(f"{where}: no such file (write one reply per intent: see docs/assistant.md)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text: save it as UTF-8") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with an 'intents' entry (see docs/assistant.md)")
    unknown = sorted(str(k) for k in raw if k not in TOP_LEVEL)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(TOP_LEVEL)}")
    slots = _slots(raw.get("slots") or {}, where)
    oos_name = _string(raw.get("out_of_scope_intent", DEFAULT_OUT_OF_SCOPE_INTENT), "out_of_scope_intent", where)
    intents_raw = raw.get("intents")
    if not isinstance(intents_raw, dict) or not intents_raw:
        raise UserError(f"{where}: 'intents' must map each of the model's intents to its reply")
    names = {str(k): v for k, v in intents_raw.items()}
    labels = [str(label) for label in labels]
    missing = [label for label in labels if label not in names and label != oos_name]
    if missing:
        raise UserError(f"{where} has no reply for {len(missing)} intent(s) the model knows: {', '.join(missing)}")
    extra = sorted(set(names) - set(labels) - {oos_name})
    if extra:
        raise UserError(f"{where} names {len(extra)} intent(s) the model does not know: {', '.join(extra)} "
                        f"(the model's intents are in its acceltune.json; out-of-scope replies go under {oos_name!r})")
    intents = {name: _intent(name, value, slots, where) for name, value in names.items()}
    return Replies(
        intents=intents, slots=slots,
        threshold=_number(raw.get("threshold", DEFAULT_THRESHOLD), "threshold", where),
        low_confidence_turns=_count(raw.get("low_confidence_turns", DEFAULT_LOW_CONFIDENCE_TURNS), where),
        out_of_scope_intent=oos_name,
        fallback=_template(raw.get("fallback", DEFAULT_FALLBACK), "the fallback reply", slots, where),
        handoff=_template(raw.get("handoff", DEFAULT_HANDOFF), "the hand-off reply", slots, where),
    )


def _slots(raw, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: 'slots' must map each slot name to its default value, e.g. name: there")
    out = {}
    for name, default in raw.items():
        if not isinstance(name, str) or not SLOT_NAME.match(name):
            raise UserError(f"{where}: slot name {name!r} is not a name: use letters, digits and _, starting with a letter")
        if not isinstance(default, (str, int, float)) or isinstance(default, bool):
            raise UserError(f"{where}: slot {name!r} needs a default value (text), got {default!r}")
        out[name] = str(default)
    return out


def _intent(name: str, value, slots: dict[str, str], where: str) -> IntentReply:
    if isinstance(value, str):
        return IntentReply(_template(value, f"intent {name!r}", slots, where))
    if not isinstance(value, dict):
        raise UserError(f"{where}: intent {name!r} needs a reply: a text, or {{reply: TEXT, handoff: true|false}}")
    unknown = sorted(str(k) for k in value if k not in INTENT_KEYS)
    if unknown:
        raise UserError(f"{where}: intent {name!r} has unknown key(s) {', '.join(unknown)}; the keys are reply, handoff")
    handoff = value.get("handoff", False)
    if not isinstance(handoff, bool):
        raise UserError(f"{where}: intent {name!r}: handoff must be true or false, got {handoff!r}")
    if "reply" not in value:
        raise UserError(f"{where}: intent {name!r} has no 'reply'")
    return IntentReply(_template(value["reply"], f"intent {name!r}", slots, where), handoff)


def _template(text, what: str, slots: dict[str, str], where: str) -> Template:
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: {what}: the reply must be a non-empty text, got {text!r}")
    template = Template(text)
    if not template.is_valid():
        raise UserError(f"{where}: {what}: malformed template {text!r}: write $slot or ${{slot}}, and $$ for a dollar sign")
    undeclared = [s for s in template.get_identifiers() if s not in slots]
    if undeclared:
        raise UserError(f"{where}: {what} uses slot(s) {', '.join(undeclared)} not declared under 'slots' "
                        f"(declared: {', '.join(slots) or 'none'}): declare them with a default value, or fix the name")
    return template


def _string(value, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} must be a non-empty text, got {value!r}")
    return value.strip()


def _number(value, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{where}: {key} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: low_confidence_turns must be a whole number >= 1, got {value!r}")
    return value


def scaffold(labels: Sequence[str]) -> str:
    """A replies file for a model's labels, every setting at its default and a placeholder reply per intent to edit."""
    import yaml

    settings = {"threshold": DEFAULT_THRESHOLD, "low_confidence_turns": DEFAULT_LOW_CONFIDENCE_TURNS,
                "out_of_scope_intent": DEFAULT_OUT_OF_SCOPE_INTENT, "fallback": DEFAULT_FALLBACK, "handoff": DEFAULT_HANDOFF,
                "slots": {"name": "there"}}
    intents = {str(label): f"(the reply to {str(label).replace('$', '$$')}: edit this file)" for label in labels}
    intents[DEFAULT_OUT_OF_SCOPE_INTENT] = DEFAULT_HANDOFF  # out of scope: handed off, whether or not a learnt class
    header = ("# Replies for acceltune assistant (docs/assistant.md). Write each intent's reply; ${name} is filled from\n"
              "# the request's context. Mark an intent {reply: ..., handoff: true} to always pass it to a person.\n")
    return (header + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, width=1000)
            + yaml.safe_dump({"intents": intents}, sort_keys=False, allow_unicode=True, width=1000))
