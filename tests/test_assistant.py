"""The customer-service assistant: replies and hand-offs through POST /v1/reply on the shared server, the
replies file's start-up checks, conversations stored with a bounded retention, and the review export that
`acceltune train` reads once labelled.

The models are tiny BERTs whose head gives every message the same probabilities (weights zeroed, the bias
set to their logarithms), so each test knows the intent and confidence the assistant sees.
"""

from __future__ import annotations

import asyncio
import csv
import math
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from acceltune import DataArgs, Predictor, ServeSettings, UserError, create_app, load_splits
from acceltune.assistant.app import create_assistant_app
from acceltune.assistant.policy import decide
from acceltune.assistant.replies import load_replies
from acceltune.assistant.review import COLUMNS, export_for_review
from acceltune.assistant.store import ConversationStore, Turn, utcnow
from conftest import make_tiny_bert_dir
from helpers import run_cli
from test_serve_routers import serving

LABELS = ["card_arrival", "greeting", "human", "oos"]

REPLIES = """\
threshold: 0.5
low_confidence_turns: 2
fallback: "Sorry ${name}, could you say that another way?"
handoff: "Passing you to a colleague, ${name}."
slots:
  name: there
  card: your card
intents:
  card_arrival: "Hi ${name}, ${card} arrives in 3 days. It costs $$0."
  greeting: "Hello ${name}!"
  human: {reply: "Connecting you to a person.", handoff: true}
  oos: "I cannot help with that; a colleague will."
"""


def constant_models(root: Path, heads: dict[str, tuple[str, float]]) -> dict[str, Path]:
    """Tiny models (one random body, copied) whose head gives every message intent ``best`` with probability
    ``p``, the rest shared evenly: {name: (best, p)} -> {name: model directory}."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    base = make_tiny_bert_dir(root / "base", labels=LABELS)
    weights = load_file(base / "model.safetensors")
    out = {}
    for name, (best, p) in heads.items():
        d = Path(shutil.copytree(base, root / name))
        probs = [p if label == best else (1 - p) / (len(LABELS) - 1) for label in LABELS]
        save_file({**weights, "classifier.weight": torch.zeros_like(weights["classifier.weight"]),
                   "classifier.bias": torch.log(torch.tensor(probs))}, d / "model.safetensors", metadata={"format": "pt"})
        out[name] = d
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return constant_models(tmp_path_factory.mktemp("assistant_models"), {
        "confident": ("card_arrival", 0.9), "unsure": ("greeting", 0.4), "human": ("human", 0.8), "oos": ("oos", 0.7)})


@pytest.fixture
def replies_file(tmp_path) -> Path:
    path = tmp_path / "replies.yaml"
    path.write_text(REPLIES)
    return path


def assistant_app(model_dir: Path, replies_path: Path, store: ConversationStore, **settings):
    replies = load_replies(replies_path, LABELS)
    return create_assistant_app(ServeSettings(model_dir=model_dir, **settings), replies, store)


def talk(app, *bodies: dict, headers: dict | None = None) -> list[httpx.Response]:
    """POST each body to /v1/reply in order, on the app's own lifespan."""
    async def main():
        async with serving(app) as c:
            return [await c.post("/v1/reply", json=b, headers=headers) for b in bodies]

    return asyncio.run(main())


def say(text: str, conversation: str = "c1", **context) -> dict:
    return {"message": text, "conversation_id": conversation, **({"context": context} if context else {})}


# ------------------------------------------------------------------------------------------ replies


def test_a_confident_message_gets_its_intents_reply_with_slots_from_context(models, replies_file, database_url):
    store = ConversationStore(database_url)
    r1, r2 = talk(assistant_app(models["confident"], replies_file, store),
                  say("where is my card", name="Ann"), say("and now?", card="the new card"))
    assert r1.status_code == 200, r1.text
    assert r1.json() == {"intent": "card_arrival", "confidence": pytest.approx(0.9, abs=1e-5), "oos": False,
                         "reply": "Hi Ann, your card arrives in 3 days. It costs $0.", "handoff": False, "reason": None}
    assert r2.json()["reply"] == "Hi there, the new card arrives in 3 days. It costs $0."  # an omitted slot: its default
    turns = store.conversation("c1")
    assert [(t.message, t.intent, t.handoff, t.low_confidence) for t in turns] == [
        ("where is my card", "card_arrival", False, False), ("and now?", "card_arrival", False, False)]
    assert turns[0].context == {"name": "Ann"}


