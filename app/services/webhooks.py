"""Webhooks: a project's registry events, delivered signed, retried, logged, replayable.

Hooks

* A hook belongs to a project and lists the events it wants by MLflow's names
  (``entity.action``, `EVENTS`). Managing hooks (reading them included: their URLs and
  logs are the maintainers') needs `MANAGE_WEBHOOKS` (`app.services.policy`).
* A secret is stored encrypted with a key derived from `MODELREG_SECRET_KEY` (Fernet) and
  is never shown again by any read; without a server key a secret is refused (a hook
  without one is sent unsigned, as MLflow sends it).
* URLs are http(s); targets resolving to loopback, private or link-local addresses are
  refused unless `MODELREG_WEBHOOK_ALLOW_PRIVATE` is set, at creation and again on the
  connected address of every attempt (`app.services.webhook_sender`).

Events

* A service states what happened with `emit(session, event)` in the transaction of the
  change, so no committed change loses its event and no rolled-back change sends one.
  Emitting reads the project's active hooks (one indexed select); for each hook that
  wants the event it writes a delivery row (the outbox) and wakes the hook's sender
  (`_wake`): a `webhook_delivery` job, unless one is waiting to start already, which
  will send this delivery too. The payload is built only when some hook wants it.
* A delivery's body is MLflow's envelope ``{"entity", "action", "timestamp", "data"}``
  with MLflow's `data` for MLflow's events, stored as the exact text that is signed and
  sent; a redelivery sends the same text under a new delivery id.
* MLflow's events: registered_model.created, model_version.created,
  model_version_tag.set/deleted, model_version_alias.created/deleted. Ours beside them:
  registered_model.deleted, model_version.deleted, model_version_alias.moved (an alias
  set on a version while another held it; created is sent too, as MLflow sends it),
  candidate.finished and candidate.failed (a run ending so), job.succeeded and job.failed,
  and candidate.metric_threshold_crossed.
* candidate.metric_threshold_crossed: a hook wanting it has a `MetricThreshold` (metric,
  operator, threshold). A logged point on the right side whose predecessor (the value
  the candidate held, then each point of the batch by step) was not is a crossing; it is
  sent once per candidate and hook. Emitted with the metric write, in its transaction;
  the candidate lookup (`with_crossing_hook`, an outer join on the statement that reads
  the candidate anyway) tells whether any hook of the project wants the event, so a
  project without one pays no statement on the log-metric/log-batch path.

Delivery (`deliver`, run by the workers: a hook's sender)

* A sender drains one hook: it claims up to `BATCH_SIZE` due deliveries that head their
  ordering key in one statement (a claim is a lease of the attempt's timeout and a
  margin, fenced by the attempt number), sends them concurrently (`SEND_CONCURRENCY`
  requests at a time), records every outcome in one statement executed for the batch
  (`attempt_log` keeps every attempt), and claims again until none is due. Then it
  leaves a sender due when the next pending delivery falls due (a retry, or the claim
  of a sender that died), unless one is due by then.
* At least once, with a stable delivery id: a worker killed mid-send leaves its claims
  to expire; its job runs again (the job's lease) and they are sent again.
* A failed attempt (no answer, or not 2xx) is retried after min(2**(n-1) * base, max)
  seconds jittered down to half of it, or after what `Retry-After` asks, until the
  delivery is older than the retry window (24 h by default); it is failed then.
* Order per hook and object (`ordering_key`: the model, candidate or job the event is
  about): only the earliest pending delivery of a hook and key is ever claimed, so a
  later one waits for it (its retries included); deliveries about other objects go on.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import InvalidValueError, NotFoundError
from app.models import (
    Candidate,
    CandidateLatestMetric,
    CandidateStatus,
    DeliveryStatus,
    Job,
    JobStatus,
    Model,
    ModelAlias,
    ModelMetadata,
    ModelVersion,
    Project,
    Webhook,
    WebhookDelivery,
    WebhookStatus,
)
from app.search.paging import Page
from app.services import audit, jobs, policy, webhook_sender
from app.services.actor import Actor
from app.services.keyset import Sort, SortKey
from app.services.policy import Operation
from app.settings import Settings

logger = logging.getLogger(__name__)

MLFLOW_EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
)
OUR_EVENTS = (
    "registered_model.deleted",
    "model_version.deleted",
    "model_version_alias.moved",
    "candidate.finished",
    "candidate.failed",
    "candidate.metric_threshold_crossed",
    "job.succeeded",
    "job.failed",
)
EVENTS = frozenset(MLFLOW_EVENTS + OUR_EVENTS)
METRIC_THRESHOLD_CROSSED = "candidate.metric_threshold_crossed"
# How a logged value compares with a hook's threshold to be on its right side.
THRESHOLD_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda value, threshold: value > threshold,
    ">=": lambda value, threshold: value >= threshold,
    "<": lambda value, threshold: value < threshold,
    "<=": lambda value, threshold: value <= threshold,
}

MAX_NAME_LENGTH = 256
MAX_URL_LENGTH = 2048
MAX_WEBHOOKS_PER_PROJECT = 100
# Version tags that stand for lineage, not tags (as the MLflow surface hides them).
_HIDDEN_VERSION_TAGS = frozenset({"mlflow.source.run_id", "mlflow.source.model_id"})
# A claim outlasts the attempt's timeout by this much (recording the outcome) before
# another runner may take the delivery over.
CLAIM_MARGIN = dt.timedelta(seconds=5)

# MLflow's example payloads, sent by a test of a hook.
EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "registered_model.created": {
        "name": "example_model",
        "tags": {"example_key": "example_value"},
        "description": "An example registered model",
    },
    "model_version.created": {
        "name": "example_model",
        "version": "1",
        "source": "models:/123",
        "run_id": "abcd1234abcd5678",
        "tags": {"example_key": "example_value"},
        "description": "An example model version",
    },
    "model_version_tag.set": {
        "name": "example_model",
        "version": "1",
        "key": "example_key",
        "value": "example_value",
    },
    "model_version_tag.deleted": {"name": "example_model", "version": "1", "key": "example_key"},
    "model_version_alias.created": {
        "name": "example_model",
        "alias": "example_alias",
        "version": "1",
    },
    "model_version_alias.deleted": {"name": "example_model", "alias": "example_alias"},
}


# --- Secrets ------------------------------------------------------------------------------


def _fernet(settings: Settings) -> Fernet:
    if not settings.secret_key:
        raise InvalidValueError(
            "Secrets need a server key: set MODELREG_SECRET_KEY", field="secret"
        )
    digest = hashlib.sha256(b"modelreg webhook secrets\0" + settings.secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(settings: Settings, secret: str | None) -> str | None:
    """A secret encrypted with the server key, for storing (hooks' secrets, the tokens of
    jobs' sources); None for none. Refused without `MODELREG_SECRET_KEY`."""
    if not secret:
        return None
    return _fernet(settings).encrypt(secret.encode()).decode("ascii")


def decrypt_secret(settings: Settings, encrypted: str | None) -> str | None:
    """The secret `encrypt_secret` stored."""
    if encrypted is None:
        return None
    try:
        return _fernet(settings).decrypt(encrypted.encode("ascii")).decode()
    except InvalidToken:
        raise InvalidValueError(
            "A stored secret cannot be read with the server's key (MODELREG_SECRET_KEY "
            "changed); set the secret again",
            field="secret",
        ) from None


# --- Hooks --------------------------------------------------------------------------------


def _check_events(events: Sequence[str]) -> list[str]:
    if not events:
        raise InvalidValueError("A webhook needs at least one event", field="events")
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise InvalidValueError(
            f"Unknown webhook event(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENTS))}",
            field="events",
        )
    return list(dict.fromkeys(events))


def _check_name(name: str) -> str:
    if not name or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"A webhook name is 1 to {MAX_NAME_LENGTH} characters", field="name"
        )
    return name


