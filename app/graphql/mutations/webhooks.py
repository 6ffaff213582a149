"""Managing a project's webhooks (maintainers): create, update, delete, test, and send a
delivery again. A created hook's secret is in the answer to its creation only."""

from __future__ import annotations

import secrets
from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import ConflictError, NotFoundError, PermissionError, ValidationError
from app.graphql.nodes import row_id
from app.graphql.types.webhooks import Webhook, WebhookDelivery, WebhookTestResult
from app.models import WebhookStatus
from app.runtime import get_runtime
from app.services import projects, webhooks


@strawberry.type(description="A webhook just created, with its secret, shown this once.")
class WebhookCreated:
    webhook: Webhook
    secret: str | None = strawberry.field(
        description="What requests are signed with; null for an unsigned hook."
    )


@strawberry.type(description="The webhook was deleted, with its delivery log.")
class WebhookDeleted:
    id: strawberry.ID


WebhookCreateResult = Annotated[
    WebhookCreated | ValidationError | ConflictError | NotFoundError | PermissionError,
    strawberry.union("WebhookCreateResult"),
]
WebhookResult = Annotated[
    Webhook | ValidationError | NotFoundError | PermissionError,
    strawberry.union("WebhookResult"),
]
WebhookDeleteResult = Annotated[
    WebhookDeleted | ValidationError | NotFoundError | PermissionError,
    strawberry.union("WebhookDeleteResult"),
]
WebhookTestResultUnion = Annotated[
    WebhookTestResult | ValidationError | NotFoundError | PermissionError,
    strawberry.union("WebhookTestOutcome"),
]
WebhookDeliveryResult = Annotated[
    WebhookDelivery | ValidationError | NotFoundError | PermissionError,
    strawberry.union("WebhookDeliveryResult"),
]


@strawberry.input(description="A metric threshold (`candidate.metric_threshold_crossed`).")
class MetricThresholdInput:
    metric: str
    operator: str = strawberry.field(description="One of >, >=, <, <=.")
    threshold: float

    def value(self) -> webhooks.MetricThreshold:
        return webhooks.MetricThreshold(self.metric, self.operator, self.threshold)


@strawberry.input
class WebhookCreateInput:
    project: str = strawberry.field(description="The project's path.")
    name: str
    url: str
    events: list[str] = strawberry.field(description="MLflow's `entity.action` event names.")
    description: str | None = None
    secret: str | None = strawberry.field(
        default=None, description="Signs the requests; one is generated when omitted."
    )
    signed: bool = strawberry.field(
        default=True, description="false: requests go unsigned (no secret)."
    )
    status: WebhookStatus = WebhookStatus.ACTIVE
    metric_threshold: MetricThresholdInput | None = strawberry.field(
        default=None, description="Needed by candidate.metric_threshold_crossed."
    )


@strawberry.input
class WebhookUpdateInput:
    id: strawberry.ID
    name: str | None = None
    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    secret: str | None = strawberry.field(default=None, description="A new secret.")
    status: WebhookStatus | None = None
    metric_threshold: MetricThresholdInput | None = None


@strawberry.input
class WebhookDeleteInput:
    id: strawberry.ID


@strawberry.input
class WebhookDeliveryRedeliverInput:
    id: strawberry.ID = strawberry.field(description="The delivery to send again.")


@strawberry.input
class WebhookTestInput:
    id: strawberry.ID
    event: str | None = strawberry.field(
        default=None, description="The event whose example is sent; the hook's first one."
    )


async def webhook_create(info: Info, input: WebhookCreateInput) -> WebhookCreateResult:
    """Create a webhook; its secret (given, or generated) is answered this once."""
    actor = info.context.actor
    secret = input.secret or (secrets.token_urlsafe(32) if input.signed else None)
    async with info.context.database.session() as session:
        project = await projects.find_project(session, actor=actor, path=input.project)
        row = await webhooks.create_webhook(
            session,
            project=project,
            name=input.name,
            url=input.url,
            events=input.events,
            description=input.description,
            secret=secret,
            status=input.status,
            metric_threshold=None
            if input.metric_threshold is None
            else input.metric_threshold.value(),
            settings=get_runtime(info.context.request).settings,
            actor=actor,
        )
    return WebhookCreated(webhook=Webhook.from_row(row), secret=secret)


async def webhook_update(info: Info, input: WebhookUpdateInput) -> WebhookResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await webhooks.find_webhook(
            session, webhook_id=row_id(input.id, "Webhook"), actor=actor
        )
        await webhooks.update_webhook(
            session,
            webhook=row,
            name=input.name,
            url=input.url,
            events=input.events,
            description=input.description,
            secret=input.secret,
            status=input.status,
            metric_threshold=None
            if input.metric_threshold is None
            else input.metric_threshold.value(),
            settings=get_runtime(info.context.request).settings,
            actor=actor,
        )
    return Webhook.from_row(row)


async def webhook_delete(info: Info, input: WebhookDeleteInput) -> WebhookDeleteResult:
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await webhooks.find_webhook(
            session, webhook_id=row_id(input.id, "Webhook"), actor=actor
        )
        await webhooks.delete_webhook(session, webhook=row, actor=actor)
    return WebhookDeleted(id=input.id)


async def webhook_test(info: Info, input: WebhookTestInput) -> WebhookTestResultUnion:
    """Send the example payload of an event to the hook now and answer what came back."""
    actor = info.context.actor
    async with info.context.database.session(read_only=True) as session:
        row = await webhooks.find_webhook(
            session, webhook_id=row_id(input.id, "Webhook"), actor=actor
        )
        result = await webhooks.test_webhook(
            session,
            webhook=row,
            event=input.event,
            settings=get_runtime(info.context.request).settings,
            actor=actor,
        )
    return WebhookTestResult(
        success=result.success,
        response_status=result.response_status,
        response_body=result.response_body,
        error_message=result.error_message,
    )


async def webhook_delivery_redeliver(
    info: Info, input: WebhookDeliveryRedeliverInput
) -> WebhookDeliveryResult:
    """Send a delivery's stored payload again, as a new delivery (a new delivery id)."""
    actor = info.context.actor
    async with info.context.database.session() as session:
        row = await webhooks.redeliver(
            session, delivery_id=row_id(input.id, "WebhookDelivery"), actor=actor
        )
    return WebhookDelivery.from_row(row)