def test_a_low_confidence_streak_hands_off_per_conversation_and_survives_a_restart(models, replies_file, database_url):
    store = ConversationStore(database_url)
    first = talk(assistant_app(models["unsure"], replies_file, store),
                 say("hmm", "a"), say("hmm?", "b"), say("hmmm", "a"))
    answers = [r.json() for r in first]
    assert [(a["handoff"], a["reason"]) for a in answers] == [
        (False, "low_confidence"), (False, "low_confidence"), (True, "low_confidence_streak")]
    assert answers[0]["reply"] == "Sorry there, could you say that another way?"
    assert answers[2]["reply"] == "Passing you to a colleague, there." and answers[2]["intent"] == "greeting"
    # The streak lives in the database: a new server continues conversation b's, and a's restarted at the hand-off.
    again = [r.json() for r in talk(assistant_app(models["unsure"], replies_file, store), say("eh", "b"), say("eh", "a"))]
    assert [(a["handoff"], a["reason"]) for a in again] == [(True, "low_confidence_streak"), (False, "low_confidence")]
    # A confident turn ends the streak.
    talk(assistant_app(models["confident"], replies_file, store), say("my card", "a"))
    last = talk(assistant_app(models["unsure"], replies_file, store), say("eh", "a"))[0].json()
    assert (last["handoff"], last["reason"]) == (False, "low_confidence")


def test_turns_of_one_conversation_in_one_batch_are_decided_in_order(models, replies_file, database_url):
    from acceltune.assistant.routes import ReplyBatches, ReplyInput

    store = ConversationStore(database_url)
    predictor = Predictor(models["unsure"], backend="torch", device="cpu")
    batch = [ReplyInput("eh", "a", {}), ReplyInput("eh", "b", {}), ReplyInput("eh?", "a", {"name": "Ann"})]
    batches = ReplyBatches(predictor, load_replies(replies_file, LABELS), store)
    answers = batches.finish(batches.prepare(batch)).result()
    assert [(a["handoff"], a["reason"]) for a in answers] == [
        (False, "low_confidence"), (False, "low_confidence"), (True, "low_confidence_streak")]
    assert answers[2]["reply"] == "Passing you to a colleague, Ann."
    assert [(t.message, t.handoff) for t in store.conversation("a")] == [("eh", False), ("eh?", True)]
    assert store.streaks(["a", "b"]) == {"a": 0, "b": 1}


def test_a_streak_carries_over_to_the_next_batch_while_the_previous_one_is_still_being_stored(models, replies_file, database_url):
    from acceltune.assistant.routes import ReplyBatches, ReplyInput

    class SlowStore(ConversationStore):
        def __init__(self, url):
            super().__init__(url)
            self.commit = threading.Event()

        def record(self, batch, at):
            assert self.commit.wait(30)
            super().record(batch, at)

    store = SlowStore(database_url)
    batches = ReplyBatches(Predictor(models["unsure"], backend="torch", device="cpu"), load_replies(replies_file, LABELS), store)
    first = batches.finish(batches.prepare([ReplyInput("eh", "a", {})]))
    second = batches.finish(batches.prepare([ReplyInput("eh?", "a", {})]))  # decided before the first batch is committed
    assert not first.done()
    store.commit.set()
    assert [(a["handoff"], a["reason"]) for a in first.result() + second.result()] == [
        (False, "low_confidence"), (True, "low_confidence_streak")]
    assert [t.message for t in store.conversation("a")] == ["eh", "eh?"]
    assert store.streaks(["a"]) == {"a": 0}


