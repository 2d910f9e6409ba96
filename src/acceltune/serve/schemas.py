"""Request and response bodies of the HTTP API (pydantic 2).

Requests are parsed and validated in one step by pydantic-core straight from the body bytes
(``model_validate_json``), which is several times cheaper than FastAPI's generic body handling;
the models also give the OpenAPI schema at /docs. Responses are written with orjson; the response
models below document them.

Single-text models take ``"inputs": "text"`` or ``["text", ...]``. Pair models (ModelInfo.text_pair)
take ``"inputs": [["first", "second"], ...]`` (one two-element list per input).
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

# Every constraint is stated in the schema, and the server accepts exactly what the schema allows: strict
# types (no "2" for 2, no 0 for false), non-empty texts, non-empty lists (checked with schemathesis).
Text = Annotated[str, StringConstraints(min_length=1)]
Texts = Annotated[list[Text], Field(min_length=1)]


def _json_integer(value):
    # JSON Schema's "integer" is a number with no fraction (2.0 is one), never a string or a boolean.
    if isinstance(value, (str, bool)):
        raise ValueError("Input should be a valid integer")
    return value


Integer = Annotated[int, BeforeValidator(_json_integer)]


def _one_or_many(value):
    return [value] if isinstance(value, str) else value


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: Integer = Field(1, ge=1, description="How many labels to return in top_k, best first (capped at the number of labels).")
    truncate: StrictBool = Field(True, description="Truncate inputs longer than the model's maximum tokens (the result says "
                                             "truncated: true); false answers 422 instead.")


class ClassifyRequest(_RequestBase):
    """For single-text models."""

    inputs: Annotated[Texts, BeforeValidator(_one_or_many, json_schema_input_type=Text | Texts)] = Field(
        ..., description="One text or a non-empty list of texts; results come back in the same order.",
        examples=["I still have not received my new card"])


class PairClassifyRequest(_RequestBase):
    """For text-pair models."""

    inputs: Annotated[list[tuple[Text, Text]], Field(min_length=1)] = Field(
        ..., description="A non-empty list of [first, second] text pairs.", examples=[[["a premise", "a hypothesis"]]])


class LabelScore(BaseModel):
    label: str
    score: float


class ClassificationResult(BaseModel):
    label: str = Field(description="The best label.")
    score: float = Field(description="Its probability (softmax; sigmoid for multi-label models).")
    top_k: list[LabelScore]
    truncated: bool = Field(description="The input was longer than the model's maximum tokens and was cut.")
    labels: Optional[list[str]] = Field(None, description="Multi-label models only: every label over the threshold.")
    oos: Optional[bool] = Field(None, description="Models with an out-of-scope rule only: the input is out of scope (its "
                                                 "oos_score is above the rule's threshold, or the best label is the out-of-scope label).")
    oos_score: Optional[float] = Field(None, description="Models with an out-of-scope rule only: the rule's score, higher = "
                                                         "further from the training data (see GET /v1/model for the rule).")


class ClassifyResponse(BaseModel):
    results: list[ClassificationResult] = Field(description="One result per input, in input order.")


class ModelResponse(BaseModel):
    labels: list[str]
    max_length: int = Field(description="Tokens per input (pair); longer inputs are truncated or refused.")
    text_pair: bool
    multi_label: bool
    format: str = Field(description="transformers | onnx | tensorrt")
    version: str
    backend: dict = Field(description="The backend's own description (name, device, precision, ...).")
    batching: dict = Field(description="max_batch_size, max_wait_ms, max_queue, max_queue_wait_ms, max_batch_tokens.")
    limits: dict = Field(description="max_inputs, max_payload_bytes, request_timeout_s.")
    oos: Optional[dict] = Field(None, description="The out-of-scope rule (score, threshold, goal, label), or null without one.")


class ErrorBody(BaseModel):
    type: str = Field(description="Machine-readable: payload_too_large, too_many_inputs, invalid_request, "
                                  "input_too_long, queue_full, timeout, not_ready, shutting_down, unauthorized, ...")
    message: str
    limit: Optional[str] = Field(None, description="The server flag whose limit was hit, e.g. --max-inputs.")
    max: Optional[float] = Field(None, description="That limit's value.")
    errors: Optional[list[dict]] = Field(None, description="Validation errors: loc, msg, type.")


class ErrorResponse(BaseModel):
    error: ErrorBody