@dataclass(frozen=True)
class MetricThreshold:
    """What a hook's `candidate.metric_threshold_crossed` watches: a candidate's metric
    `metric` logged on the right side of `threshold` (`value <operator> threshold`)."""

    metric: str
    operator: str
    threshold: float

    def checked(self) -> dict[str, Any]:
        """As stored on the hook, once valid."""
        if not self.metric or len(self.metric) > MAX_NAME_LENGTH:
            raise InvalidValueError(
                f"A threshold's metric name is 1 to {MAX_NAME_LENGTH} characters",
                field="metric_threshold.metric",
            )
        if self.operator not in THRESHOLD_OPERATORS:
            raise InvalidValueError(
                f"A threshold's operator is one of {', '.join(THRESHOLD_OPERATORS)}; "
                f"got '{self.operator}'",
                field="metric_threshold.operator",
            )
        if not math.isfinite(self.threshold):
            raise InvalidValueError(
                "A threshold is a finite number", field="metric_threshold.threshold"
            )
        return {"metric": self.metric, "operator": self.operator, "threshold": self.threshold}

    @classmethod
    def of(cls, webhook: Webhook) -> MetricThreshold | None:
        stored = webhook.metric_threshold
        if not stored:
            return None
        return cls(stored["metric"], stored["operator"], float(stored["threshold"]))


def _check_threshold_configured(webhook: Webhook) -> None:
    if METRIC_THRESHOLD_CROSSED in webhook.events and not webhook.metric_threshold:
        raise InvalidValueError(
            f"The event {METRIC_THRESHOLD_CROSSED} needs the hook's metric threshold "
            "(a metric name, an operator and a threshold)",
            field="metric_threshold",
        )


async def _check_url(settings: Settings, url: str) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidValueError(
            f"A webhook URL is at most {MAX_URL_LENGTH} characters", field="url"
        )
    await webhook_sender.resolve_checked(url, allow_private=settings.webhook_allow_private)
    return url