def test_an_out_of_scope_message_hands_off_with_the_out_of_scope_reply(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    [r] = talk(assistant_app(models["oos"], replies_file, store), say("what is the weather on Mars"))
    assert r.json() == {"intent": "oos", "confidence": pytest.approx(0.7, abs=1e-5), "oos": True,
                        "reply": "I cannot help with that; a colleague will.", "handoff": True, "reason": "out_of_scope"}
    # Without an `oos` entry, out-of-scope messages get the hand-off reply.
    replies_file.write_text(REPLIES.replace('  oos: "I cannot help with that; a colleague will."\n', ""))
    [r] = talk(assistant_app(models["oos"], replies_file, store), say("and on Venus", name="Bo"))
    assert (r.json()["reply"], r.json()["handoff"]) == ("Passing you to a colleague, Bo.", True)


def with_oos_rule(model_dir: Path, dest: Path, threshold: float) -> Path:
    """A copy of ``model_dir`` with an out-of-scope rule (energy score, out of scope above ``threshold``)."""
    import shutil

    rule_module = pytest.importorskip("acceltune.oos.rule", reason="no out-of-scope rule in this acceltune")
    from acceltune import ModelInfo

    d = Path(shutil.copytree(model_dir, dest))
    rule = rule_module.OOSRule(score="energy", threshold=threshold, goal="in_scope_recall=0.95", label="oos",
                               label_index=None, num_labels=len(LABELS))
    rule.save(d)
    info = ModelInfo.load(d)
    info.oos = rule.to_json()
    info.save(d)
    return d


def test_the_models_out_of_scope_rule_hands_off_a_confident_message(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    # The confident model (card_arrival at 0.9) with a rule that finds every message out of scope, then none.
    everything = with_oos_rule(models["confident"], tmp_path / "everything", threshold=-1e9)
    [r] = talk(assistant_app(everything, replies_file, store), say("what is the weather on Mars", "mars"))
    assert r.json() == {"intent": "oos", "confidence": pytest.approx(0.9, abs=1e-5), "oos": True,
                        "reply": "I cannot help with that; a colleague will.", "handoff": True, "reason": "out_of_scope"}
    nothing = with_oos_rule(models["confident"], tmp_path / "nothing", threshold=1e9)
    [r] = talk(assistant_app(nothing, replies_file, store), say("where is my card", "card"))
    assert (r.json()["intent"], r.json()["oos"], r.json()["handoff"]) == ("card_arrival", False, False)
    [mars], [card] = store.conversation("mars"), store.conversation("card")
    assert (mars.predicted, mars.intent, mars.oos) == ("card_arrival", "oos", True)
    assert mars.oos_score == pytest.approx(card.oos_score) and isinstance(mars.oos_score, float)  # the rule's score, stored


def test_an_intent_marked_handoff_hands_off_with_its_own_reply(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    [r] = talk(assistant_app(models["human"], replies_file, store), say("let me talk to someone"))
    assert r.json() | {"confidence": 0} == {"intent": "human", "confidence": 0, "oos": False,
                                            "reply": "Connecting you to a person.", "handoff": True,
                                            "reason": "handoff_intent"}


@pytest.mark.parametrize("prediction, streak, expected", [
    # The out-of-scope rule's verdict (models with a rule add "oos"), whatever the confidence and the intent.
    ({"label": "greeting", "score": 0.99, "oos": True, "oos_score": 7.5}, 0, ("oos", True, "out_of_scope", 0)),
    ({"label": "human", "score": 0.2, "oos": True, "oos_score": 7.5}, 1, ("oos", True, "out_of_scope", 0)),
    # The rule says in scope: the confidence and the intent decide.
    ({"label": "greeting", "score": 0.99, "oos": False, "oos_score": 0.1}, 1, ("greeting", False, None, 0)),
    ({"label": "greeting", "score": 0.3, "oos": False, "oos_score": 0.1}, 0, ("greeting", False, "low_confidence", 1)),
    ({"label": "greeting", "score": 0.3, "oos": False, "oos_score": 0.1}, 1, ("greeting", True, "low_confidence_streak", 0)),
    # No rule (no "oos" key): only the streak and the hand-off intents hand off.
    ({"label": "human", "score": 0.6}, 0, ("human", True, "handoff_intent", 0)),
    ({"label": "human", "score": 0.4}, 0, ("human", False, "low_confidence", 1)),
    ({"label": "oos", "score": 0.6}, 0, ("oos", True, "out_of_scope", 0)),  # the out-of-scope class itself
])
def test_the_policy_in_order_out_of_scope_then_confidence_then_intent(replies_file, prediction, streak, expected):
    d = decide(load_replies(replies_file, LABELS), prediction, streak)
    assert (d.intent, d.handoff, d.reason, d.streak) == expected
    assert d.oos == (expected[2] == "out_of_scope")


# ------------------------------------------------------------------------------------- replies file


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('  greeting: "Hello ${name}!"\n', "").replace("  oos: ", "  # oos: "),
     "no reply for 1 intent(s) the model knows: greeting"),
    (lambda s: s + '  refund: "x"\n  weather: "y"\n', "names 2 intent(s) the model does not know: refund, weather"),
    (lambda s: s.replace("Hello ${name}!", "Hello ${name!"), "intent 'greeting': malformed template"),
    (lambda s: s.replace("Hello ${name}!", "Hello $5"), "intent 'greeting': malformed template"),
    (lambda s: s.replace("Hello ${name}!", "Hello ${nmae}"), "intent 'greeting' uses slot(s) nmae not declared"),
    (lambda s: s.replace("Passing you to a colleague, ${name}.", "Bye ${who}"), "the hand-off reply uses slot(s) who"),
    (lambda s: s.replace("  name: there", "  2name: there"), "slot name '2name' is not a name"),
    (lambda s: s.replace("handoff: true}", "handoff: yes please}"), "intent 'human': handoff must be true or false"),
    (lambda s: s.replace("threshold: 0.5", "threshold: 5"), "threshold must be a number between 0 and 1"),
    (lambda s: s.replace("low_confidence_turns: 2", "low_confidence_turns: 0"), "low_confidence_turns must be a whole number >= 1"),
    (lambda s: s + "thresold: 0.3\n", "unknown key(s) thresold"),
    (lambda s: s.replace("intents:", "intents: [\n"), "is not valid YAML"),
    (lambda s: "- a list\n", "must be a mapping"),
])
def test_replies_file_errors_are_one_line_naming_the_problem(replies_file, edit, message):
    replies_file.write_text(edit(REPLIES))
    with pytest.raises(UserError, match="^--replies .*" + _re(message)) as e:
        load_replies(replies_file, LABELS)
    assert "\n" not in str(e.value)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_a_model_intent_without_reply_stops_the_command_in_one_line(models, replies_file, tmp_path):
    replies_file.write_text(REPLIES.replace('  greeting: "Hello ${name}!"\n', "").replace('  card_arrival: "Hi', '  card_arival: "Hi'))
    r = run_cli("assistant", models["confident"], "--replies", replies_file, "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"acceltune: error: --replies {replies_file} has no reply for 2 intent(s) the model knows: card_arrival, greeting"]


def test_more_than_one_process_is_refused_in_one_line(models, replies_file, tmp_path):
    """Two processes could decide a conversation's second turn before its first (two batch workers cannot: the
    decisions are a Staged finish, one batch at a time in arrival order)."""
    replies_file.write_text(REPLIES)
    r = run_cli("assistant", models["confident"], "--replies", replies_file, "--db", f"sqlite:///{tmp_path / 'a.db'}",
                "--processes", "2")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "acceltune: error: --processes 2: the assistant decides each conversation's turns in order within one process; "
        "serve it with --processes 1"]


