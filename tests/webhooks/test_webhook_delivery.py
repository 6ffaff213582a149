"""Webhook deliveries made by the job runner to a real receiver on loopback: each registry
event arrives with MLflow's envelope and a signature MLflow's own code accepts; a failed
attempt is retried with the same delivery id and both attempts are logged; deliveries
for one object keep their order; a rolled-back change sends nothing; private targets are
refused without the setting, at creation and on the connected address; a metric crossing a
hook's threshold is sent once per candidate; deliveries committed while a sender waits to
start add no job."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database
from app.errors import InvalidValueError
from app.models import (
    CandidateStatus,
    DeliveryStatus,
    Job,
    JobStatus,
    Webhook,
    WebhookDelivery,
)
from app.outbox import JobDispatcher
from app.services import candidates, jobs, models, projects, versions, webhooks
from app.services.actor import OPERATOR
from app.settings import Settings
from tests.webhook_receiver import Received, Receiver, mlflow_accepts, webhook_receiver
from workers.dispatch import create_dispatcher

SECRET = "whsec-the-receivers-shared-secret"
SERVER_KEY = "a-server-key-of-the-test-0123456789"
TIMEOUT = 30.0


def webhook_settings(database: Database, **values: Any) -> Settings:
    options: dict[str, Any] = {
        "redis_url": None,
        "artifacts": tempfile.mkdtemp(prefix="modelreg-webhook-artifacts-"),
        "secret_key": SERVER_KEY,
        "webhook_allow_private": True,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_timeout_seconds": 5,
        "job_poll_interval_seconds": 0.2,
    }
    return Settings(database_url=database.url, **(options | values))


@pytest.fixture
def settings(database: Database) -> Settings:
    return webhook_settings(database)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
async def runner(settings: Settings, database: Database) -> AsyncIterator[JobDispatcher]:
    """The in-process job runner, delivering what `database` sessions commit."""
    dispatcher = await create_dispatcher(settings, database)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.close()


async def add_webhook(
    database: Database, settings: Settings, url: str, events: list[str], *, secret: str = SECRET
) -> Webhook:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        return await webhooks.create_webhook(
            session,
            project=project,
            name="deployments",
            url=url,
            events=events,
            secret=secret,
            settings=settings,
            actor=OPERATOR,
        )


async def deliveries(database: Database, webhook: Webhook) -> list[WebhookDelivery]:
    async with database.session(read_only=True) as session:
        return await webhooks.get_deliveries(session, webhook_id=webhook.id)


async def settled(database: Database, webhook: Webhook, count: int) -> list[WebhookDelivery]:
    """The hook's deliveries once `count` of them exist and none is pending."""
    for _ in range(int(TIMEOUT / 0.05)):
        found = await deliveries(database, webhook)
        if len(found) >= count and all(d.status is not DeliveryStatus.PENDING for d in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries still pending: {await deliveries(database, webhook)}")


async def received(receiver: Receiver, count: int) -> list[Received]:
    return await receiver.wait_for(count, seconds=TIMEOUT)


async def test_each_mlflow_registry_event_arrives_signed_so_mlflow_verifies_it(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    hook = await add_webhook(database, settings, receiver.url, list(webhooks.MLFLOW_EVENTS))
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session,
            project=project,
            display_name="Churn",
            description="predicts churn",
            metadata={"team": "growth"},
            registered=True,
            experiment=False,
            actor=OPERATOR,
        )
        version = await versions.create_version(
            session, model=model, description="first", source="s3://b/m", actor=OPERATOR
        )
        await versions.set_version_metadata(
            session, version=version, items={"stage": "canary"}, actor=OPERATOR
        )
        await versions.delete_version_metadata(
            session, version=version, name="stage", actor=OPERATOR
        )
        await versions.set_alias(
            session, model=model, alias="champion", version=version, actor=OPERATOR
        )
        await versions.delete_alias(session, model=model, alias="champion", actor=OPERATOR)
        run_id = (await versions.get_version_candidate(session, version=version)).eid

    requests = await received(receiver, 6)

    assert [request.event for request in requests] == list(webhooks.MLFLOW_EVENTS)
    assert all(mlflow_accepts(SECRET, request) for request in requests)
    assert [request.json["data"] for request in requests] == [
        {"name": "Churn", "tags": {"team": "growth"}, "description": "predicts churn"},
        {
            "name": "Churn",
            "version": "1",
            "source": "s3://b/m",
            "run_id": run_id,
            "tags": {},
            "description": "first",
        },
        {"name": "Churn", "version": "1", "key": "stage", "value": "canary"},
        {"name": "Churn", "version": "1", "key": "stage"},
        {"name": "Churn", "alias": "champion", "version": "1"},
        {"name": "Churn", "alias": "champion"},
    ]
    logged = await settled(database, hook, 6)
    assert [request.delivery_id for request in requests] == [d.delivery_id for d in logged]
    assert {d.status for d in logged} == {DeliveryStatus.DELIVERED}


async def test_a_failed_attempt_is_retried_with_the_same_delivery_id_and_both_are_logged(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    hook = await add_webhook(database, settings, receiver.url, ["registered_model.created"])
    receiver.answer(500)
    async with database.session() as session:
        project = await projects.get_default_project(session)
        await models.create_model(
            session,
            project=project,
            display_name="Fraud",
            registered=True,
            experiment=False,
            actor=OPERATOR,
        )

    first, second = await received(receiver, 2)

    assert first.delivery_id == second.delivery_id
    assert first.body == second.body
    assert mlflow_accepts(SECRET, first) and mlflow_accepts(SECRET, second)
    [delivery] = await settled(database, hook, 1)
    assert delivery.delivery_id == first.delivery_id
    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    assert [attempt["response_code"] for attempt in delivery.attempt_log] == [500, 200]
    assert [attempt["error"] for attempt in delivery.attempt_log] == ["HTTP 500", None]
    assert delivery.last_response_code == 200
    assert delivery.response_excerpt == 'HTTP 200\n{"status": 200}'


async def test_retry_after_is_waited_for(
    database: Database, receiver: Receiver, settings: Settings
) -> None:
    patient = webhook_settings(database, webhook_retry_max_seconds=60)
    assert webhooks.retry_delay(patient, 1, 1.0) == 1.0
    assert 0.025 <= webhooks.retry_delay(patient, 1, None) <= 0.05
    assert webhooks.retry_delay(settings, 1, 3600.0) == 0.2  # capped by the maximum
    hook = await add_webhook(database, patient, receiver.url, ["registered_model.created"])
    receiver.answer((429, {"Retry-After": "1"}))
    dispatcher = await create_dispatcher(patient, database)
    await dispatcher.start()
    try:
        async with database.session() as session:
            project = await projects.get_default_project(session)
            await models.create_model(
                session, project=project, display_name="Ads", registered=True, actor=OPERATOR
            )
        await received(receiver, 2)
        [delivery] = await settled(database, hook, 1)
    finally:
        await dispatcher.close()

    assert [attempt["response_code"] for attempt in delivery.attempt_log] == [429, 200]
    first, second = (dt.datetime.fromisoformat(a["at"]) for a in delivery.attempt_log)
    # The backoff alone would have waited 0.05 s at most.
    assert second - first >= dt.timedelta(seconds=1)


async def test_deliveries_about_one_model_arrive_in_order_behind_a_retried_one(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    hook = await add_webhook(
        database,
        settings,
        receiver.url,
        ["registered_model.created", "model_version.created", "model_version_alias.created"],
    )
    receiver.answer(503, 503)
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="Ranker", registered=True, actor=OPERATOR
        )
    async with database.session() as session:
        model = await models.get_model(session, project=project, name="ranker")
        version = await versions.create_version(session, model=model, actor=OPERATOR)
    async with database.session() as session:
        model = await models.get_model(session, project=project, name="ranker")
        await versions.set_alias(
            session, model=model, alias="champion", version=version, actor=OPERATOR
        )

    requests = await received(receiver, 5)

    assert [request.event for request in requests] == [
        "registered_model.created",
        "registered_model.created",
        "registered_model.created",
        "model_version.created",
        "model_version_alias.created",
    ]
    logged = await settled(database, hook, 3)
    assert [d.attempts for d in logged] == [3, 1, 1]


async def test_a_rolled_back_change_sends_nothing(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    hook = await add_webhook(database, settings, receiver.url, ["registered_model.created"])
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with database.session() as session:
            project = await projects.get_default_project(session)
            await models.create_model(
                session, project=project, display_name="Gone", registered=True, actor=OPERATOR
            )
            raise RuntimeError("changed my mind")
    async with database.session() as session:
        project = await projects.get_default_project(session)
        await models.create_model(
            session, project=project, display_name="Kept", registered=True, actor=OPERATOR
        )

    [request] = await received(receiver, 1)

    assert request.json["data"]["name"] == "Kept"
    assert len(await settled(database, hook, 1)) == 1


async def test_a_private_target_is_refused_without_the_setting(
    database: Database, receiver: Receiver
) -> None:
    strict = webhook_settings(database, webhook_allow_private=False)
    for url in (receiver.url, "http://localhost:9/hook", "http://169.254.169.254/latest"):
        with pytest.raises(InvalidValueError, match="loopback, private or link-local"):
            await add_webhook(database, strict, url, ["registered_model.created"])
    with pytest.raises(InvalidValueError, match="must be an http:// or https:// URL"):
        await add_webhook(database, strict, "file:///etc/passwd", ["registered_model.created"])


async def test_the_connected_address_is_checked_at_delivery_too(
    database: Database, receiver: Receiver
) -> None:
    """A hook accepted while private targets were allowed (or whose name resolved to a
    public address then) is not sent to a private address once they are not."""
    allowed = webhook_settings(database)
    hook = await add_webhook(database, allowed, receiver.url, ["registered_model.created"])
    strict = webhook_settings(database, webhook_allow_private=False, webhook_retry_window_seconds=0)
    dispatcher = await create_dispatcher(strict, database)
    await dispatcher.start()
    try:
        async with database.session() as session:
            project = await projects.get_default_project(session)
            await models.create_model(
                session, project=project, display_name="Probe", registered=True, actor=OPERATOR
            )
        [delivery] = await settled(database, hook, 1)
    finally:
        await dispatcher.close()

    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.last_response_code is None
    assert delivery.last_error == (
        "Webhook URL host '127.0.0.1' resolves to 127.0.0.1, a loopback, private or "
        "link-local address; the server does not send webhooks there"
    )
    assert receiver.received == []


async def test_the_secret_is_stored_encrypted(database: Database, settings: Settings) -> None:
    hook = await add_webhook(database, settings, "http://127.0.0.1:9/x", ["model_version.created"])
    assert hook.encrypted_secret is not None
    assert SECRET not in hook.encrypted_secret
    without_key = webhook_settings(database, secret_key=None)
    with pytest.raises(InvalidValueError, match="set MODELREG_SECRET_KEY"):
        await add_webhook(database, without_key, "http://127.0.0.1:9/x", ["model_version.created"])


async def test_our_events_beside_mlflow_s_arrive_too(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    hook = await add_webhook(
        database,
        settings,
        receiver.url,
        [
            "model_version_alias.moved",
            "model_version.deleted",
            "registered_model.deleted",
            "candidate.finished",
            "job.succeeded",
        ],
    )
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="Scorer", registered=True, actor=OPERATOR
        )
        first = await versions.create_version(session, model=model, actor=OPERATOR)
        second = await versions.create_version(session, model=model, actor=OPERATOR)
        await versions.set_alias(
            session, model=model, alias="champion", version=first, actor=OPERATOR
        )
        await versions.set_alias(
            session, model=model, alias="champion", version=second, actor=OPERATOR
        )
        run = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        await candidates.update_candidate(
            session, candidate=run, status=CandidateStatus.FINISHED, end_time=5, actor=OPERATOR
        )
        deletion = await versions.destroy_version(session, version=first, actor=OPERATOR)

    requests = await received(receiver, 4)
    by_event = {request.event: request.json["data"] for request in requests}

    assert by_event == {
        "model_version_alias.moved": {
            "name": "Scorer",
            "alias": "champion",
            "version": "2",
            "from_version": "1",
        },
        "candidate.finished": {
            "model": "Scorer",
            "run_id": run.eid,
            "run_name": run.name,
            "status": "FINISHED",
            "end_time": 5,
        },
        "model_version.deleted": {"name": "Scorer", "version": "1", "semver": "1.0.0"},
        "job.succeeded": {
            "id": deletion.id,
            "kind": "delete_version",
            "status": "succeeded",
            "error": None,
        },
    }
    assert all(mlflow_accepts(SECRET, request) for request in requests)
    assert len(await settled(database, hook, 4)) == 4


ACCURACY_AT_LEAST_90 = webhooks.MetricThreshold("accuracy", ">=", 0.9)


async def log_accuracy(database: Database, run_id: str, *values: float) -> None:
    """Log points of `accuracy` at steps 0, 1, ... in one batch, as MLflow's log-batch
    does: the run is looked up first (with whether a hook watches thresholds)."""
    async with database.session() as session:
        project = await projects.get_default_project(session)
        run = await candidates.get_candidate(session, project=project, eid=run_id)
        points = [
            candidates.MetricPoint(name="accuracy", value=value, timestamp=100 + step, step=step)
            for step, value in enumerate(values)
        ]
        await candidates.log_batch(session, candidate=run, metrics=points, actor=OPERATOR)


async def test_a_metric_crossing_a_hook_s_threshold_is_sent_once_per_candidate(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        hook = await webhooks.create_webhook(
            session,
            project=project,
            name="good enough",
            url=receiver.url,
            events=[webhooks.METRIC_THRESHOLD_CROSSED],
            metric_threshold=ACCURACY_AT_LEAST_90,
            secret=SECRET,
            settings=settings,
            actor=OPERATOR,
        )
        model = await models.create_model(
            session, project=project, display_name="Vision", actor=OPERATOR
        )
        first = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        second = await candidates.create_candidate(session, model=model, actor=OPERATOR)

    await log_accuracy(database, first.eid, 0.5, 0.7)  # the wrong side: nothing
    await log_accuracy(database, first.eid, 0.8, 0.93, 0.85, 0.95)  # crosses at step 1
    await log_accuracy(database, first.eid, 0.5, 0.99)  # crossed again: sent once only
    await log_accuracy(database, second.eid, 0.91)  # another candidate: its own event

    requests = await received(receiver, 2)
    # Events about two candidates: no order between them.
    assert {request.json["data"]["run_id"]: request.json["data"] for request in requests} == {
        first.eid: {
            "model": "Vision",
            "run_id": first.eid,
            "run_name": first.name,
            "metric": "accuracy",
            "operator": ">=",
            "threshold": 0.9,
            "value": 0.93,
            "step": 1,
            "timestamp": 101,
        },
        second.eid: {
            "model": "Vision",
            "run_id": second.eid,
            "run_name": second.name,
            "metric": "accuracy",
            "operator": ">=",
            "threshold": 0.9,
            "value": 0.91,
            "step": 0,
            "timestamp": 100,
        },
    }
    assert [request.event for request in requests] == [webhooks.METRIC_THRESHOLD_CROSSED] * 2
    assert all(mlflow_accepts(SECRET, request) for request in requests)
    assert len(await settled(database, hook, 2)) == 2


async def test_a_metric_already_on_the_right_side_when_the_hook_came_is_not_a_crossing(
    database: Database, settings: Settings, receiver: Receiver, runner: JobDispatcher
) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="Speech", actor=OPERATOR
        )
        run = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    await log_accuracy(database, run.eid, 0.95)
    async with database.session() as session:
        hook = await webhooks.create_webhook(
            session,
            project=project,
            name="good enough",
            url=receiver.url,
            events=[webhooks.METRIC_THRESHOLD_CROSSED],
            metric_threshold=ACCURACY_AT_LEAST_90,
            secret=SECRET,
            settings=settings,
            actor=OPERATOR,
        )

    await log_accuracy(database, run.eid, 0.96)  # still the right side: no crossing
    await log_accuracy(database, run.eid, 0.5, 0.92)  # down, then up: a crossing

    [request] = await received(receiver, 1)
    assert (request.json["data"]["value"], request.json["data"]["step"]) == (0.92, 1)
    assert [d.event for d in await settled(database, hook, 1)] == [
        webhooks.METRIC_THRESHOLD_CROSSED
    ]


async def test_a_threshold_event_needs_a_valid_threshold(
    database: Database, settings: Settings
) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        with pytest.raises(InvalidValueError, match="needs the hook's metric threshold"):
            await webhooks.create_webhook(
                session,
                project=project,
                name="no threshold",
                url="http://127.0.0.1:9/hook",
                events=[webhooks.METRIC_THRESHOLD_CROSSED],
                settings=settings,
                actor=OPERATOR,
            )
        with pytest.raises(InvalidValueError, match="operator is one of >, >=, <, <=; got '=='"):
            await webhooks.create_webhook(
                session,
                project=project,
                name="bad operator",
                url="http://127.0.0.1:9/hook",
                events=[webhooks.METRIC_THRESHOLD_CROSSED],
                metric_threshold=webhooks.MetricThreshold("accuracy", "==", 0.9),
                settings=settings,
                actor=OPERATOR,
            )


async def test_deliveries_committed_while_a_sender_waits_to_start_add_no_job(
    database: Database, settings: Settings, receiver: Receiver
) -> None:
    hook = await add_webhook(database, settings, receiver.url, ["registered_model.created"])
    names = ["Alpha", "Beta", "Gamma"]
    for name in names:  # one transaction each, while no runner takes the first sender
        async with database.session() as session:
            project = await projects.get_default_project(session)
            await models.create_model(
                session, project=project, display_name=name, registered=True, actor=OPERATOR
            )
    dispatcher = await create_dispatcher(settings, database)
    await dispatcher.start()
    try:
        requests = await received(receiver, 3)
        await settled(database, hook, 3)
        senders = await finished_senders(database)
    finally:
        await dispatcher.close()

    assert sorted(request.json["data"]["name"] for request in requests) == names
    assert senders == [JobStatus.SUCCEEDED]


async def finished_senders(database: Database) -> list[JobStatus]:
    """The statuses of every sender job, once none is waiting or running."""
    for _ in range(int(TIMEOUT / 0.05)):
        async with database.session(read_only=True) as session:
            statuses = list(
                await session.scalars(
                    sa.select(Job.status).where(Job.kind == jobs.WEBHOOK_DELIVERY)
                )
            )
        if not set(statuses) & {JobStatus.PENDING, JobStatus.RUNNING}:
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"senders still waiting or running: {statuses}")
