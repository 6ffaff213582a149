"""Webhooks as GraphQL shows them: a project's hooks (`Project.webhooks`) and each hook's
delivery log (`Webhook.deliveries`, newest first), readable by whoever may manage the
project's hooks (maintainers). A hook's and a delivery's `id` are global ids
(``Webhook:<row id>``, ``WebhookDelivery:<row id>``) that the webhook mutations take. No
field shows a hook's secret."""

from __future__ import annotations

import datetime as dt
import json

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from app import models as rows
from app.graphql import connections
from app.graphql.connections import Connection
from app.graphql.context import Info
from app.services import keyset, webhooks

strawberry.enum(rows.WebhookStatus, name="WebhookStatus")
strawberry.enum(rows.DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(description="One attempt of a delivery.")
class WebhookDeliveryAttempt:
    attempt: int
    at: dt.datetime
    response_code: int | None = strawberry.field(description="null when no answer came.")
    duration_ms: int
    error: str | None


@strawberry.type(description="One event sent to one webhook, with every attempt.")
class WebhookDelivery:
    id: strawberry.ID
    delivery_id: str = strawberry.field(
        description="The X-MLflow-Delivery-Id each attempt carries (a receiver dedupes on it)."
    )
    event: str
    status: rows.DeliveryStatus
    attempts: int
    response_code: int | None = strawberry.field(description="The last attempt's HTTP status.")
    duration_ms: int | None = strawberry.field(description="The last attempt's duration.")
    error: str | None = strawberry.field(description="The last attempt's error.")
    request_excerpt: str | None
    response_excerpt: str | None
    payload: JSON = strawberry.field(description="The body sent (a redelivery sends it again).")
    attempt_log: list[WebhookDeliveryAttempt]
    next_attempt_at: dt.datetime | None = strawberry.field(
        description="When a pending delivery is tried again."
    )
    created_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: rows.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(relay.to_base64("WebhookDelivery", row.id)),
            delivery_id=row.delivery_id,
            event=row.event,
            status=row.status,
            attempts=row.attempts,
            response_code=row.last_response_code,
            duration_ms=row.last_duration_ms,
            error=row.last_error,
            request_excerpt=row.request_excerpt,
            response_excerpt=row.response_excerpt,
            payload=JSON(json.loads(row.payload)),
            attempt_log=[
                WebhookDeliveryAttempt(
                    attempt=entry["attempt"],
                    at=dt.datetime.fromisoformat(entry["at"]),
                    response_code=entry["response_code"],
                    duration_ms=entry["duration_ms"],
                    error=entry["error"],
                )
                for entry in row.attempt_log
            ],
            next_attempt_at=(
                row.next_attempt_at if row.status is rows.DeliveryStatus.PENDING else None
            ),
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


@strawberry.type(
    description="What `candidate.metric_threshold_crossed` watches: a candidate's metric "
    "logged on the right side of a threshold (`value <operator> threshold`), once per "
    "candidate."
)
class MetricThreshold:
    metric: str
    operator: str = strawberry.field(description="One of >, >=, <, <=.")
    threshold: float


@strawberry.type(description="Where a project's registry events are sent.")
class Webhook:
    id: strawberry.ID
    name: str
    url: str
    events: list[str] = strawberry.field(description="MLflow's `entity.action` names.")
    description: str | None
    status: rows.WebhookStatus
    signed: bool = strawberry.field(description="Whether requests carry X-MLflow-Signature.")
    metric_threshold: MetricThreshold | None
    created_at: dt.datetime
    updated_at: dt.datetime
    row: strawberry.Private[rows.Webhook]

    @classmethod
    def from_row(cls, row: rows.Webhook) -> Webhook:
        return cls(
            id=strawberry.ID(relay.to_base64("Webhook", row.id)),
            name=row.name,
            url=row.url,
            events=list(row.events),
            description=row.description,
            status=row.status,
            signed=row.encrypted_secret is not None,
            metric_threshold=_threshold(row),
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @strawberry.field
    async def deliveries(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[WebhookDelivery] | None:
        """The hook's deliveries, newest first."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        query, sort = webhooks.sorted_deliveries(self.row)
        async with info.context.database.session(read_only=True) as session:
            page = await keyset.read(session, query, sort, window)
        return connections.connection(page, WebhookDelivery.from_row)


@strawberry.type(description="What a test request of a webhook got back.")
class WebhookTestResult:
    success: bool
    response_status: int | None
    response_body: str | None
    error_message: str | None


def _threshold(row: rows.Webhook) -> MetricThreshold | None:
    threshold = webhooks.MetricThreshold.of(row)
    if threshold is None:
        return None
    return MetricThreshold(
        metric=threshold.metric, operator=threshold.operator, threshold=threshold.threshold
    )