# -------------------------------------------------------------------------------- bad requests


BAD = [
    (b"{not json", 422, "invalid_request", None),
    (b"", 422, "invalid_request", None),
    (b"[]", 422, "invalid_request", None),
    (b'{"unknown": 1}', 422, "invalid_request", None),
    (b'{"x": "' + b"a" * 600 + b'"}', 413, "payload_too_large", "--max-payload-bytes"),
]


def test_bad_requests_get_the_same_answers_as_the_model_server(models, replies_file, tmp_path):
    limits = {"max_payload_bytes": 500}
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    apps = {"/v1/classify": create_app(ServeSettings(model_dir=models["confident"], **limits)),
            "/v1/reply": assistant_app(models["confident"], replies_file, store, **limits)}

    async def post_all(app, path):
        async with serving(app) as c:
            return [await c.post(path, content=body, headers={"content-type": "application/json"}) for body, *_ in BAD]

    answers = {path: asyncio.run(post_all(app, path)) for path, app in apps.items()}
    for path, responses in answers.items():
        for (body, status, kind, limit), r in zip(BAD, responses):
            assert r.status_code == status, (path, body[:20], r.text)
            err = r.json()["error"]
            assert (err["type"], err.get("limit")) == (kind, limit), (path, body[:20])


def test_the_api_key_and_wrong_methods_are_answered_as_by_the_model_server(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    keys = {"api_keys": ("k1",)}
    apps = {"/v1/classify": create_app(ServeSettings(model_dir=models["confident"], **keys)),
            "/v1/reply": assistant_app(models["confident"], replies_file, store, **keys)}

    async def calls(app, path):
        async with serving(app) as c:
            return (await c.post(path, json={}), await c.get(path, headers={"Authorization": "Bearer k1"}),
                    await c.get("/openapi.json"), await c.get("/metrics"))

    answers = {path: asyncio.run(calls(app, path)) for path, app in apps.items()}
    classify, reply = answers["/v1/classify"], answers["/v1/reply"]
    for a, b in zip(classify, reply):
        assert a.status_code == b.status_code
        assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")
        if a.status_code != 200:
            assert a.json()["error"]["type"] == b.json()["error"]["type"]
    assert [r.status_code for r in reply] == [401, 405, 401, 200]


OUTSIDE_THE_SCHEMA = [
    {"message": "", "conversation_id": "c"},
    {"message": 5, "conversation_id": "c"},
    {"message": "hi"},
    {"message": "hi", "conversation_id": ""},
    {"message": "hi", "conversation_id": "c" * 129},
    {"message": "x" * 4001, "conversation_id": "c"},
    {"message": "hi", "conversation_id": 7},
    {"message": "hi", "conversation_id": "c", "context": {"nmae": "Ann"}},  # not a declared slot
    {"message": "hi", "conversation_id": "c", "context": {"name": 5}},
    {"message": "hi", "conversation_id": "c", "context": {"name": None}},
    {"message": "hi", "conversation_id": "c", "context": {"name": "x" * 501}},
    {"message": "hi", "conversation_id": "c", "context": "name=Ann"},
    {"message": "hi", "conversation_id": "c", "extra": True},
]


def test_requests_outside_the_schema_are_refused_with_422_naming_the_field(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    responses = talk(assistant_app(models["confident"], replies_file, store, max_payload_bytes=100_000),
                     *OUTSIDE_THE_SCHEMA)
    for body, r in zip(OUTSIDE_THE_SCHEMA, responses):
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request" and "slots name, card" in err["message"], body
    assert store.conversation("c") == []


def test_the_openapi_schema_lists_the_declared_slots(models, replies_file, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'a.db'}")
    app = assistant_app(models["confident"], replies_file, store)
    schema = app.openapi()["components"]["schemas"]
    context = schema["ReplyContext"]
    assert set(context["properties"]) == {"name", "card"} and context["additionalProperties"] is False
    assert context["properties"]["name"] == {"type": "string", "maxLength": 500, "title": "Name",
                                             "description": "Fills ${name} (default 'there')."}
    assert set(schema["ReplyRequest"]["required"]) == {"message", "conversation_id"}


# ---------------------------------------------------------------------------- storage and review


def turn(conversation: str, message: str, *, handoff=False, low=False, reason=None, intent="greeting") -> Turn:
    return Turn(conversation, message, {}, intent, intent, 0.4 if low else 0.9, intent == "oos", None, low, handoff,
                reason, "reply", 0)


def test_retention_deletes_what_is_older_and_keeps_the_rest(database_url):
    store = ConversationStore(database_url, retention_days=7)
    now = utcnow()
    store.record([turn("old", "a"), turn("both", "b")], now - timedelta(days=8))
    store.record([turn("both", "c"), turn("new", "d")], now - timedelta(days=1))
    assert store.purge(now) == 2
    assert store.conversation("old") == []
    assert [t.message for t in store.conversation("both")] == ["c"]
    assert [t.message for t in store.conversation("new")] == ["d"]
    assert store.streaks(["old", "both", "new"]).keys() == {"both", "new"}  # the old conversation is gone too
    with pytest.raises(UserError, match="--retention-days"):
        ConversationStore(database_url, retention_days=0)


def test_review_exports_exactly_the_handed_off_and_low_confidence_messages(models, replies_file, database_url, tmp_path):
    store = ConversationStore(database_url)
    talk(assistant_app(models["confident"], replies_file, store), say("card?", "a"), say("card!", "b"))
    talk(assistant_app(models["human"], replies_file, store), say("a person please", "a"))
    talk(assistant_app(models["unsure"], replies_file, store), say("hm", "c"), say("hmm", "c"))
    talk(assistant_app(models["oos"], replies_file, store), say("weather on Mars", "d"))
    out = tmp_path / "review" / "handoffs.csv"
    assert export_for_review(store, out) == 4
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["text"], r["label"], r["suggested_label"], r["reason"]) for r in rows] == [
        ("a person please", "", "human", "handoff_intent"), ("hm", "", "greeting", "low_confidence"),
        ("hmm", "", "greeting", "low_confidence_streak"), ("weather on Mars", "", "oos", "out_of_scope")]
    assert math.isclose(float(rows[1]["confidence"]), 0.4, abs_tol=1e-4)
    with pytest.raises(UserError, match="exists: pass --overwrite"):
        export_for_review(store, out)
    assert export_for_review(store, out, overwrite=True) == 4
    with pytest.raises(UserError, match="no such database file"):  # a mistyped --db is not an empty review
        ConversationStore(f"sqlite:///{tmp_path / 'typo.db'}", existing=True)