async def create_webhook(
    session: AsyncSession,
    *,
    project: Project,
    name: str,
    url: str,
    events: Sequence[str],
    description: str | None = None,
    secret: str | None = None,
    status: WebhookStatus = WebhookStatus.ACTIVE,
    metric_threshold: MetricThreshold | None = None,
    settings: Settings,
    actor: Actor | None,
) -> Webhook:
    """Create a hook, once `actor` may (`MANAGE_WEBHOOKS`); the secret is encrypted."""
    await policy.authorize(session, actor, project, Operation.MANAGE_WEBHOOKS)
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(Webhook).where(Webhook.project_id == project.id)
    )
    if (count or 0) >= MAX_WEBHOOKS_PER_PROJECT:
        raise InvalidValueError(
            f"A project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks", field="project"
        )
    webhook = Webhook(
        project_id=project.id,
        name=_check_name(name),
        url=await _check_url(settings, url),
        events=_check_events(events),
        description=description,
        status=status,
        encrypted_secret=encrypt_secret(settings, secret),
        metric_threshold=None if metric_threshold is None else metric_threshold.checked(),
    )
    _check_threshold_configured(webhook)
    session.add(webhook)
    await session.flush()
    forget_hooks(session)
    await audit.record(
        session, actor=actor, action="webhook.create", target=webhook, details={"url": url}
    )
    return webhook


async def list_webhooks(
    session: AsyncSession, *, project: Project, actor: Actor | None, page: Page | None = None
) -> tuple[Sequence[Webhook], str | None]:
    """The project's hooks, oldest first (one page of them when `page` is given), and
    the next page's token."""
    await policy.authorize(session, actor, project, Operation.MANAGE_WEBHOOKS)
    query = sa.select(Webhook).where(Webhook.project_id == project.id).order_by(Webhook.id)
    if page is None:
        return list(await session.scalars(query)), None
    return page.split(list(await session.scalars(page.of(query))))


async def get_webhook(
    session: AsyncSession, *, project: Project, webhook_id: int, actor: Actor | None
) -> Webhook:
    """One of the project's hooks (NotFoundError for another project's)."""
    await policy.authorize(session, actor, project, Operation.MANAGE_WEBHOOKS)
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None or webhook.project_id != project.id:
        raise NotFoundError(f"Webhook with ID {webhook_id} not found", field="webhook_id")
    return webhook


async def find_webhook(session: AsyncSession, *, webhook_id: int, actor: Actor | None) -> Webhook:
    """A hook by its id alone, once `actor` may manage its project's hooks; a hook in a
    project the actor may not read is not found, signed in or not (as an id names it)."""
    webhook = await session.get(Webhook, webhook_id)
    project = None if webhook is None else await session.get_one(Project, webhook.project_id)
    role = None if project is None else await policy.role_in(session, actor, project)
    if webhook is None or project is None or not policy.may_read(actor, project, role):
        raise NotFoundError(f"Webhook with ID {webhook_id} not found", field="id")
    policy.check(actor, project, role, Operation.MANAGE_WEBHOOKS)
    return webhook


async def update_webhook(
    session: AsyncSession,
    *,
    webhook: Webhook,
    name: str | None = None,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
    secret: str | None = None,
    status: WebhookStatus | None = None,
    metric_threshold: MetricThreshold | None = None,
    settings: Settings,
    actor: Actor | None,
) -> Webhook:
    """Change what is given of a hook, once `actor` may (`MANAGE_WEBHOOKS`)."""
    await policy.authorize_in(session, actor, webhook.project_id, Operation.MANAGE_WEBHOOKS)
    if name is not None:
        webhook.name = _check_name(name)
    if url is not None:
        webhook.url = await _check_url(settings, url)
    if events is not None:
        webhook.events = _check_events(events)
    if description is not None:
        webhook.description = description
    if secret is not None:
        webhook.encrypted_secret = encrypt_secret(settings, secret)
    if status is not None:
        webhook.status = status
    if metric_threshold is not None:
        webhook.metric_threshold = metric_threshold.checked()
    _check_threshold_configured(webhook)
    webhook.updated_at = utcnow()
    await session.flush()
    forget_hooks(session)
    await audit.record(session, actor=actor, action="webhook.update", target=webhook)
    return webhook


async def delete_webhook(session: AsyncSession, *, webhook: Webhook, actor: Actor | None) -> None:
    """Delete a hook with its delivery log, once `actor` may (`MANAGE_WEBHOOKS`); its
    pending deliveries are not sent."""
    await policy.authorize_in(session, actor, webhook.project_id, Operation.MANAGE_WEBHOOKS)
    await audit.record(session, actor=actor, action="webhook.delete", target=webhook)
    await session.execute(sa.delete(Webhook).where(Webhook.id == webhook.id))
    forget_hooks(session)


@dataclass(frozen=True)
class TestResult:
    """MLflow's WebhookTestResult."""

    success: bool
    response_status: int | None
    response_body: str | None
    error_message: str | None


