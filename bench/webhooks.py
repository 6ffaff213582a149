"""How long a registry event takes from its commit to the receiver of a webhook.

    .venv/bin/python -m bench.webhooks                 # 1,000 events, PostgreSQL + Redis
    .venv/bin/python -m bench.webhooks --events 200 --database sqlite

Starts a throwaway PostgreSQL (or a SQLite file) and Redis, migrates, starts `--workers`
(1) `modelreg worker` processes, and a receiver on loopback (tests/webhook_receiver.py) that a
webhook of the default project points at, signed. Then it registers `--events` models one
after the other, each in its own transaction, as the API does (the dispatcher pushes the
delivery jobs to Redis after each commit), as fast as it can or at `--rate` events per
second, and notes when each commit returned. An
event's latency is from that moment to the receiver's arrival of its delivery (one clock:
both run in this process). Reports p50, p99 and the slowest, in ms, how many events
per second were committed and delivered, how many deliveries needed a retry (and why),
and how many sender jobs the deliveries took (a sender sends all its hook's due ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from app import migrations
from app.db import Database
from app.models import Job
from app.services import jobs, models, projects, webhooks
from app.services.actor import OPERATOR
from app.settings import Settings
from tests.services import RedisServer, postgres_server
from tests.webhook_receiver import webhook_receiver
from tests.worker_process import worker_process
from workers.dispatch import create_dispatcher

WORKER_SETTINGS = (
    "database_url",
    "redis_url",
    "artifacts",
    "secret_key",
    "webhook_allow_private",
)


@contextlib.contextmanager
def _database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_server(workdir / "postgres") as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{workdir / 'webhooks.db'}"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _measure(
    settings: Settings, workdir: Path, events: int, rate: float, workers: int
) -> None:
    await asyncio.to_thread(migrations.upgrade, settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    dispatcher = await create_dispatcher(settings, database)
    try:
        with webhook_receiver() as receiver:
            async with database.session() as session:
                project = await projects.get_default_project(session)
                hook = await webhooks.create_webhook(
                    session,
                    project=project,
                    name="bench",
                    url=receiver.url,
                    events=["registered_model.created"],
                    secret="bench-secret",
                    settings=settings,
                    actor=OPERATOR,
                )
            with contextlib.ExitStack() as running:
                for _ in range(workers):
                    running.enter_context(worker_process(settings, workdir, WORKER_SETTINGS))
                committed: dict[str, float] = {}
                started = time.monotonic()
                for number in range(events):
                    if rate:
                        await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
                    name = f"model-{number}"
                    async with database.session() as session:
                        await models.create_model(
                            session,
                            project=project,
                            display_name=name,
                            registered=True,
                            experiment=False,
                            actor=OPERATOR,
                        )
                    committed[name] = time.monotonic()
                writing = time.monotonic() - started
                arrived = await receiver.wait_for(events, seconds=120 + events / 10)
                delivering = max(request.at for request in arrived) - started
            async with database.session(read_only=True) as session:
                logged = await webhooks.get_deliveries(session, webhook_id=hook.id)
                senders = await session.scalar(
                    sa.select(sa.func.count()).where(Job.kind == jobs.WEBHOOK_DELIVERY)
                )
    finally:
        await dispatcher.close()
        await database.dispose()
    latencies = [
        (request.at - committed[request.json["data"]["name"]]) * 1000 for request in arrived
    ]
    print(f"events: {events}; committed in {writing:.1f} s, all delivered after {delivering:.1f} s")
    print(
        f"commit -> receiver: p50 {statistics.median(latencies):.0f} ms, "
        f"p99 {_percentile(latencies, 0.99):.0f} ms, slowest {max(latencies):.0f} ms"
    )
    print(f"throughput: {events / delivering:.0f} deliveries/s")
    retried = [delivery for delivery in logged if delivery.attempts > 1]
    errors = Counter(entry["error"] for d in retried for entry in d.attempt_log if entry["error"])
    print(f"retried: {len(retried)} of {len(logged)} deliveries; errors: {dict(errors)}")
    print(f"sender jobs: {senders} for {len(logged)} deliveries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0, help="events per second (0: no pause)")
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as directory:
        workdir = Path(directory)
        pace = f"{options.rate:g} events/s" if options.rate else "as fast as committed"
        print(f"database: {options.database}, Redis, {options.workers} worker(s), {pace}")
        with _database(options.database, workdir) as url, RedisServer(workdir / "redis") as redis:
            settings = Settings(
                database_url=url,
                redis_url=redis.url,
                artifacts=str(workdir / "artifacts"),
                secret_key="bench-server-key-0123456789",
                webhook_allow_private=True,
            )
            asyncio.run(_measure(settings, workdir, options.events, options.rate, options.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
