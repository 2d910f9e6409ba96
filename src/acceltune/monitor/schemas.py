"""The HTTP API's bodies (pydantic 2): exact schemas, so what /openapi.json allows is what the server accepts.

Strings that reach the database exclude NUL (PostgreSQL's text cannot hold it); a text needs a character
other than ASCII whitespace (items.BLANK, the file rule too); timestamps are RFC 3339 (timestamps.parse_ms).
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from acceltune.monitor.items import BLANK, MAX_ID
from acceltune.monitor.timestamps import parse_ms

_NO_NUL = r"^[^\x00]+$"
_BLANK_CLASS = "".join(f"\\x{ord(c):02x}" for c in BLANK)

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=_NO_NUL)]
Text = Annotated[str, StringConstraints(pattern=rf"^[^\x00]*[^\x00{_BLANK_CLASS}][^\x00]*$")]


def _rfc3339(value: str) -> str:
    parse_ms(value)  # ValueError -> 422 naming the rule
    return value


Timestamp = Annotated[str, AfterValidator(_rfc3339), Field(json_schema_extra={"format": "date-time"})]
#: the GET /v1/items cursor: "<ts>:<id>" of the last item of the previous page
ITEMS_CURSOR = r"^-?[0-9]{1,16}:[^\x00]{1,%d}$" % MAX_ID
CURSOR_RE = re.compile(ITEMS_CURSOR)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id = Field(description="Unique per item: an id stored before is skipped (a duplicate).")
    timestamp: Timestamp = Field(description="ISO 8601 with a zone (RFC 3339), e.g. 2024-05-01T09:30:00Z.")
    text: Text = Field(description="The headline or news text.")
    entity: Optional[Id] = Field(None, description="The entity it is about; without it, the entities file tags it.")
    source: Optional[Id] = Field(None, description="Where it came from (free text).")


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1, description="Scored and stored like a batch of `monitor ingest` (at most --max-inputs).")


class RaisedAlert(BaseModel):
    key: str = Field(description="entity/window/bucket start ms/rule: unique; the webhook's Idempotency-Key.")
    entity: str
    window: str
    start: str = Field(description="The bucket's start, ISO 8601 UTC.")
    start_ms: int
    rule: str = Field(description="index_drop | index_rise | negative_share")
    value: float
    threshold: float
    n: int = Field(description="Items in the bucket when it alerted.")
    message: str


class AlertOut(RaisedAlert):
    id: int
    created_at: str
    delivered: bool = Field(description="Delivered to the webhook (false without one).")


class IngestResponse(BaseModel):
    inserted: int
    duplicates: int = Field(description="Items whose id was stored already (or repeated in this request).")
    alerts: list[RaisedAlert] = Field(description="Alerts these items raised (stored, and sent to the webhook).")


class IndexPoint(BaseModel):
    start: str = Field(description="Bucket start, ISO 8601 UTC.")
    start_ms: int
    index: float = Field(description="Mean of P(positive) - P(negative) over the bucket's items, in [-1, 1].")
    n: int
    negative_share: float
    positive_share: float


class IndexResponse(BaseModel):
    entity: str
    window: str
    points: list[IndexPoint] = Field(description="Oldest first.")
    next_cursor: Optional[int] = Field(description="Pass as cursor for the next page; null on the last.")


class ItemOut(BaseModel):
    id: str
    timestamp: str
    text: str
    source: Optional[str]
    entities: list[str]
    label: str
    score: float = Field(description="The label's probability.")
    sentiment: float = Field(description="P(positive) - P(negative).")
    probabilities: dict[str, float]
    model_version: str


class ItemsResponse(BaseModel):
    items: list[ItemOut] = Field(description="Newest first.")
    next_cursor: Optional[str]


class AlertsResponse(BaseModel):
    alerts: list[AlertOut] = Field(description="Newest first.")
    next_cursor: Optional[int]


class EntityOut(BaseModel):
    entity: str = Field(description="'*' is every item.")
    items: int
    last: str = Field(description="Start of its latest bucket, ISO 8601 UTC.")


class EntitiesResponse(BaseModel):
    window: str
    windows: list[str] = Field(description="The windows this server keeps.")
    entities: list[EntityOut]
