"""The real mlflow client authenticates with MLFLOW_TRACKING_TOKEN or with
MLFLOW_TRACKING_USERNAME/PASSWORD, and fails with a clear message without them."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from app.db import Database
from app.models import Role
from app.services import auth, projects, users
from app.services.actor import OPERATOR
from tests.live_server import LiveServer


@pytest.fixture
def anonymous(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


async def _token(
    server: LiveServer, username: str, scopes: list[str], role: Role | None = None
) -> str:
    """A token of a new user, who has `role` in the default project."""
    database = Database(server.database_url)
    try:
        async with database.session() as session:
            user = await users.create_user(session, username=username)
            if role is not None:
                project = await projects.get_default_project(session)
                await projects.set_member(
                    session, project=project, user=user, role=role, actor=OPERATOR
                )
            _, secret = await auth.create_token(session, user=user, name="t", scopes=scopes)
        return secret
    finally:
        await database.dispose()


def test_the_tracking_token_authenticates(
    server: LiveServer, anonymous: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    experiment_id = anonymous.create_experiment("With a token")
    assert anonymous.get_experiment(experiment_id).name == "With a token"


def test_basic_credentials_with_the_token_as_password_authenticate(
    server: LiveServer, anonymous: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_token)
    experiment_id = anonymous.create_experiment("With basic credentials")
    run = anonymous.create_run(experiment_id)
    anonymous.log_metric(run.info.run_id, "m", 1.0)
    assert anonymous.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_without_credentials_the_client_is_told_to_authenticate(anonymous: MlflowClient) -> None:
    with pytest.raises(MlflowException) as raised:
        anonymous.search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"
    assert "authentication is required" in str(raised.value)


def test_a_wrong_password_is_refused(
    anonymous: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mrpat-not-the-right-one-at-all")
    with pytest.raises(MlflowException) as raised:
        anonymous.search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"
    assert "not valid" in str(raised.value)


async def test_a_read_api_token_reads_but_may_not_write(
    server: LiveServer, anonymous: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = await _token(server, "mlflow-reader", ["read_api"], Role.DEVELOPER)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", reader)
    assert anonymous.get_experiment("0").name == "Default"
    with pytest.raises(MlflowException) as raised:
        anonymous.create_experiment("Not allowed")
    assert raised.value.error_code == "PERMISSION_DENIED"


async def test_a_user_outside_the_project_sees_nothing(
    server: LiveServer, anonymous: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    outsider = await _token(server, "mlflow-outsider", ["api"])
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", outsider)
    with pytest.raises(MlflowException) as raised:
        anonymous.get_experiment("0")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
