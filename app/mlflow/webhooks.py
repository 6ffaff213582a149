"""MLflow's webhook API (`mlflow/protos/webhooks.proto`), wire-compatible, for the
project of the tracking URI: create, list, get, update (PATCH), delete, and
``POST .../{webhook_id}/test``.

* Events travel as MLflow's ``{"entity": "MODEL_VERSION", "action": "CREATED"}`` (enum
  names, or their numbers); a hook is listed with the events MLflow knows, the ones only
  modelreg has (set through GraphQL) left out, as MLflow's client could not read them.
* `webhook_id` is the hook's id as a string; a hook of another project is not found.
* The secret is write-only: no answer carries it.
* Status is ``ACTIVE`` (the default) or ``DISABLED``.
"""

from __future__ import annotations

from typing import Any

from app.errors import InvalidValueError
from app.mlflow.call import Call, Endpoint, MissingParameterError
from app.models import Webhook, WebhookStatus
from app.runtime import get_runtime
from app.services import webhooks
from app.services.policy import Operation

LIST_MAX_RESULTS_DEFAULT = 100
LIST_MAX_RESULTS_THRESHOLD = 1000

# MLflow's proto enums, by number (a client may send those).
_ENTITIES = {
    1: "REGISTERED_MODEL",
    2: "MODEL_VERSION",
    3: "MODEL_VERSION_TAG",
    4: "MODEL_VERSION_ALIAS",
}
_ACTIONS = {1: "CREATED", 2: "UPDATED", 3: "DELETED", 4: "SET"}
_STATUSES = {1: "ACTIVE", 2: "DISABLED"}


def _enum_name(value: Any, numbers: dict[int, str], field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in numbers:
        return numbers[value]
    if isinstance(value, str) and value:
        return value
    raise InvalidValueError(f"Invalid value {value!r} for parameter '{field}'", field=field)


def _events(call: Call) -> list[str] | None:
    if "events" not in call.params:
        return None
    names = []
    for entry in call.objects("events"):
        entity = _enum_name(entry.get("entity"), _ENTITIES, "events.entity")
        action = _enum_name(entry.get("action"), _ACTIONS, "events.action")
        names.append(f"{entity.lower()}.{action.lower()}")
    return names


def _status(call: Call) -> WebhookStatus | None:
    value = call.params.get("status")
    if value is None:
        return None
    name = _enum_name(value, _STATUSES, "status")
    try:
        return WebhookStatus(name)
    except ValueError:
        raise InvalidValueError(
            f"Invalid webhook status '{name}'; ACTIVE or DISABLED", field="status"
        ) from None


def _webhook_id(call: Call) -> int:
    value = str(call.request.path_params.get("webhook_id", ""))
    if not value.isdecimal() or len(value) > 18:
        raise InvalidValueError(f"Webhook with ID {value} not found", field="webhook_id")
    return int(value)


def _millis(webhook: Webhook, column: str) -> int:
    return int(getattr(webhook, column).timestamp() * 1000)


def render(webhook: Webhook) -> dict[str, Any]:
    """A hook in MLflow's JSON (its secret never)."""
    events = [
        {"entity": entity.upper(), "action": action.upper()}
        for entity, _, action in (name.partition(".") for name in webhook.events)
        if f"{entity}.{action}" in webhooks.MLFLOW_EVENTS
    ]
    rendered: dict[str, Any] = {
        "webhook_id": str(webhook.id),
        "name": webhook.name,
        "url": webhook.url,
        "events": events,
        "status": webhook.status.value,
        "creation_timestamp": _millis(webhook, "created_at"),
        "last_updated_timestamp": _millis(webhook, "updated_at"),
    }
    if webhook.description:
        rendered["description"] = webhook.description
    return rendered


async def create_webhook(call: Call) -> dict[str, Any]:
    name = call.required("name")
    url = call.required("url")
    events = _events(call)
    if not events:
        raise MissingParameterError("events")
    settings = get_runtime(call.request).settings
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        webhook = await webhooks.create_webhook(
            session,
            project=project,
            name=name,
            url=url,
            events=events,
            description=call.string("description"),
            secret=call.string("secret"),
            status=_status(call) or WebhookStatus.ACTIVE,
            settings=settings,
            actor=call.actor,
        )
        return {"webhook": render(webhook)}


async def list_webhooks(call: Call) -> dict[str, Any]:
    page = call.page(default=LIST_MAX_RESULTS_DEFAULT, threshold=LIST_MAX_RESULTS_THRESHOLD)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        shown, token = await webhooks.list_webhooks(
            session, project=project, actor=call.actor, page=page
        )
        answer: dict[str, Any] = {"webhooks": [render(webhook) for webhook in shown]}
    if token:
        answer["next_page_token"] = token
    return answer


async def get_webhook(call: Call) -> dict[str, Any]:
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        webhook = await webhooks.get_webhook(
            session, project=project, webhook_id=_webhook_id(call), actor=call.actor
        )
        return {"webhook": render(webhook)}


async def update_webhook(call: Call) -> dict[str, Any]:
    settings = get_runtime(call.request).settings
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        webhook = await webhooks.get_webhook(
            session, project=project, webhook_id=_webhook_id(call), actor=call.actor
        )
        await webhooks.update_webhook(
            session,
            webhook=webhook,
            name=call.string("name"),
            url=call.string("url"),
            events=_events(call) or None,
            description=call.string("description"),
            secret=call.string("secret"),
            status=_status(call),
            settings=settings,
            actor=call.actor,
        )
        return {"webhook": render(webhook)}


async def delete_webhook(call: Call) -> dict[str, Any]:
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        webhook = await webhooks.get_webhook(
            session, project=project, webhook_id=_webhook_id(call), actor=call.actor
        )
        await webhooks.delete_webhook(session, webhook=webhook, actor=call.actor)
    return {}


async def test_webhook(call: Call) -> dict[str, Any]:
    settings = get_runtime(call.request).settings
    event = call.params.get("event")
    if event is not None and not isinstance(event, dict):
        raise InvalidValueError("Invalid value for parameter 'event'", field="event")
    chosen = None
    if event:
        entity = _enum_name(event.get("entity"), _ENTITIES, "event.entity")
        action = _enum_name(event.get("action"), _ACTIONS, "event.action")
        chosen = f"{entity.lower()}.{action.lower()}"
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        webhook = await webhooks.get_webhook(
            session, project=project, webhook_id=_webhook_id(call), actor=call.actor
        )
        result = await webhooks.test_webhook(
            session, webhook=webhook, event=chosen, settings=settings, actor=call.actor
        )
    rendered: dict[str, Any] = {"success": result.success}
    if result.response_status is not None:
        rendered["response_status"] = result.response_status
    if result.response_body is not None:
        rendered["response_body"] = result.response_body
    if result.error_message is not None:
        rendered["error_message"] = result.error_message
    return {"result": rendered}


ENDPOINTS: list[Endpoint] = [
    ("POST", "/mlflow/webhooks", create_webhook),
    ("GET", "/mlflow/webhooks", list_webhooks),
    ("GET", "/mlflow/webhooks/{webhook_id}", get_webhook),
    ("PATCH", "/mlflow/webhooks/{webhook_id}", update_webhook),
    ("DELETE", "/mlflow/webhooks/{webhook_id}", delete_webhook),
    ("POST", "/mlflow/webhooks/{webhook_id}/test", test_webhook),
]
