"""MLflow's webhook API driven by the real `mlflow` client against a live server: it
creates, lists, gets, updates, tests and deletes a hook, under the root and under a
project's tracking URI, and the hook then gets the registry's events, signed so MLflow's
own code verifies them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookStatus
from mlflow.exceptions import MlflowException

from tests.conftest import module_server
from tests.live_server import LiveServer
from tests.webhook_receiver import Receiver, mlflow_accepts, webhook_receiver

SECRET = "whsec-mlflow-client-secret"


# A live server that may send webhooks to loopback, with a server key.
server = module_server(
    secret_key="a-server-key-of-the-test-0123456789",
    webhook_allow_private="true",
    webhook_retry_base_seconds="0.05",
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


async def test_the_mlflow_client_creates_lists_tests_and_deletes_a_webhook(
    client: MlflowClient, receiver: Receiver
) -> None:
    created = client.create_webhook(
        name="retrain",
        url=receiver.url,
        events=["model_version.created", "model_version_alias.created"],
        description="CI retrains",
        secret=SECRET,
    )

    assert created.name == "retrain"
    assert created.url == receiver.url
    assert created.description == "CI retrains"
    assert [str(event) for event in created.events] == [
        "model_version.created",
        "model_version_alias.created",
    ]
    assert created.status == WebhookStatus.ACTIVE
    assert created.secret is None
    listed = client.list_webhooks()
    assert [hook.webhook_id for hook in listed] == [created.webhook_id]
    assert not listed.token
    assert client.get_webhook(created.webhook_id).name == "retrain"

    result = client.test_webhook(created.webhook_id)

    assert result.success is True
    assert result.response_status == 200
    assert result.response_body == '{"status": 200}'
    [sent] = await receiver.wait_for(1)
    assert mlflow_accepts(SECRET, sent)
    assert sent.event == "model_version.created"
    assert sent.json["data"]["name"] == "example_model"

    client.create_registered_model("Churn")
    client.create_model_version("Churn", source="s3://bucket/churn")
    client.set_registered_model_alias("Churn", "champion", "1")
    _, created_event, alias_event = await receiver.wait_for(3)
    assert [created_event.event, alias_event.event] == [
        "model_version.created",
        "model_version_alias.created",
    ]
    assert mlflow_accepts(SECRET, created_event) and mlflow_accepts(SECRET, alias_event)
    assert alias_event.json["data"] == {"name": "Churn", "alias": "champion", "version": "1"}

    updated = client.update_webhook(created.webhook_id, status="DISABLED", name="paused")
    assert (updated.name, updated.status) == ("paused", WebhookStatus.DISABLED)

    client.delete_webhook(created.webhook_id)

    assert list(client.list_webhooks()) == []
    with pytest.raises(MlflowException, match="not found") as missing:
        client.get_webhook(created.webhook_id)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_webhooks_are_kept_per_project_tracking_uri(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    body = {
        "name": "hook",
        "url": "http://127.0.0.1:9/hook",
        "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}],
    }
    server.ask('mutation { projectCreate(input: {path: "team-a", name: "Team A"}) { __typename } }')
    created = httpx.post(
        f"{server.url}/projects/team-a/mlflow/api/2.0/mlflow/webhooks", json=body, headers=headers
    )
    assert created.status_code == 200, created.text
    webhook_id = created.json()["webhook"]["webhook_id"]

    in_project = httpx.get(
        f"{server.url}/projects/team-a/mlflow/api/2.0/mlflow/webhooks", headers=headers
    )
    at_root = httpx.get(f"{server.url}/api/2.0/mlflow/webhooks/{webhook_id}", headers=headers)

    assert [hook["webhook_id"] for hook in in_project.json()["webhooks"]] == [webhook_id]
    assert at_root.status_code == 404
    assert at_root.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_bad_webhook_input_gets_mlflow_errors(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    url = f"{server.url}/api/2.0/mlflow/webhooks"
    cases = [
        ({"name": "x", "url": "http://127.0.0.1:9/"}, "Missing value for required parameter"),
        (
            {"name": "x", "url": "ftp://h/", "events": [{"entity": "MODEL_VERSION", "action": 1}]},
            "must be an http:// or https:// URL",
        ),
        (
            {
                "name": "x",
                "url": "http://127.0.0.1:9/",
                "events": [{"entity": "NOPE", "action": 1}],
            },
            "Unknown webhook event(s) nope.created",
        ),
        (
            {
                "name": "x",
                "url": "http://127.0.0.1:9/",
                "events": [{"entity": 2, "action": 1}],
                "status": "SLEEPING",
            },
            "Invalid webhook status 'SLEEPING'",
        ),
    ]
    for body, message in cases:
        answer = httpx.post(url, json=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message in answer.json()["message"]
    assert httpx.get(f"{url}/abc", headers=headers).status_code == 400
