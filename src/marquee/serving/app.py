"""The FastAPI app: ``GET /health``, ``POST /recommend``, ``POST /events`` over one bundle and one log folder.

Bad input is answered 4xx with ``{"error": "<one line naming the field and what was wrong>", "detail": ...}``:
a wrong type, an unknown member or title (named), an empty history, ``k`` above the catalog, too many rows,
malformed JSON. Every title shown is logged (:mod:`marquee.serving.impressions`) before the response leaves.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from marquee.export.bundle import load_bundle
from marquee.export.manifest import MANIFEST
from marquee.serving import page
from marquee.serving.ab import DEFAULT_SALT, bucket, member_key
from marquee.serving.artwork import PolicyArtwork, PolicyFileError, artwork_chooser, read_policy
from marquee.serving.histories import History, HistoryStore, inline_history
from marquee.serving.impressions import ImpressionLog, new_id
from marquee.serving.pipeline import Pipeline, Timings
from marquee.serving.schemas import (
    ErrorBody,
    EventRequest,
    EventResponse,
    Health,
    RecommendRequest,
    RecommendResponse,
    Row,
    Title,
    VariantInfo,
)

ERRORS = {400: {"model": ErrorBody, "description": "malformed JSON"},
          404: {"model": ErrorBody, "description": "unknown member or impression"},
          422: {"model": ErrorBody, "description": "a field of the wrong type or value, or unknown titles"}}


class ClientError(Exception):
    """A request the service refuses: HTTP ``status`` and a message naming what was wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _validation_message(errors: list[dict[str, Any]]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, f"malformed JSON body: {errors[0].get('ctx', {}).get('error', errors[0]['msg'])}"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
        parts.append(f"{where}: {e['msg']}" + (f" (got {e['input']!r})" if "input" in e and e["type"] != "missing"
                                               and not isinstance(e["input"], dict) else ""))
    return 422, "; ".join(parts)


class Service:
    """What the app holds: the bundle, its pipeline, the history store and the impression log."""

    def __init__(self, bundle_path: str | Path, log_dir: str | Path, histories: str | Path | None = None,
                 threads: int = 1, artworks: int = 4, seed: int | None = None, log: ImpressionLog | None = None,
                 variant: str | None = None, policy: str | Path | None = None, same: Service | None = None):
        self.variant = variant  # "A" or "B" when this bundle is one arm of an A/B test (None: no test)
        # ``same``: another variant serving this very bundle, whose loaded bundle and history store are shared
        self.bundle = same.bundle if same is not None else load_bundle(bundle_path, threads=threads)
        self.bundle_id = hashlib.sha256((self.bundle.root / MANIFEST).read_bytes()).hexdigest()[:16]
        # the artwork policy: policy=FILE, else the bundle's own, else synthetic uniform variants
        body = read_policy(policy) if policy is not None else self.bundle.policy
        where = str(policy) if policy is not None else f"{self.bundle.root}/{self.bundle.manifest['policy'].get('file')}"
        self.artwork = artwork_chooser(body, artworks, seed, where)
        self.pipeline = Pipeline(self.bundle, self.artwork)
        self.store = same.store if same is not None else HistoryStore.load(histories, self.bundle) if histories else None
        self.log = log if log is not None else ImpressionLog(log_dir)
        if isinstance(self.artwork, PolicyArtwork):  # the readout values each policy from the other's log with it
            self.log.keep_policy(self.artwork.id, self.artwork.policy)
        self.started = time.monotonic()
        self.devices = list(self.bundle.features.get("devices", []))
        self.users = {str(r): i + 1 for i, r in enumerate(self.bundle.users.raw_ids)}
        self.items = {str(r): i + 1 for i, r in enumerate(self.bundle.items.raw_ids)}
        self.context_names = ["hour", "dow", *(f"device={d}" for d in self.devices)]

    def history(self, request: RecommendRequest) -> tuple[History, int]:
        """The request's history and the member's internal id (0: none or unknown to the bundle)."""
        user = 0
        if request.user_id is not None:
            key = str(request.user_id)
            user = self.users.get(key, 0)
            if not user and (self.store is None or self.store.get(key) is None):
                raise ClientError(404, f"user_id: unknown user '{key}' (not among the bundle's "
                                       f"{len(self.users)} members{'' if self.store is None else ' nor the histories'})")
        if request.history is not None:
            if not request.history:
                raise ClientError(422, "history: is empty; send at least one raw item id the member watched")
            ids = np.array([self.items.get(str(i), 0) for i in request.history], dtype=np.int64)
            unknown = list(dict.fromkeys(str(i) for i, j in zip(request.history, ids, strict=True) if j == 0))
            if unknown:
                shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
                raise ClientError(422, f"history: unknown item ids {shown} (not in the bundle's catalog of "
                                       f"{self.bundle.n_items} titles)")
            return inline_history(self.bundle, ids), user
        if request.user_id is None:
            raise ClientError(422, "body: give user_id (with a history store) or history (raw item ids)")
        if self.store is None:
            raise ClientError(422, f"user_id: '{request.user_id}' alone needs the member's history, and this service "
                                   "has no history store (start it with histories=PATH.parquet); send history instead")
        found = self.store.get(str(request.user_id))
        if found is None or not len(found.items):
            raise ClientError(404, f"user_id: no history for user '{request.user_id}' in the history store; send history")
        return found, user

    def recommend(self, request: RecommendRequest, timings: Timings, member: str | None = None) -> RecommendResponse:
        member = member_key(request.user_id, request.member_key, request.history) if member is None else member
        n_items = self.bundle.n_items
        if request.k > n_items:
            raise ClientError(422, f"k: {request.k} is more than the catalog's {n_items} titles")
        context = request.context
        if context.device is not None and context.device not in self.devices:
            raise ClientError(422, f"context.device: unknown device '{context.device}'; expected one of {self.devices}")
        with timings.stage("history"):
            history, user = self.history(request)
        now = datetime.now(UTC)
        hour = now.hour if context.hour is None else context.hour
        dow = now.weekday() if context.dow is None else context.dow
        device = self.devices.index(context.device) + 1 if context.device else 0
        inputs = self.pipeline.inputs(history, user, hour, dow, device)
        page = self.pipeline.run(history, inputs, request.k, request.rows, float(request.diversity), timings, hour)
        request_id, stamp = new_id(), now.timestamp()
        catalog, raw = self.pipeline.catalog, self.bundle.items.raw
        history_raw = [_plain(r) for r in raw(history.items)]
        context_vector = page.context or [hour / 23, dow / 6, *(float(device == d + 1) for d in range(len(self.devices)))]
        context_names = self.artwork.context_names or self.context_names
        shown_ids = [_plain(r) for r in raw([s.item for _, shown in page.rows for s in shown])] if page.rows else []
        shown_titles, rows, position = [], [], 0
        for row_index, (row, shown) in enumerate(page.rows):
            titles = []
            for s in shown:
                impression = new_id()
                item_raw = shown_ids[position]
                position += 1
                shown_titles.append({
                    "impression_id": impression, "row": row_index, "row_title": row.title, "item_id": item_raw,
                    "item": s.item, "score": s.score, "arms": s.choice.arms, "arm_features": s.choice.arm_features,
                    "artwork": s.choice.artwork, "arm": s.choice.arm, "slot": s.choice.arms.index(s.choice.arm),
                    "propensity": s.choice.propensity})
                titles.append(Title(item_id=item_raw, title=catalog.titles[s.item],
                                    genres=sorted(catalog.genres[s.item]), score=s.score, artwork=s.choice.artwork,
                                    propensity=s.choice.propensity, impression_id=impression))
            rows.append(Row(title=row.title, reason=row.reason, items=titles))
        with timings.stage("log"):
            if shown_titles:  # one line per page: what the titles share is written once
                self.log.page({
                    "request_id": request_id, "time": stamp, "member": member, "variant": self.variant,
                    "user_id": None if request.user_id is None else str(request.user_id), "user": user,
                    "history": history_raw, "context": {"hour": hour, "dow": dow, "device": context.device},
                    "context_vector": context_vector, "context_names": context_names, "hour": hour,
                    "candidates": shown_ids, "policy": self.artwork.name, "policy_id": self.artwork.id,
                    "n_arm_features": self.artwork.n_features, "bundle_id": self.bundle_id,
                    "impressions": shown_titles})
        return RecommendResponse(request_id=request_id, bundle_id=self.bundle_id, policy=self.artwork.name, rows=rows,
                                 variant=self.variant)

    def event(self, request: EventRequest) -> EventResponse:
        record = {"event_id": new_id(), "impression_id": request.impression_id, "event": request.event,
                  "value": request.value, "time": time.time()}
        try:
            self.log.event(record)
        except KeyError:
            raise ClientError(404, f"impression_id: unknown impression '{request.impression_id}' "
                                   "(never shown by this service's log)") from None
        return EventResponse(event_id=record["event_id"], impression_id=request.impression_id)

    def health(self) -> Health:
        return Health(status="ok", bundle_id=self.bundle_id, bundle_format=int(self.bundle.manifest["format"]),
                      system=self.bundle.system["kind"], items=self.bundle.n_items, users=len(self.users),
                      devices=self.devices, policy=self.artwork.name, histories=len(self.store or ()),
                      impressions=len(self.log.known), uptime_s=round(time.monotonic() - self.started, 3))


class ABService:
    """Two bundles side by side: each member is bucketed into "A" or "B" by a salted hash of its member key
    (:func:`marquee.serving.ab.bucket`), so the same member gets the same variant on every request and after
    every restart; both variants append to one log, each impression naming its ``variant`` and ``bundle_id``."""

    def __init__(self, bundle_a: str | Path, bundle_b: str | Path | None, log_dir: str | Path,
                 histories: str | Path | None = None, threads: int = 1, artworks: int = 4, seed: int | None = None,
                 split: float = 0.5, salt: str = DEFAULT_SALT, policy: str | Path | None = None,
                 policy_b: str | Path | None = None):
        if not 0.0 <= split <= 1.0:
            raise ValueError(f"split: the share of members in variant B must be within [0, 1], got {split}")
        if bundle_b is None and policy_b is None:
            raise ValueError("variant_b/policy_b: an A/B test needs another bundle or another artwork policy for B")
        self.split, self.salt = float(split), str(salt)
        self.log = ImpressionLog(log_dir)
        a = Service(bundle_a, log_dir, histories, threads, artworks, seed, log=self.log, variant="A", policy=policy)
        b = Service(bundle_b or bundle_a, log_dir, histories, threads, artworks, None if seed is None else seed + 1,
                    log=self.log, variant="B", policy=policy_b if policy_b is not None else policy,
                    same=a if bundle_b is None else None)  # one bundle, two policies: loaded once
        self.variants = {"A": a, "B": b}
        art_a, art_b = a.artwork, b.artwork
        if isinstance(art_a, PolicyArtwork) != isinstance(art_b, PolicyArtwork):
            raise PolicyFileError("policy_b: one variant has an artwork policy file and the other synthetic artwork; "
                                  "give both a policy of the same layout (e.g. policy=<bandit run>/policies/uniform.json)")
        if isinstance(art_a, PolicyArtwork) and art_a.layout != art_b.layout:
            raise PolicyFileError("policy_b: its artwork layout (titles, artworks, context) differs from variant A's, "
                                  "so neither policy could be valued from the other's log")
        self.started = time.monotonic()

    @property
    def a(self) -> Service:
        return self.variants["A"]

    def __getattr__(self, name: str) -> Any:
        """What a single-bundle :class:`Service` holds (``bundle``, ``users``, ``store``, ...) is variant A's."""
        variants = self.__dict__.get("variants")
        if variants is None:
            raise AttributeError(name)
        return getattr(variants["A"], name)

    def assign(self, key: str) -> str:
        return bucket(key, self.split, self.salt)

    def recommend(self, request: RecommendRequest, timings: Timings) -> RecommendResponse:
        key = member_key(request.user_id, request.member_key, request.history)
        if key is None:  # neither a member nor a history: let the A service name what is missing
            return self.a.recommend(request, timings)
        return self.variants[self.assign(key)].recommend(request, timings, member=key)

    def event(self, request: EventRequest) -> EventResponse:
        return self.a.event(request)  # one shared log knows every variant's impressions

    def health(self) -> Health:
        health = self.a.health()
        health.variants = [VariantInfo(variant=v, bundle_id=s.bundle_id, share=self.split if v == "B" else 1 - self.split,
                                       system=s.bundle.system["kind"], items=s.bundle.n_items, policy=s.artwork.name)
                           for v, s in self.variants.items()]
        health.split = self.split
        health.uptime_s = round(time.monotonic() - self.started, 3)
        return health


def _plain(value: Any) -> Any:
    """A raw id as JSON writes it (NumPy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value


def create_app(bundle_path: str | Path, log_dir: str | Path, histories: str | Path | None = None, threads: int = 1,
               artworks: int = 4, seed: int | None = None, variant_b: str | Path | None = None, split: float = 0.5,
               salt: str = DEFAULT_SALT, policy: str | Path | None = None,
               policy_b: str | Path | None = None) -> FastAPI:
    """The service over ``bundle_path`` (checked and loaded now: a bad bundle raises BundleError here), logging
    impressions and events under ``log_dir``; ``histories`` is the optional history store (a Parquet file).

    With ``variant_b`` it is an A/B test: ``bundle_path`` serves variant "A", ``variant_b`` variant "B", a share
    ``split`` of members (bucketed by a hash of their key with ``salt``) get B. ``policy`` replaces the bundle's
    artwork policy (a ``marquee-artwork-policy`` file); ``policy_b`` makes B the same bundle (or ``variant_b``)
    with that artwork policy instead."""
    service: Service | ABService
    if variant_b is None and policy_b is None:
        service = Service(bundle_path, log_dir, histories, threads, artworks, seed, policy=policy)
        version = service.bundle.manifest["format"]
    else:
        service = ABService(bundle_path, variant_b, log_dir, histories, threads, artworks, seed, split, salt,
                            policy, policy_b)
        version = service.a.bundle.manifest["format"]
    app = FastAPI(title="marquee", summary="home-page rows and artwork from a marquee bundle", version=str(version))
    app.include_router(page.router)  # GET /: the page a person looks at, drawn from /health and /recommend
    app.state.service = service

    @app.exception_handler(ClientError)
    async def client_error(_: Request, error: ClientError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:  # e.g. a body that is not UTF-8
        message = "malformed JSON body: " + str(error.detail) if error.status_code == 400 else str(error.detail)
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        status, message = _validation_message(errors)
        return JSONResponse({"error": message, "detail": [{k: e.get(k) for k in ("loc", "msg", "type")}
                                                          for e in errors]}, status_code=status)

    @app.get("/health")
    def health() -> Health:
        return service.health()

    @app.post("/recommend", responses=ERRORS)
    def recommend(body: RecommendRequest, response: Response) -> RecommendResponse:
        timings = Timings()
        with timings.stage("total"):
            answer = service.recommend(body, timings)
        response.headers["Server-Timing"] = timings.header()
        return answer

    @app.post("/events", responses=ERRORS)
    def events(body: EventRequest) -> EventResponse:
        return service.event(body)

    return app
