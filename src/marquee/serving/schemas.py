"""Request and response bodies of the service, as pydantic models (FastAPI derives the OpenAPI schema from them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

MAX_ROWS = 10  # rows a page may ask for
MAX_HISTORY = 10_000  # history events a request may carry

RawId = StrictStr | StrictInt  # a raw id as the data names it; "1" and 1 name the same title or member


class Context(BaseModel):
    """The request's context; what is left out is taken from the server's clock (UTC) or left unknown."""

    model_config = ConfigDict(extra="forbid")
    hour: Annotated[StrictInt, Field(ge=0, le=23, description="local hour of the request, 0-23")] | None = None
    dow: Annotated[StrictInt, Field(ge=0, le=6, description="local weekday, 0 = Monday .. 6")] | None = None
    device: StrictStr | None = Field(None, description="one of the bundle's devices (GET /health lists them)")


class RecommendRequest(BaseModel):
    """A home page for a member (``user_id``, history from the service's store) or for a history sent inline."""

    model_config = ConfigDict(extra="forbid")
    user_id: RawId | None = None
    history: Annotated[list[RawId], Field(max_length=MAX_HISTORY)] | None = Field(
        None, description="raw item ids, oldest first; overrides the stored history of user_id")
    member_key: StrictStr | None = Field(
        None, min_length=1, max_length=128,
        description="a stable key of an anonymous member (a cookie, a device id) for A/B bucketing; user_id wins "
                    "when both are given, and a history request without either is bucketed by its history")
    context: Context = Field(default_factory=Context)
    k: Annotated[StrictInt, Field(ge=1, description="titles per row, at most the catalog's size")] = 10
    rows: Annotated[StrictInt, Field(ge=1, le=MAX_ROWS)] = 3
    diversity: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1, description="MMR weight on genre overlap")] = 0.0


class Title(BaseModel):
    item_id: RawId
    title: str | None
    genres: list[str]
    score: float
    artwork: str
    propensity: float
    impression_id: str


class Row(BaseModel):
    title: str
    reason: str
    items: list[Title]


class RecommendResponse(BaseModel):
    request_id: str
    bundle_id: str
    policy: str
    rows: list[Row]
    variant: str | None = Field(None, description='"A" or "B" under an A/B test, else null')


class EventRequest(BaseModel):
    """What the member did after an impression: ``play`` (a reward of 1 in the bandit log), ``skip``, ..."""

    model_config = ConfigDict(extra="forbid")
    impression_id: StrictStr = Field(min_length=1, max_length=64)
    event: StrictStr = Field(min_length=1, max_length=32)
    value: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1e6)] | None = None


class EventResponse(BaseModel):
    event_id: str
    impression_id: str


class ErrorDetail(BaseModel):
    loc: list[str | int] | None = None
    msg: str | None = None
    type: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx: one line naming the field and what was wrong; ``detail`` lists each validation error."""

    error: str
    detail: list[ErrorDetail] | None = None


class VariantInfo(BaseModel):
    variant: str
    bundle_id: str
    share: float
    system: str
    items: int
    policy: str


class Health(BaseModel):
    status: str
    bundle_id: str
    bundle_format: int
    system: str
    items: int
    users: int
    devices: list[str]
    policy: str
    histories: int
    impressions: int
    uptime_s: float
    variants: list[VariantInfo] = Field(default_factory=list, description="both arms under an A/B test, else empty")
    split: float | None = Field(None, description="the share of members served variant B (null: no A/B test)")
