"""The /v1/reply request and response bodies. The request is exact (strict types, lengths, no unknown keys),
and its ``context`` lists exactly the slots the replies file declares, so /openapi.json says what is accepted."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from acceltune.assistant.policy import Reason
from acceltune.assistant.replies import SLOT_VALUE_MAX_CHARS

MESSAGE_MAX_CHARS = 4000
CONVERSATION_ID_MAX_CHARS = 128

Message = Annotated[str, StringConstraints(min_length=1, max_length=MESSAGE_MAX_CHARS)]
ConversationId = Annotated[str, StringConstraints(min_length=1, max_length=CONVERSATION_ID_MAX_CHARS)]
SlotValue = Annotated[str, StringConstraints(max_length=SLOT_VALUE_MAX_CHARS)]


def request_model(slots: dict[str, str]) -> type[BaseModel]:
    """The ReplyRequest of a replies file: ``context`` may carry each declared slot (text), nothing else."""
    # Fields get internal names and the slot as alias: a slot may be called "json" or "copy" without
    # shadowing a pydantic method.
    fields = {f"slot_{i}": (SlotValue, Field(None, alias=name, description=f"Fills ${{{name}}} (default {default!r}).",
                                             json_schema_extra=_no_null))
              for i, (name, default) in enumerate(slots.items())}
    context = create_model("ReplyContext", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields)
    context.__doc__ = "Values for the reply templates' slots; an omitted slot takes the replies file's default."
    return create_model(
        "ReplyRequest", __config__=ConfigDict(extra="forbid"),
        message=(Message, Field(..., description="The customer's message.", examples=["my card has not arrived"])),
        conversation_id=(ConversationId, Field(..., description="Groups the turns of one conversation (the "
                                                                   "low-confidence streak is counted per conversation).")),
        context=(context, Field(default_factory=context)),
    )


def _no_null(schema: dict) -> None:
    # The default (None: "take the file's") is not a value a client may send: the schema says string only.
    schema.pop("default", None)


def context_values(context: BaseModel) -> dict[str, str]:
    """The slots a request gave, by slot name."""
    return context.model_dump(by_alias=True, exclude_none=True)


class ReplyResponse(BaseModel):
    intent: str = Field(description="What the message was answered as: an intent, or the out-of-scope intent.")
    confidence: float = Field(description="The model's probability for its best intent.")
    oos: bool = Field(description="Out of scope: the model was not trained for this message.")
    reply: str = Field(description="The reply, slots filled from context.")
    handoff: bool = Field(description="Hand this conversation to a person now.")
    reason: Optional[Reason] = Field(description="Why the reply is not the intent's own (null when it is): out_of_scope, "
                                                 "low_confidence (asked to rephrase), low_confidence_streak, handoff_intent.")
