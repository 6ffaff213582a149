"""Change events: what a committed transaction changed, told to whoever subscribed to it.

A channel names one object (`job:<id>`, `candidate:<id>`); a message is a JSON object
that the service owning the object writes and its subscribers read. Services stage
events on their session (`stage`); once the session committed, the database hands them
to its outbox (`app.outbox`), which gives them to the process's `EventHub`: a rolled-back
change publishes nothing.

An `EventHub` has two transports behind one interface:

- in-process (no MODELREG_REDIS_URL): a published event goes straight to the
  subscribers of this process, the only ones there are;
- Redis pub/sub: a published event goes to Redis channel `modelreg:<channel>`, and each
  process's hub holds one pub/sub connection subscribed to the channels its own
  subscribers follow, so an event logged by any API process or worker reaches every
  subscriber. Delivery is at most once: what is published while Redis is away is lost
  (subscribers start from the current state, so a client that subscribes again after an
  outage misses nothing it still needs).

A subscriber's queue holds at most `QUEUE_LIMIT` messages. A subscriber that falls that
far behind is dropped, never slowed or grown: its next read raises `FellBehindError`, so
the client learns it missed messages and subscribes again (starting from the current
state). Publishing never raises: an event that cannot be delivered is logged and lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import STAGED_EVENTS_KEY

logger = logging.getLogger(__name__)

# Messages a subscriber may have waiting before it is dropped.
QUEUE_LIMIT = 256
REDIS_PREFIX = "modelreg:"
# A publish happens right after a commit, inside a request: fail fast when Redis is down.
REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
REDIS_COMMAND_TIMEOUT_SECONDS = 5.0
# How long a new subscriber waits for Redis to confirm its channel.
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
# The reader's pause before reconnecting to a Redis that failed.
RECONNECT_DELAY_SECONDS = 1.0


def job_channel(job_id: int) -> str:
    return f"job:{job_id}"


def candidate_channel(candidate_id: int) -> str:
    return f"candidate:{candidate_id}"


@dataclass(frozen=True)
class Event:
    channel: str
    message: dict[str, Any]


def stage(session: AsyncSession, channel: str, message: dict[str, Any]) -> None:
    """Publish `message` on `channel` once the session's transaction commits."""
    session.info.setdefault(STAGED_EVENTS_KEY, []).append(Event(channel, message))


class FellBehindError(Exception):
    """The subscriber did not read its messages as fast as they came; some were dropped."""


class EventsUnavailableError(Exception):
    """Redis did not confirm a subscription in time."""


class Subscription:
    """The messages of one channel for one subscriber, oldest first; iterate to read."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._messages: collections.deque[dict[str, Any]] = collections.deque()
        self._arrived = asyncio.Event()
        self._fell_behind = False

    def offer(self, message: dict[str, Any]) -> None:
        if len(self._messages) >= QUEUE_LIMIT:
            self._fell_behind = True
        else:
            self._messages.append(message)
        self._arrived.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._fell_behind:
                raise FellBehindError(
                    f"more than {QUEUE_LIMIT} updates waited to be read; subscribe again"
                )
            if self._messages:
                return self._messages.popleft()
            self._arrived.clear()
            await self._arrived.wait()


class EventHub:
    """The process's publish/subscribe hub: through Redis when `redis_url` is given,
    else within this process. `start` it before use and `close` it at shutdown."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis_url = redis_url
        self._subscribers: dict[str, set[Subscription]] = {}
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._listening = asyncio.Event()

    async def start(self) -> None:
        if self._redis_url is None:
            return
        self._redis = Redis.from_url(
            self._redis_url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
            socket_timeout=REDIS_COMMAND_TIMEOUT_SECONDS,
        )
        # The reader waits on its connection as long as no message comes: no timeout.
        listener = Redis.from_url(
            self._redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS
        )
        self._pubsub = listener.pubsub()
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._pubsub.connection_pool.disconnect()
        if self._redis is not None:
            await self._redis.aclose()

    async def publish(self, events: Sequence[Event]) -> None:
        """Deliver events to their channels' subscribers; never raises."""
        if self._redis_url is None:
            for event in events:
                self._deliver(event.channel, event.message)
            return
        if self._redis is None:
            raise RuntimeError("the event hub publishes once started")
        try:
            async with self._redis.pipeline(transaction=False) as pipeline:
                for event in events:
                    pipeline.publish(
                        REDIS_PREFIX + event.channel, json.dumps(event.message, allow_nan=True)
                    )
                await pipeline.execute()
        except (RedisError, OSError) as error:
            logger.warning(
                "events on %s not published (%s: %s)",
                sorted({event.channel for event in events}),
                type(error).__name__,
                error,
            )

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Follow `channel` while the block runs; every message published after the
        block starts is in the subscription (EventsUnavailableError when Redis does
        not confirm the channel in time)."""
        subscription = Subscription(channel)
        subscribers = self._subscribers.setdefault(channel, set())
        subscribers.add(subscription)
        try:
            if self._pubsub is not None:
                await self._follow(channel)
            yield subscription
        finally:
            subscribers.discard(subscription)
            if not subscribers and self._subscribers.get(channel) is subscribers:
                del self._subscribers[channel]
                await self._unfollow(channel)

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        for subscription in list(self._subscribers.get(channel, ())):
            subscription.offer(message)

    # --- Redis ---------------------------------------------------------------------------

    async def _follow(self, channel: str) -> None:
        assert self._pubsub is not None
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.Event()
            try:
                await self._pubsub.subscribe(REDIS_PREFIX + channel)
            except (RedisError, OSError) as error:
                del self._confirmed[channel]
                raise EventsUnavailableError(f"Redis refused the subscription: {error}") from error
            self._listening.set()
        try:
            await asyncio.wait_for(confirmed.wait(), SUBSCRIBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise EventsUnavailableError("Redis did not confirm the subscription") from None

    async def _unfollow(self, channel: str) -> None:
        if self._pubsub is None or self._confirmed.pop(channel, None) is None:
            return
        try:
            await self._pubsub.unsubscribe(REDIS_PREFIX + channel)
        except (RedisError, OSError) as error:
            # Redis then keeps sending this channel's messages, which find no subscriber.
            logger.warning("events: channel %s not unsubscribed (%s)", channel, error)

    async def _read(self) -> None:
        """Hand each message Redis sends to the subscribers of its channel; survives
        Redis outages (redis-py subscribes again to every channel on reconnection)."""
        assert self._pubsub is not None
        failing = False
        while True:
            if not self._pubsub.subscribed:
                self._listening.clear()
                await self._listening.wait()
                continue
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as error:
                if not failing:
                    logger.warning("events: Redis unreachable (%s); retrying", error)
                failing = True
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            failing = False
            if message is None:
                continue
            try:
                self._handle(message)
            except Exception:
                logger.exception("events: a message from Redis was not handled: %r", message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = _channel_name(message["channel"])
        if message["type"] == "subscribe":
            if (confirmed := self._confirmed.get(channel)) is not None:
                confirmed.set()
        elif message["type"] == "message":
            self._deliver(channel, json.loads(message["data"]))


def _channel_name(redis_channel: bytes | str) -> str:
    name = redis_channel.decode() if isinstance(redis_channel, bytes) else redis_channel
    return name.removeprefix(REDIS_PREFIX)