def test_the_review_file_is_what_acceltune_train_reads_once_labelled(models, replies_file, tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    store = ConversationStore(db)
    messages = [f"message {i}" for i in range(6)]
    talk(assistant_app(models["unsure"], replies_file, store), *(say(m, f"c{i // 2}") for i, m in enumerate(messages)))
    out = tmp_path / "handoffs.csv"
    r = run_cli("assistant", "review", "--db", db, "--output", out)
    assert r.returncode == 0, r.stderr
    assert "wrote 6 message(s)" in r.stderr
    data = DataArgs(train=str(out), validation=str(out), test=str(out))
    # Unlabelled, the train command's loader refuses it and says what to do.
    with pytest.raises(UserError, match="missing label .* fill in their labels"):
        load_splits(data)
    # Labelled (here: a person accepts or corrects the suggestions), it is training data.
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["label"] = row["suggested_label"] if i % 2 else "card_arrival"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    splits = load_splits(data)
    assert splits.labels == ["card_arrival", "greeting"]
    assert sorted(splits.train["text"]) == messages


def test_a_scaffolded_replies_file_covers_the_model_and_loads(tmp_path):
    from acceltune.assistant.replies import scaffold

    labels = ["card_arrival", "oos", "price_in_$", "reverted_card_payment?"]
    path = tmp_path / "replies.yaml"
    path.write_text(scaffold(labels))
    replies = load_replies(path, labels)
    assert set(replies.intents) == set(labels)
    assert replies.out_of_scope.template == replies.handoff.template  # handed off with the hand-off reply
    assert replies.render(replies.intents["price_in_$"].template, {}) == "(the reply to price_in_$: edit this file)"
