"""MLflow's offset paging of searches: the page sizes MLflow allows per search
(`resolve_max_results`), opaque page tokens holding the offset, and `Page`, which asks for
one row more than it shows to learn whether another page follows (`next_page_token`).
Only MLflow's searches page this way (GraphQL uses keyset cursors, `app.services.keyset`).
It lives in the search package, not the MLflow surface, because the service layer reads a
`Page` (`runs.fetch_runs`, the services' MLflow searches) and must not import a surface."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from app.search.grammar import SearchError

__all__ = [
    "SEARCH_MAX_RESULTS_DEFAULT",
    "SEARCH_MAX_RESULTS_THRESHOLD",
    "SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT",
    "SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD",
    "SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT",
    "SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD",
    "Page",
    "decode_page_token",
    "encode_page_token",
    "next_page_token",
    "resolve_max_results",
]

# --- Limits (MLflow's) -------------------------------------------------------------------

# Runs and experiments.
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50_000
SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT = 100
SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD = 1000
SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT = 10_000
SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD = 200_000


# --- Paging ------------------------------------------------------------------------------


def encode_page_token(offset: int) -> str:
    """An opaque token for the page starting at `offset` (base64 of ``{"offset": n}``)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"a page offset is a non-negative integer, not {offset!r}")
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def decode_page_token(token: str | None) -> int:
    """The offset a page token stands for; 0 without a token."""
    if not token:
        return 0
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        parsed = json.loads(raw)
    except (UnicodeError, binascii.Error, ValueError):
        raise SearchError(
            f"Invalid page token {token!r}: it is not a token this server issued",
            field="page_token",
        ) from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
        raise SearchError(
            f"Invalid page token {token!r}: it holds no valid offset", field="page_token"
        )
    return offset


@dataclass(frozen=True)
class Page:
    """One page of a search: the offset it starts at and how many rows it shows."""

    offset: int
    size: int

    @classmethod
    def requested(
        cls, max_results: int | None, page_token: str | None, *, default: int, threshold: int
    ) -> Page:
        size = resolve_max_results(max_results, default=default, threshold=threshold)
        return cls(offset=decode_page_token(page_token), size=size)

    def of(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """The query for this page, asking one row more to learn whether another follows."""
        return query.offset(self.offset).limit(self.size + 1)

    def split(self, rows: Sequence[T]) -> tuple[Sequence[T], str | None]:
        """The rows to show and the token of the next page (None on the last)."""
        return rows[: self.size], next_page_token(self.offset, self.size, len(rows))


T = TypeVar("T")


def next_page_token(offset: int, max_results: int, fetched: int) -> str | None:
    """The token of the following page when a query for ``max_results + 1`` rows from
    `offset` returned `fetched` rows; None on the last page."""
    return encode_page_token(offset + max_results) if fetched > max_results else None


def resolve_max_results(value: int | None, *, default: int, threshold: int) -> int:
    """The page size: `default` when not given; MLflow's message past `threshold`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SearchError(
            f"Invalid value for max_results. It must be a positive integer, but got {value!r}",
            field="max_results",
        )
    if value > threshold:
        raise SearchError(
            "Invalid value for request parameter max_results. It must be at most "
            f"{threshold}, but got value {value}",
            field="max_results",
        )
    return value
