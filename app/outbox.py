"""Where committed jobs and events go: the hand-off from a transaction to the job
dispatcher and the event hub.

A `Database` is built with an `Outbox`. Once a session that enqueued jobs commits, the
database gives their ids to `Outbox.committed`, which passes them to the dispatcher
connected at that moment (it hands them to a runner), or to no one: the rows then wait
in the jobs table for the next sweep. The dispatchers live in `workers/`; `app/` knows
them only through the `JobDispatcher` protocol, and `create_app` receives a
`DispatcherFactory` from its caller (`modelreg serve` passes the workers' one).

The events a committed transaction staged (`app.events.stage`) go the same way, to the
connected `EventPublisher` (the process's `app.events.EventHub`), or to no one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.db import Database
    from app.events import Event
    from app.settings import Settings
    from app.storage import ArtifactStore


class JobDispatcher(Protocol):
    async def push(self, job_ids: list[int]) -> None:
        """Hand committed jobs to a runner; never raises (the sweep covers a failure)."""

    async def sweep(self) -> int:
        """Hand due jobs that no runner has to one; returns how many."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class EventPublisher(Protocol):
    async def publish(self, events: list[Event]) -> None:
        """Hand committed events to their subscribers; never raises."""


# Builds the process's dispatcher and connects it to `database.outbox`; jobs started
# in this process use `artifacts`, its started store (None: each job opens its own).
DispatcherFactory = Callable[
    ["Settings", "Database", "ArtifactStore | None"], Awaitable[JobDispatcher]
]


class Outbox:
    """Passes the ids of jobs a committed transaction enqueued to the connected
    dispatcher; one dispatcher at a time, the last connected."""

    def __init__(self) -> None:
        self._dispatcher: JobDispatcher | None = None
        self._publisher: EventPublisher | None = None

    @property
    def dispatcher(self) -> JobDispatcher | None:
        return self._dispatcher

    def connect(self, dispatcher: JobDispatcher) -> None:
        self._dispatcher = dispatcher

    def disconnect(self, dispatcher: JobDispatcher) -> None:
        """Stop passing jobs to `dispatcher`; a no-op once another one took its place."""
        if self._dispatcher is dispatcher:
            self._dispatcher = None

    def connect_events(self, publisher: EventPublisher | None) -> None:
        """Pass committed events to `publisher` (None: to no one)."""
        self._publisher = publisher

    async def committed(self, job_ids: list[int], events: list[Event] | None = None) -> None:
        if job_ids and self._dispatcher is not None:
            await self._dispatcher.push(job_ids)
        if events and self._publisher is not None:
            await self._publisher.publish(events)
