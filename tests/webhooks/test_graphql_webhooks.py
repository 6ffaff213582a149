"""Webhooks through GraphQL: a maintainer creates one (its secret shown once), sees its
deliveries with every attempt, tests it, sends a delivery again (the stored payload,
under a new delivery id), updates and deletes it; a developer may do none of it. A hook
watching a metric threshold shows it; a bad threshold is a ValidationError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Role
from tests.graphql_support import ERROR_FIELDS, GraphQLApi, edges_of, graphql_api
from tests.webhook_receiver import Receiver, mlflow_accepts, webhook_receiver

WEBHOOK_FIELDS = "id name url events description status signed"
DELIVERY_FIELDS = (
    "id deliveryId event status attempts responseCode error payload"
    " attemptLog { attempt responseCode error } requestExcerpt responseExcerpt"
)

CREATE = f"""
mutation($input: WebhookCreateInput!) {{
  webhookCreate(input: $input) {{
    __typename
    ... on WebhookCreated {{ secret webhook {{ {WEBHOOK_FIELDS} }} }}
    {ERROR_FIELDS}
  }}
}}"""
DELIVERIES = f"""
query($path: String!) {{
  project(path: $path) {{
    webhooks {{
      {WEBHOOK_FIELDS}
      deliveries {{ totalCount edges {{ node {{ {DELIVERY_FIELDS} }} }} }}
    }}
  }}
}}"""
REDELIVER = f"""
mutation($id: ID!) {{
  webhookDeliveryRedeliver(input: {{id: $id}}) {{
    __typename ... on WebhookDelivery {{ {DELIVERY_FIELDS} }} {ERROR_FIELDS}
  }}
}}"""
MODEL_CREATE = """
mutation($project: String!, $name: String!) {
  modelCreate(input: {project: $project, displayName: $name}) { __typename }
}"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GraphQLApi]:
    monkeypatch.setenv("MODELREG_SECRET_KEY", "a-server-key-of-the-test-0123456789")
    monkeypatch.setenv("MODELREG_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("MODELREG_WEBHOOK_RETRY_BASE_SECONDS", "0.05")
    async with graphql_api(database_url, tmp_path) as running:
        yield running


async def create_hook(api: GraphQLApi, url: str, **extra: Any) -> dict[str, Any]:
    answer = await api.data(
        CREATE,
        {
            "input": {
                "project": api.project_path,
                "name": "deploys",
                "url": url,
                "events": ["registered_model.created"],
            }
            | extra
        },
    )
    created: dict[str, Any] = answer["webhookCreate"]
    return created


async def hooks_of(api: GraphQLApi) -> list[dict[str, Any]]:
    answer = await api.data(DELIVERIES, {"path": api.project_path})
    found: list[dict[str, Any]] = answer["project"]["webhooks"]
    return found


async def settled_deliveries(api: GraphQLApi, count: int) -> list[dict[str, Any]]:
    """The only hook's deliveries, oldest first, once `count` exist and none is pending."""
    for _ in range(600):
        [hook] = await hooks_of(api)
        found = list(reversed(edges_of(hook["deliveries"])))
        if len(found) >= count and all(d["status"] != "PENDING" for d in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries did not settle: {found}")


async def test_a_maintainer_sees_each_attempt_and_redelivers_the_stored_payload(
    api: GraphQLApi, receiver: Receiver
) -> None:
    created = await create_hook(api, receiver.url)
    assert created["__typename"] == "WebhookCreated"
    secret = created["secret"]
    assert len(secret) == 43
    assert created["webhook"] | {"id": None} == {
        "id": None,
        "name": "deploys",
        "url": receiver.url,
        "events": ["registered_model.created"],
        "description": None,
        "status": "ACTIVE",
        "signed": True,
    }
    receiver.answer(500)

    await api.data(MODEL_CREATE, {"project": api.project_path, "name": "Churn"})

    first, second = await receiver.wait_for(2)
    assert first.delivery_id == second.delivery_id
    assert mlflow_accepts(secret, second)
    [delivery] = await settled_deliveries(api, 1)
    assert delivery["deliveryId"] == first.delivery_id
    assert (delivery["status"], delivery["attempts"], delivery["responseCode"]) == (
        "DELIVERED",
        2,
        200,
    )
    assert delivery["attemptLog"] == [
        {"attempt": 1, "responseCode": 500, "error": "HTTP 500"},
        {"attempt": 2, "responseCode": 200, "error": None},
    ]
    assert delivery["payload"]["data"] == {"name": "Churn", "tags": {}, "description": None}
    assert delivery["requestExcerpt"].startswith(f"POST {receiver.url}\n")
    assert secret not in delivery["requestExcerpt"]

    again = await api.data(REDELIVER, {"id": delivery["id"]})

    assert again["webhookDeliveryRedeliver"]["status"] == "PENDING"
    third = (await receiver.wait_for(3))[2]
    assert third.body == first.body
    assert third.delivery_id != first.delivery_id
    assert mlflow_accepts(secret, third)
    original, redelivered = await settled_deliveries(api, 2)
    assert redelivered["deliveryId"] == third.delivery_id
    assert redelivered["payload"] == original["payload"]


async def test_testing_updating_and_deleting_a_webhook(api: GraphQLApi, receiver: Receiver) -> None:
    created = await create_hook(api, receiver.url, signed=False)
    hook_id = created["webhook"]["id"]
    assert created["secret"] is None

    tested = await api.data(
        """mutation($id: ID!) { webhookTest(input: {id: $id}) {
             __typename ... on WebhookTestResult { success responseStatus responseBody } } }""",
        {"id": hook_id},
    )
    assert tested["webhookTest"] == {
        "__typename": "WebhookTestResult",
        "success": True,
        "responseStatus": 200,
        "responseBody": '{"status": 200}',
    }
    [sent] = await receiver.wait_for(1)
    assert "X-MLflow-Signature" not in sent.headers
    assert sent.json["data"]["name"] == "example_model"

    updated = await api.data(
        f"""mutation($id: ID!) {{ webhookUpdate(input: {{id: $id, status: DISABLED,
              events: ["model_version.created", "candidate.finished"]}}) {{
              __typename ... on Webhook {{ {WEBHOOK_FIELDS} }} }} }}""",
        {"id": hook_id},
    )
    assert updated["webhookUpdate"]["status"] == "DISABLED"
    assert updated["webhookUpdate"]["events"] == ["model_version.created", "candidate.finished"]

    deleted = await api.data(
        """mutation($id: ID!) { webhookDelete(input: {id: $id}) {
             __typename ... on WebhookDeleted { id } } }""",
        {"id": hook_id},
    )
    assert deleted["webhookDelete"] == {"__typename": "WebhookDeleted", "id": hook_id}
    assert await hooks_of(api) == []


async def test_managing_webhooks_needs_a_maintainer(api: GraphQLApi, receiver: Receiver) -> None:
    developer = await api.add_user("dev", role=Role.DEVELOPER)
    maintainer = await api.add_user("lead", role=Role.MAINTAINER)
    input = {
        "project": api.project_path,
        "name": "x",
        "url": receiver.url,
        "events": ["model_version.created"],
    }

    refused = await api.data(CREATE, {"input": input}, token=developer)
    allowed = await api.data(CREATE, {"input": input}, token=maintainer)
    codes, _ = await api.refusal(DELIVERIES, {"path": api.project_path}, token=developer)

    assert refused["webhookCreate"] == {
        "__typename": "PermissionError",
        "message": "this needs the maintainer role or higher in 'lab'",
        "code": "FORBIDDEN",
        "field": None,
    }
    assert allowed["webhookCreate"]["__typename"] == "WebhookCreated"
    assert codes == ["FORBIDDEN"]


async def test_bad_webhook_input_is_a_validation_error(api: GraphQLApi) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"events": ["model.exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"name": ""}, "name"),
    ]
    for change, field in cases:
        answer = await create_hook(api, str(change.pop("url", "http://127.0.0.1:9/hook")), **change)
        assert (answer["__typename"], answer["field"]) == ("ValidationError", field)
    missing = await api.data(REDELIVER, {"id": "bm90LWFuLWlk"})
    assert missing["webhookDeliveryRedeliver"]["__typename"] == "ValidationError"


THRESHOLD_CREATE = f"""
mutation($input: WebhookCreateInput!) {{
  webhookCreate(input: $input) {{
    __typename
    ... on WebhookCreated {{ webhook {{ events metricThreshold {{ metric operator threshold }} }} }}
    {ERROR_FIELDS}
  }}
}}"""


async def test_a_hook_watching_a_metric_threshold_shows_it_and_refuses_a_bad_one(
    api: GraphQLApi, receiver: Receiver
) -> None:
    def hook(threshold: dict[str, Any]) -> dict[str, Any]:
        return {
            "input": {
                "project": api.project_path,
                "name": "good enough",
                "url": receiver.url,
                "events": ["candidate.metric_threshold_crossed"],
                "metricThreshold": threshold,
            }
        }

    good = await api.data(
        THRESHOLD_CREATE, hook({"metric": "accuracy", "operator": ">=", "threshold": 0.9})
    )
    bad = await api.data(
        THRESHOLD_CREATE, hook({"metric": "accuracy", "operator": "=>", "threshold": 0.9})
    )

    assert good["webhookCreate"] == {
        "__typename": "WebhookCreated",
        "webhook": {
            "events": ["candidate.metric_threshold_crossed"],
            "metricThreshold": {"metric": "accuracy", "operator": ">=", "threshold": 0.9},
        },
    }
    assert bad["webhookCreate"]["__typename"] == "ValidationError"
    assert bad["webhookCreate"]["field"] == "metric_threshold.operator"