async def test_webhook(
    session: AsyncSession,
    *,
    webhook: Webhook,
    event: str | None,
    settings: Settings,
    actor: Actor | None,
) -> TestResult:
    """Send MLflow's example payload of `event` (default: the hook's first event) to the
    hook now, signed, and answer what came back; nothing is logged or retried."""
    await policy.authorize_in(session, actor, webhook.project_id, Operation.MANAGE_WEBHOOKS)
    chosen = event or webhook.events[0]
    if chosen not in EVENTS:
        raise InvalidValueError(f"Unknown webhook event {chosen}", field="event")
    body = _envelope(chosen, EXAMPLE_DATA.get(chosen, {}))
    outcome = await webhook_sender.send(
        webhook.url,
        body,
        delivery_id=str(uuid.uuid4()),
        secret=decrypt_secret(settings, webhook.encrypted_secret),
        allow_private=settings.webhook_allow_private,
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    answer = outcome.response_excerpt
    return TestResult(
        success=outcome.succeeded,
        response_status=outcome.status_code,
        response_body=answer.split("\n", 1)[1] if answer else None,
        error_message=None if outcome.succeeded else f"Failed to test webhook: {outcome.error}",
    )


# --- Events -------------------------------------------------------------------------------

# Builds an event's `data` when a hook wants it; None: nothing to send after all.
DataBuilder = Callable[[AsyncSession], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Event:
    """Something that happened in a project, for its hooks (built by the functions below)."""

    project_id: int
    name: str
    ordering_key: str
    data: DataBuilder


def _fixed(data: dict[str, Any]) -> DataBuilder:
    async def build(session: AsyncSession) -> dict[str, Any]:
        return data

    return build


async def _model_name(session: AsyncSession, model_id: int) -> str:
    model = await session.get_one(Model, model_id)
    return model.display_name


def _model_key(model_id: int) -> str:
    return f"model:{model_id}"


def registered_model_created(model: Model, tags: Mapping[str, str] | None = None) -> Event:
    """A model entered the registry (nothing is sent for a model that did not), with the
    tags given, or those it holds (an experiment's name being registered)."""

    async def data(session: AsyncSession) -> dict[str, Any] | None:
        if not model.registered:
            return None
        if tags is None:
            held = await session.execute(
                sa.select(ModelMetadata.name, ModelMetadata.value).where(
                    ModelMetadata.model_id == model.id
                )
            )
            return _registered_model(model, {name: value for name, value in held})
        return _registered_model(model, tags)

    return Event(model.project_id, "registered_model.created", _model_key(model.id), data)


def _registered_model(model: Model, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"name": model.display_name, "tags": dict(tags), "description": model.description}


def registered_model_deleted(model: Model, name: str) -> list[Event]:
    """A registered model left the registry (nothing for a model that was not in it)."""
    if not model.registered:
        return []
    data = _fixed({"name": name})
    return [Event(model.project_id, "registered_model.deleted", _model_key(model.id), data)]


def model_version_created(
    version: ModelVersion, candidate: Candidate, tags: Mapping[str, str] | None
) -> Event:
    async def data(session: AsyncSession) -> dict[str, Any]:
        tags_given = dict(tags or {})
        return {
            "name": await _model_name(session, version.model_id),
            "version": str(version.number),
            "source": version.source or "",
            "run_id": tags_given.get("mlflow.source.run_id", candidate.eid),
            "tags": {k: v for k, v in tags_given.items() if k not in _HIDDEN_VERSION_TAGS},
            "description": version.description,
        }

    return Event(version.project_id, "model_version.created", _model_key(version.model_id), data)


def model_version_deleted(version: ModelVersion, semver: str) -> Event:
    async def data(session: AsyncSession) -> dict[str, Any]:
        name = await _model_name(session, version.model_id)
        return {"name": name, "version": str(version.number), "semver": semver}

    return Event(version.project_id, "model_version.deleted", _model_key(version.model_id), data)


def version_tags_set(version: ModelVersion, items: Mapping[str, str]) -> list[Event]:
    def one(key: str, value: str) -> Event:
        async def data(session: AsyncSession) -> dict[str, Any]:
            name = await _model_name(session, version.model_id)
            return {"name": name, "version": str(version.number), "key": key, "value": value}

        return Event(
            version.project_id, "model_version_tag.set", _model_key(version.model_id), data
        )

    return [one(key, value) for key, value in items.items()]


def version_tag_deleted(version: ModelVersion, key: str) -> Event:
    async def data(session: AsyncSession) -> dict[str, Any]:
        name = await _model_name(session, version.model_id)
        return {"name": name, "version": str(version.number), "key": key}

    return Event(
        version.project_id, "model_version_tag.deleted", _model_key(version.model_id), data
    )


def alias_set(model: Model, alias: str, version: ModelVersion) -> list[Event]:
    """MLflow's alias created, and ours when it moved: emit before the alias is written
    (the moved event reads where it pointed)."""
    created = {"name": model.display_name, "alias": alias, "version": str(version.number)}

    async def moved(session: AsyncSession) -> dict[str, Any] | None:
        previous = await session.scalar(
            sa.select(ModelVersion.number)
            .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
        )
        if previous is None or previous == version.number:
            return None
        return created | {"from_version": str(previous)}

    key = _model_key(model.id)
    return [
        Event(model.project_id, "model_version_alias.created", key, _fixed(created)),
        Event(model.project_id, "model_version_alias.moved", key, moved),
    ]


def alias_deleted(model: Model, alias: str) -> Event:
    data = _fixed({"name": model.display_name, "alias": alias})
    return Event(model.project_id, "model_version_alias.deleted", _model_key(model.id), data)


_CANDIDATE_ENDINGS = {
    CandidateStatus.FINISHED: "candidate.finished",
    CandidateStatus.FAILED: "candidate.failed",
}


def candidate_ended(
    candidate: Candidate, status: CandidateStatus | None, end_time: int | None
) -> list[Event]:
    """A run moving into FINISHED or FAILED (emit before the status changes; nothing for
    another status, or a run already in it)."""
    name = None if status is None else _CANDIDATE_ENDINGS.get(status)
    if name is None or status is candidate.status:
        return []

    async def data(session: AsyncSession) -> dict[str, Any]:
        return {
            "model": await _model_name(session, candidate.model_id),
            "run_id": candidate.eid,
            "run_name": candidate.name,
            "status": name.partition(".")[2].upper(),
            "end_time": end_time if end_time is not None else candidate.end_time,
        }

    return [Event(candidate.project_id, name, f"candidate:{candidate.id}", data)]


def job_ended(job: Job) -> list[Event]:
    """A project's job that succeeded or failed for good (not its own deliveries')."""
    if job.project_id is None or job.kind == jobs.WEBHOOK_DELIVERY:
        return []
    name = {JobStatus.SUCCEEDED: "job.succeeded", JobStatus.FAILED: "job.failed"}.get(job.status)
    if name is None:
        return []
    data = {"id": job.id, "kind": job.kind, "status": job.status.value, "error": job.last_error}
    return [Event(job.project_id, name, f"job:{job.id}", _fixed(data))]


class LoggedPoint(Protocol):
    """A metric point being logged (`app.services.candidates.MetricPoint`)."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def step(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


# Where the candidate lookup notes, per project, whether a hook wants metric crossings.
_CROSSING_HOOKS = "webhooks.crossing_hooks"


def with_crossing_hook(query: sa.Select[Any]) -> sa.Select[Any]:
    """A candidate lookup that also reads whether its project has an active hook wanting
    `METRIC_THRESHOLD_CROSSED` (rows of the candidate and one such hook's id, or
    None), outer-joined: no statement of
    its own on the logging path. The answer goes to `note_crossing_hooks`."""
    wanting = sa.and_(
        Webhook.project_id == Candidate.project_id,
        Webhook.status == WebhookStatus.ACTIVE,
        sa.cast(Webhook.events, sa.Text).contains(METRIC_THRESHOLD_CROSSED),
    )
    return query.add_columns(Webhook.id).outerjoin(Webhook, wanting).limit(1)


def note_crossing_hooks(session: AsyncSession, project_id: int, present: bool) -> None:
    """Remember what `with_crossing_hook` read for this transaction."""
    session.info.setdefault(_CROSSING_HOOKS, {})[project_id] = bool(present)


async def emit_metric_crossings(
    session: AsyncSession, candidate: Candidate, points: Sequence[LoggedPoint]
) -> None:
    """`candidate.metric_threshold_crossed` for each hook whose metric a point moved from
    the wrong side of its threshold (or from no value) to the right side, once per
    candidate and hook; emit before the latest values are written (it reads them).
    Nothing is read when the candidate's lookup noted that no hook wants the event."""
    if not points or not session.info.get(_CROSSING_HOOKS, {}).get(candidate.project_id, True):
        return
    names = {point.name for point in points}
    watching = [
        (hook, threshold)
        for hook in await _active_hooks(session, candidate.project_id)
        if METRIC_THRESHOLD_CROSSED in hook.events
        and (threshold := MetricThreshold.of(hook)) is not None
        and threshold.metric in names
    ]
    if not watching:
        return
    key = f"candidate:{candidate.id}"
    fired = set(
        await session.scalars(
            sa.select(WebhookDelivery.webhook_id).where(
                WebhookDelivery.webhook_id.in_([hook.id for hook, _ in watching]),
                WebhookDelivery.event == METRIC_THRESHOLD_CROSSED,
                WebhookDelivery.ordering_key == key,
            )
        )
    )
    watching = [(hook, threshold) for hook, threshold in watching if hook.id not in fired]
    if not watching:
        return
    latest: dict[str, float | None] = {
        name: value
        for name, value in await session.execute(
            sa.select(CandidateLatestMetric.name, CandidateLatestMetric.value).where(
                CandidateLatestMetric.candidate_id == candidate.id,
                CandidateLatestMetric.name.in_({threshold.metric for _, threshold in watching}),
            )
        )
    }
    ordered = sorted(points, key=lambda point: (point.step, point.timestamp))
    for hook, threshold in watching:
        crossing = _first_crossing(
            threshold,
            latest.get(threshold.metric),
            [p for p in ordered if p.name == threshold.metric],
        )
        if crossing is None:
            continue
        data = {
            "model": await _model_name(session, candidate.model_id),
            "run_id": candidate.eid,
            "run_name": candidate.name,
            "metric": threshold.metric,
            "operator": threshold.operator,
            "threshold": threshold.threshold,
            "value": crossing.value,
            "step": crossing.step,
            "timestamp": crossing.timestamp,
        }
        body = _envelope(METRIC_THRESHOLD_CROSSED, data)
        await _add_delivery(session, hook, METRIC_THRESHOLD_CROSSED, key, body)


def _first_crossing(
    threshold: MetricThreshold, before: float | None, points: Sequence[LoggedPoint]
) -> LoggedPoint | None:
    """The first point on the right side of the threshold whose predecessor (the value
    held before, then each point in turn) was not; NaN is on neither side."""
    right = THRESHOLD_OPERATORS[threshold.operator]

    def on_right_side(value: float | None) -> bool:
        return value is not None and not math.isnan(value) and right(value, threshold.threshold)

    previous = before
    for point in points:
        if on_right_side(point.value) and not on_right_side(previous):
            return point
        previous = point.value
    return None


def _envelope(event: str, data: dict[str, Any]) -> str:
    entity, _, action = event.partition(".")
    body = {
        "entity": entity,
        "action": action,
        "timestamp": utcnow().isoformat(),
        "data": data,
    }
    return json.dumps(body)


async def emit(session: AsyncSession, *events: Event) -> None:
    """Write a delivery and its job for each active hook of the event's project that
    wants it, in the caller's transaction (see the module's docstring)."""
    for event in events:
        hooks = [
            hook
            for hook in await _active_hooks(session, event.project_id)
            if event.name in hook.events
        ]
        if not hooks:
            continue
        data = await event.data(session)
        if data is None:
            continue
        body = _envelope(event.name, data)
        for hook in hooks:
            await _add_delivery(session, hook, event.name, event.ordering_key, body)


async def _active_hooks(session: AsyncSession, project_id: int) -> list[Webhook]:
    # One select per project and transaction: a bulk change emits many events.
    known: dict[int, list[Webhook]] = session.info.setdefault(_HOOKS, {})
    if project_id not in known:
        known[project_id] = list(await session.scalars(_ACTIVE_HOOKS, {"project_id": project_id}))
    return known[project_id]


# A finished run asks it: built once (see `app.db`).
_ACTIVE_HOOKS = sa.select(Webhook).where(
    Webhook.project_id == sa.bindparam("project_id"), Webhook.status == WebhookStatus.ACTIVE
)


# Where `_active_hooks` keeps what it read, in the session's info.
_HOOKS = "webhooks.active_hooks"


def forget_hooks(session: AsyncSession) -> None:
    """Drop the hooks `_active_hooks` read in this session (a hook changed)."""
    session.info.pop(_HOOKS, None)
    session.info.pop(_CROSSING_HOOKS, None)


async def _add_delivery(
    session: AsyncSession,
    hook: Webhook,
    event: str,
    ordering_key: str,
    body: str,
    *,
    redelivery_of: int | None = None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        delivery_id=str(uuid.uuid4()),
        webhook_id=hook.id,
        event=event,
        ordering_key=ordering_key,
        payload=body,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
        attempt_log=[],
        redelivery_of_id=redelivery_of,
    )
    session.add(delivery)
    await session.flush()
    await _wake(session, hook)
    return delivery


# Where `_wake` notes the hooks this transaction made sure a sender will drain.
_WOKEN = "webhooks.woken_hooks"


async def _wake(session: AsyncSession, hook: Webhook) -> None:
    """Make sure a sender drains the hook after this transaction commits: enqueue one,
    unless one is waiting that has not started yet (once per hook and transaction).

    Race-free by the hook's row lock, held to the commit: a waiting sender seen here
    locks the hook before it reads deliveries (`_claim_batch`), so it reads them only
    after this transaction committed, deliveries included. On SQLite the database's
    single writer orders the two the same way."""
    woken: set[int] = session.info.setdefault(_WOKEN, set())
    if hook.id in woken:
        return
    await session.execute(
        sa.select(Webhook.id)
        .where(Webhook.project_id == hook.project_id, Webhook.status == WebhookStatus.ACTIVE)
        .order_by(Webhook.id)  # all of the project's, in one order: no deadlock between two
        .with_for_update()
    )
    waiting = await session.scalar(
        sa.select(Job.id)
        .where(
            Job.kind == jobs.WEBHOOK_DELIVERY,
            Job.status == JobStatus.PENDING,
            Job.project_id == hook.project_id,
            Job.run_after <= utcnow(),
            Job.payload["webhook"].as_integer() == hook.id,
        )
        .limit(1)
    )
    if waiting is None:
        await _enqueue_sender(session, hook.id, hook.project_id)
    woken.add(hook.id)


async def _enqueue_sender(
    session: AsyncSession, webhook_id: int, project_id: int, *, run_after: dt.datetime | None = None
) -> None:
    await jobs.enqueue(
        session,
        kind=jobs.WEBHOOK_DELIVERY,
        payload={"webhook": webhook_id},
        project_id=project_id,
        run_after=run_after,
    )


# --- Deliveries ---------------------------------------------------------------------------


def sorted_deliveries(webhook: Webhook) -> tuple[sa.Select[Any], Sort]:
    """A hook's deliveries, newest first (a query and its order, for `keyset.read`)."""
    query = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    return query, Sort([SortKey(WebhookDelivery.id, ascending=False)], signature="deliveries")


async def redeliver(
    session: AsyncSession, *, delivery_id: int, actor: Actor | None
) -> WebhookDelivery:
    """Send a delivery's stored body again, as a new delivery (a new delivery id) of the
    same hook, event and order, once `actor` may manage the hook's project's hooks."""
    original = await session.get(WebhookDelivery, delivery_id)
    if original is None:
        raise NotFoundError(f"Webhook delivery {delivery_id} does not exist", field="id")
    hook = await find_webhook(session, webhook_id=original.webhook_id, actor=actor)
    again = await _add_delivery(
        session,
        hook,
        original.event,
        original.ordering_key,
        original.payload,
        redelivery_of=original.id,
    )
    await audit.record(
        session,
        actor=actor,
        action="webhook.redeliver",
        target=hook,
        details={"delivery": original.delivery_id, "as": again.delivery_id},
    )
    return again


async def get_deliveries(session: AsyncSession, *, webhook_id: int) -> list[WebhookDelivery]:
    """A hook's deliveries, oldest first (for tests and tools; GraphQL pages them)."""
    rows = await session.scalars(
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id)
    )
    return list(rows)


# A sender claims at most this many deliveries at once, and has at most this many
# requests open to its hook's receiver (a modest receiver's listen backlog is 5).
BATCH_SIZE = 100
SEND_CONCURRENCY = 4


@dataclass(frozen=True)
class _Claimed:
    row_id: int
    delivery_id: str
    attempt: int
    body: str
    created_at: dt.datetime
    attempt_log: list[dict[str, Any]]


@dataclass(frozen=True)
class _Batch:
    url: str
    secret: str | None
    claimed_until: dt.datetime
    deliveries: list[_Claimed]


async def deliver(database: Database, settings: Settings, *, webhook: int) -> None:
    """Send the hook's due deliveries until none is left (see the module's docstring);
    what a `webhook_delivery` job does."""
    while True:
        while (batch := await _claim_batch(database, settings, webhook)) is not None:
            outcomes = await _send_all(settings, batch)
            async with database.session() as session:
                await _record(session, settings, webhook, batch, outcomes)
        async with database.session() as session:
            if not await _follow_up(session, webhook):
                return


async def _send_all(settings: Settings, batch: _Batch) -> list[webhook_sender.Outcome]:
    """Send a batch's deliveries concurrently (at most `SEND_CONCURRENCY` at a time):
    each heads its ordering key, so no two are about one object."""
    limit = asyncio.Semaphore(SEND_CONCURRENCY)

    async def send(claimed: _Claimed) -> webhook_sender.Outcome:
        async with limit:
            return await webhook_sender.send(
                batch.url,
                claimed.body,
                delivery_id=claimed.delivery_id,
                secret=batch.secret,
                allow_private=settings.webhook_allow_private,
                timeout_seconds=settings.webhook_timeout_seconds,
            )

    return await asyncio.gather(*(send(claimed) for claimed in batch.deliveries))


def _heading_its_key(webhook_id: int) -> sa.ColumnElement[bool]:
    """The hook's pending deliveries with no earlier pending one of their ordering key."""
    earlier = sa.orm.aliased(WebhookDelivery)
    return sa.and_(
        WebhookDelivery.webhook_id == webhook_id,
        WebhookDelivery.status == DeliveryStatus.PENDING,
        ~sa.exists().where(
            earlier.webhook_id == webhook_id,
            earlier.ordering_key == WebhookDelivery.ordering_key,
            earlier.status == DeliveryStatus.PENDING,
            earlier.id < WebhookDelivery.id,
        ),
    )


async def _claim_batch(database: Database, settings: Settings, webhook_id: int) -> _Batch | None:
    """Claim the hook's due deliveries that head their ordering key, in one statement,
    after locking the hook (see `_wake`); None when there are none."""
    now = utcnow()
    async with database.session() as session:
        hook = (
            await session.execute(
                sa.select(Webhook.status, Webhook.url, Webhook.encrypted_secret)
                .where(Webhook.id == webhook_id)
                .with_for_update()
            )
        ).one_or_none()
        if hook is None:
            return None  # deleted with its deliveries
        status, url, encrypted_secret = hook
        if status is not WebhookStatus.ACTIVE:
            await _update(
                session,
                sa.update(WebhookDelivery)
                .where(
                    WebhookDelivery.webhook_id == webhook_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
                .values(
                    status=DeliveryStatus.FAILED,
                    last_error="the webhook is disabled",
                    finished_at=now,
                    updated_at=now,
                ),
            )
            return None
        heads = (
            sa.select(WebhookDelivery.id)
            .where(_heading_its_key(webhook_id), WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(BATCH_SIZE)
        )
        claimed_until = now + dt.timedelta(seconds=settings.webhook_timeout_seconds) + CLAIM_MARGIN
        rows = await session.execute(
            sa.update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(heads.scalar_subquery()),
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=claimed_until, updated_at=now)
            .returning(
                WebhookDelivery.id,
                WebhookDelivery.delivery_id,
                WebhookDelivery.attempts,
                WebhookDelivery.payload,
                WebhookDelivery.created_at,
                WebhookDelivery.attempt_log,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = sorted((_Claimed(*row) for row in rows), key=lambda claimed: claimed.row_id)
        if not claimed:
            return None
        return _Batch(
            url=url,
            secret=decrypt_secret(settings, encrypted_secret),
            claimed_until=claimed_until,
            deliveries=claimed,
        )


def retry_delay(settings: Settings, attempts: int, retry_after: float | None) -> float:
    """Seconds before the next attempt after `attempts` failed ones: what Retry-After
    asks (up to the maximum), else exponential backoff jittered down to half of it."""
    cap = settings.webhook_retry_max_seconds
    if retry_after is not None:
        return min(retry_after, cap)
    delay = min(settings.webhook_retry_base_seconds * 2.0 ** (attempts - 1), cap)
    return random.uniform(delay / 2, delay)


async def _record(
    session: AsyncSession,
    settings: Settings,
    webhook_id: int,
    batch: _Batch,
    outcomes: Sequence[webhook_sender.Outcome],
) -> None:
    """Record each attempt's outcome on its row, in one statement executed for all of
    them, fenced by the claim (an outcome whose claim another sender took over is
    dropped: that sender sends it again)."""
    now = utcnow()
    window = dt.timedelta(seconds=settings.webhook_retry_window_seconds)
    rows: list[dict[str, Any]] = []
    for claimed, outcome in zip(batch.deliveries, outcomes, strict=True):
        attempts = claimed.attempt + 1
        entry = {
            "attempt": attempts,
            "at": now.isoformat(),
            "response_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
        }
        status, next_attempt_at, finished_at = DeliveryStatus.PENDING, now, None
        if outcome.succeeded:
            status, finished_at = DeliveryStatus.DELIVERED, now
        elif now - claimed.created_at < window:
            delay = retry_delay(settings, attempts, outcome.retry_after)
            next_attempt_at = now + dt.timedelta(seconds=delay)
        else:
            status, finished_at = DeliveryStatus.FAILED, now
        rows.append(
            {
                "claimed_id": claimed.row_id,
                "claimed_attempt": claimed.attempt,
                "claimed_until": batch.claimed_until,
                "attempts": attempts,
                "status": status,
                "next_attempt_at": next_attempt_at,
                "finished_at": finished_at,
                "last_response_code": outcome.status_code,
                "last_duration_ms": outcome.duration_ms,
                "last_error": outcome.error,
                "request_excerpt": outcome.request_excerpt,
                "response_excerpt": outcome.response_excerpt,
                "attempt_log": [*claimed.attempt_log, entry],
                "updated_at": now,
            }
        )
    table = cast(sa.Table, WebhookDelivery.__table__)
    result = await session.execute(
        sa.update(table).where(
            table.c.id == sa.bindparam("claimed_id"),
            table.c.attempts == sa.bindparam("claimed_attempt"),
            table.c.next_attempt_at == sa.bindparam("claimed_until"),
        ),
        rows,
    )
    recorded = cast(CursorResult[Any], result).rowcount
    if recorded != len(rows):
        logger.warning(
            "webhook %s: %s of %s outcomes dropped (their claims expired and another "
            "sender took them over)",
            webhook_id,
            len(rows) - recorded,
            len(rows),
        )


async def _follow_up(session: AsyncSession, webhook_id: int) -> bool:
    """Once no delivery of the hook was due: have a sender come back when the next one
    heading its key falls due (a retry, or a claim of a sender that died), unless one is
    due by then. True when one is due already (the caller claims again)."""
    due = await session.scalar(
        sa.select(sa.func.min(WebhookDelivery.next_attempt_at)).where(_heading_its_key(webhook_id))
    )
    if due is None:
        return False
    if due <= utcnow():
        return True
    project_id = await session.scalar(sa.select(Webhook.project_id).where(Webhook.id == webhook_id))
    if project_id is None:
        return False
    coming = await session.scalar(
        sa.select(Job.id)
        .where(
            Job.kind == jobs.WEBHOOK_DELIVERY,
            Job.status == JobStatus.PENDING,
            Job.project_id == project_id,
            Job.run_after <= due,
            Job.payload["webhook"].as_integer() == webhook_id,
        )
        .limit(1)
    )
    if coming is None:
        await _enqueue_sender(session, webhook_id, project_id, run_after=due)
    return False


async def _update(session: AsyncSession, statement: sa.Update) -> CursorResult[Any]:
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result)
