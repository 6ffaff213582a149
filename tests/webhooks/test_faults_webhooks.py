"""Deliveries that survive dead workers and Redis outages, with real `modelreg worker`
processes, PostgreSQL and Redis: the delivery rows are the truth, Redis only a transport.

Bounds, with the short settings used here: a delivery whose worker was SIGKILLed mid-send
is sent again once the job's lease (3 s) and the delivery's claim (the attempt timeout,
2 s, and a 5 s margin) expired, plus a sweep (1 s); events written while Redis is down
are delivered after Redis is back and one sweep ran."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db import Database
from app.models import DeliveryStatus, Webhook, WebhookDelivery
from app.outbox import JobDispatcher
from app.services import models, projects, webhooks
from app.services.actor import OPERATOR
from app.settings import Settings
from tests.services import RedisServer
from tests.webhook_receiver import Receiver, webhook_receiver
from tests.worker_process import STARTUP_SECONDS, worker_process

SECRET = "whsec-fault-tests"
# Every setting a worker of these tests gets from its environment.
WORKER_SETTINGS = (
    "database_url",
    "redis_url",
    "artifacts",
    "secret_key",
    "webhook_allow_private",
    "webhook_timeout_seconds",
    "webhook_retry_base_seconds",
    "job_lease_seconds",
    "job_poll_interval_seconds",
    "job_requeue_after_seconds",
)


@pytest.fixture
def backend() -> str:
    """Workers and Redis go with PostgreSQL in production: these tests use only it."""
    return "postgresql"


@pytest.fixture
def settings(database: Database, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database.url,
        redis_url=redis_url,
        artifacts=str(tmp_path / "artifacts"),
        secret_key="a-server-key-of-the-test-0123456789",
        webhook_allow_private=True,
        webhook_timeout_seconds=2,
        webhook_retry_base_seconds=0.05,
        job_lease_seconds=3,
        job_poll_interval_seconds=1,
        job_requeue_after_seconds=3,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@contextlib.contextmanager
def a_worker(settings: Settings, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(settings, workdir, WORKER_SETTINGS) as process:
        yield process


async def add_webhook(database: Database, settings: Settings, url: str) -> Webhook:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        return await webhooks.create_webhook(
            session,
            project=project,
            name="deploys",
            url=url,
            events=["registered_model.created"],
            secret=SECRET,
            settings=settings,
            actor=OPERATOR,
        )


async def register(database: Database, name: str) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        await models.create_model(
            session, project=project, display_name=name, registered=True, actor=OPERATOR
        )


async def delivered(database: Database, hook: Webhook, count: int) -> list[WebhookDelivery]:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        async with database.session(read_only=True) as session:
            found = await webhooks.get_deliveries(session, webhook_id=hook.id)
        if len(found) == count and all(d.status is DeliveryStatus.DELIVERED for d in found):
            return found
        assert time.monotonic() < deadline, f"not delivered: {found}"
        await asyncio.sleep(0.1)


async def test_a_delivery_whose_worker_was_killed_mid_send_is_sent_again(
    database: Database,
    settings: Settings,
    dispatcher: JobDispatcher,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    hook = await add_webhook(database, settings, receiver.url)
    receiver.hold()
    with a_worker(settings, tmp_path) as first:
        await register(database, "Churn")
        [held] = await receiver.wait_for(1, seconds=STARTUP_SECONDS)
        first.send_signal(signal.SIGKILL)
        first.wait()
    receiver.release()
    async with database.session(read_only=True) as session:
        [interrupted] = await webhooks.get_deliveries(session, webhook_id=hook.id)
    assert (interrupted.status, interrupted.attempts) == (DeliveryStatus.PENDING, 0)

    with a_worker(settings, tmp_path):
        _, again = await receiver.wait_for(2, seconds=STARTUP_SECONDS)
        [delivery] = await delivered(database, hook, 1)

    assert again.delivery_id == held.delivery_id == delivery.delivery_id
    assert again.body == held.body
    assert delivery.attempts == 1
    assert [attempt["response_code"] for attempt in delivery.attempt_log] == [200]


async def test_events_written_while_redis_is_down_are_all_delivered_once_it_is_back(
    database: Database,
    settings: Settings,
    dispatcher: JobDispatcher,
    redis: RedisServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    hook = await add_webhook(database, settings, receiver.url)
    names = [f"model-{number}" for number in range(5)]
    with a_worker(settings, tmp_path) as worker:
        redis.stop()
        try:
            for name in names:
                await register(database, name)
            async with database.session(read_only=True) as session:
                waiting = await webhooks.get_deliveries(session, webhook_id=hook.id)
            assert [d.status for d in waiting] == [DeliveryStatus.PENDING] * 5
        finally:
            redis.start()
        requests = await receiver.wait_for(5, seconds=STARTUP_SECONDS)
        found = await delivered(database, hook, 5)
        assert worker.poll() is None

    assert sorted(request.json["data"]["name"] for request in requests) == names
    assert {request.delivery_id for request in requests} == {d.delivery_id for d in found}
