"""Limits on signing in: passwords cannot be guessed without end, nor argon2 take every core.

**Throttling.** Each sign-in attempt counts against its client address and, when it
carries a password, against its username, known or not: unknown usernames count the
same, so a refusal tells nothing about who exists. An attempt is counted *before*
anything is verified, so concurrent guesses cannot slip past a count together. When a
count has reached its limit (``sign_in_attempts`` per username, ``sign_in_address_attempts``
per address) within its window (``sign_in_window_seconds``, fixed from the count's first
attempt), the attempt is refused with TooManyAttemptsError (429) naming the seconds until
that window ends; nothing is counted or verified, the right password included (verifying
it would let the guessing go on). Then:

- an attempt that fails (UnauthenticatedError) stays counted;
- one that succeeds clears its username's count and gives its address's attempt back
  (people behind one address who type their passwords right never add up);
- one stopped by anything else (the server busy, the database down) gives both back.

An address is the client's address as the surface determines it; an IPv6 address counts
by its /64 network, which one subscriber usually holds whole. Usernames are counted by
digest, so a key's size does not depend on what a client sends.

Counts live in Redis when the runtime has it, shared by every API process (one Lua script
checks and counts atomically); else in this process, at most MAX_TRACKED_COUNTS of them
(the oldest window goes first when full: one address fills at most its own limit of
them). When Redis fails, this process's counts stand in.

**Password checks.** At most ``password_checks_at_once`` password sign-ins (0: the number
of CPUs) run at once in one process; argon2 is nearly all of their work. One that would
wait longer than ``password_check_wait_seconds`` for its turn is refused with
PasswordChecksBusyError (503, retry after RETRY_BUSY_SECONDS) instead of queueing without
bound. A waiting sign-in holds no database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import DomainError, UnauthenticatedError
from app.settings import Settings

logger = logging.getLogger(__name__)

MAX_TRACKED_COUNTS = 10_000
RETRY_BUSY_SECONDS = 5
KEY_PREFIX = "modelreg:sign_in:"

_T = TypeVar("_T")


class RetryLaterError(DomainError):
    """Refused for now; `retry_after` is how many seconds to wait (Retry-After)."""

    status = 503

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAttemptsError(RetryLaterError):
    code = "too_many_attempts"
    status = 429


class PasswordChecksBusyError(RetryLaterError):
    code = "busy"
    status = 503


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int


class _Counts(Protocol):
    async def count(self, counters: Sequence[_Counter]) -> float:
        """Count one attempt on every counter and return 0, or, when one of them has
        reached its limit, count nothing and return the seconds until its window ends."""

    async def give_back(self, keys: Sequence[str]) -> None: ...

    async def clear(self, key: str) -> None: ...


@dataclass
class _Window:
    attempts: int
    ends: float


class _LocalCounts:
    """One process's counts. Every window has the same length and starts when its key is
    added, so insertion order is the order in which windows end."""

    def __init__(self, window_seconds: float) -> None:
        self._window_seconds = window_seconds
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    async def count(self, counters: Sequence[_Counter]) -> float:
        now = time.monotonic()
        while self._windows and next(iter(self._windows.values())).ends <= now:
            self._windows.popitem(last=False)
        full = [
            window.ends - now
            for counter in counters
            if (window := self._windows.get(counter.key)) and window.attempts >= counter.limit
        ]
        if full:
            return max(full)
        for counter in counters:
            window = self._windows.get(counter.key)
            if window is None:
                if len(self._windows) >= MAX_TRACKED_COUNTS:
                    self._windows.popitem(last=False)
                window = self._windows[counter.key] = _Window(0, now + self._window_seconds)
            window.attempts += 1
        return 0

    async def give_back(self, keys: Sequence[str]) -> None:
        for key in keys:
            window = self._windows.get(key)
            if window is not None and window.attempts > 0:
                window.attempts -= 1

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)


# KEYS: the counters; ARGV[1]: the window in milliseconds; ARGV[i + 1]: the limit of KEYS[i].
_COUNT_SCRIPT = """
local wait = 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local left = redis.call('PTTL', key)
    if left < 0 then left = tonumber(ARGV[1]) end
    wait = math.max(wait, left)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return 0
"""
# Never creates a key (a DECR would, without an expiry).
_GIVE_BACK_SCRIPT = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class _RedisCounts:
    """Counts shared by every API process that uses this Redis."""

    def __init__(self, redis: Redis, window_seconds: float) -> None:
        self._redis = redis
        self._window_ms = max(1, round(window_seconds * 1000))
        self._count = redis.register_script(_COUNT_SCRIPT)
        self._give_back = redis.register_script(_GIVE_BACK_SCRIPT)

    async def count(self, counters: Sequence[_Counter]) -> float:
        wait_ms = await self._count(
            keys=[counter.key for counter in counters],
            args=[self._window_ms, *(counter.limit for counter in counters)],
        )
        return int(wait_ms) / 1000

    async def give_back(self, keys: Sequence[str]) -> None:
        await self._give_back(keys=list(keys))

    async def clear(self, key: str) -> None:
        await self._redis.delete(key)


def _address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{KEY_PREFIX}address:{_digest(address)}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return f"{KEY_PREFIX}address:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip
    return f"{KEY_PREFIX}address:{mapped}"


def _user_key(username: str) -> str:
    return f"{KEY_PREFIX}user:{_digest(username)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()


class SignInLimits:
    """One API process's sign-in limits (see the module's description)."""

    def __init__(self, settings: Settings, redis: Redis | None) -> None:
        self._settings = settings
        self._local = _LocalCounts(settings.sign_in_window_seconds)
        self._shared = (
            _RedisCounts(redis, settings.sign_in_window_seconds) if redis is not None else None
        )
        self._password_checks = asyncio.Semaphore(
            settings.password_checks_at_once or os.cpu_count() or 1
        )

    @contextlib.asynccontextmanager
    async def attempt(self, *, address: str, username: str | None = None) -> AsyncIterator[None]:
        """Count a sign-in attempt around its verification, or raise TooManyAttemptsError."""
        address_key = _address_key(address)
        counters = [_Counter(address_key, self._settings.sign_in_address_attempts)]
        if username is not None:
            counters.append(_Counter(_user_key(username), self._settings.sign_in_attempts))
        wait = await self._use_counts(lambda counts: counts.count(counters))
        if wait > 0:
            raise TooManyAttemptsError(
                "too many failed sign-in attempts; retry later", retry_after=math.ceil(wait)
            )
        try:
            yield
        except UnauthenticatedError:
            raise
        except Exception:
            await self._use_counts(lambda counts: counts.give_back([c.key for c in counters]))
            raise
        if username is not None:
            await self._use_counts(lambda counts: counts.clear(_user_key(username)))
        await self._use_counts(lambda counts: counts.give_back([address_key]))

    @contextlib.asynccontextmanager
    async def password_check(self) -> AsyncIterator[None]:
        """Hold one of this process's password check slots, or raise
        PasswordChecksBusyError when none comes free in time."""
        try:
            async with asyncio.timeout(self._settings.password_check_wait_seconds):
                await self._password_checks.acquire()
        except TimeoutError:
            raise PasswordChecksBusyError(
                "the server is busy checking passwords; retry shortly",
                retry_after=RETRY_BUSY_SECONDS,
            ) from None
        try:
            yield
        finally:
            self._password_checks.release()

    async def _use_counts(self, use: Callable[[_Counts], Awaitable[_T]]) -> _T:
        if self._shared is not None:
            try:
                return await use(self._shared)
            except RedisError:
                logger.warning("sign-in attempts counted in this process: Redis failed")
        return await use(self._local)
