"""The metric, param and tag names a model's candidates have logged: the columns a
frontend offers to show and compare. They are kept in `model_candidate_keys` as the
candidates log, and read from there alone, so the answer costs the same at 100,000
candidates as at 100.

- Written by `record`, which every logging path reaches through `candidates.log_batch`
  (MLflow's log-batch, log-metric, log-param and set-tag, the tags a new run starts
  with, GraphQL's candidate mutations): one INSERT ... ON CONFLICT DO NOTHING of the
  batch's distinct names, whether they are new or not, and none for a batch without a
  name to keep. Nothing is read first: the table's primary key is the guard, so API
  processes share nothing but the database.
- Tags under MLflow's reserved prefix `mlflow.` (the run's source, user, logged-model
  history ...) are not kept: MLflow's UI leaves these system tags out of its columns.
- The keys are a superset: a name stays after the candidates that logged it are deleted,
  destroyed, or drop the tag, until the model itself is destroyed (its rows go with it).
  Taking a name away would read every candidate of the model, and could race another
  candidate logging that very name; an empty column is the lesser harm.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_for
from app.models import ModelCandidateKey

SYSTEM_TAG_PREFIX = "mlflow."
METRIC, PARAM, TAG = "metric", "param", "tag"


@dataclass(frozen=True)
class CandidateKeys:
    """The distinct names of one model's candidates, each kind sorted by code point."""

    metrics: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def is_system_tag(name: str) -> bool:
    return name.startswith(SYSTEM_TAG_PREFIX)


async def record(
    session: AsyncSession,
    *,
    model_id: int,
    metrics: Iterable[str] = (),
    params: Iterable[str] = (),
    tags: Iterable[str] = (),
) -> None:
    """Keep the names a candidate of the model logged, in one statement; names the model
    has already are left as they are, system tags are skipped."""
    rows = [
        {"model_id": model_id, "kind": kind, "name": name}
        for kind, names in (
            (METRIC, set(metrics)),
            (PARAM, set(params)),
            (TAG, {name for name in tags if not is_system_tag(name)}),
        )
        for name in sorted(names)
    ]
    if not rows:
        return
    await session.execute(_insert_new_keys(session.get_bind().dialect.name), rows)


@functools.cache
def _insert_new_keys(dialect: str) -> sa.Insert:
    """Every logged batch records its names: built once (see `app.db`)."""
    return insert_for(dialect, ModelCandidateKey).on_conflict_do_nothing(
        index_elements=["model_id", "kind", "name"]
    )


async def keys_of_models(
    session: AsyncSession, *, model_ids: Collection[int]
) -> dict[int, CandidateKeys]:
    """The candidate keys of each model, in one query by the table's primary key."""
    found = {model_id: CandidateKeys() for model_id in model_ids}
    if not model_ids:
        return found
    rows = await session.execute(
        sa.select(ModelCandidateKey.model_id, ModelCandidateKey.kind, ModelCandidateKey.name).where(
            ModelCandidateKey.model_id.in_(model_ids)
        )
    )
    for model_id, kind, name in rows:
        keys = found[model_id]
        {METRIC: keys.metrics, PARAM: keys.params, TAG: keys.tags}[kind].append(name)
    for keys in found.values():
        keys.metrics.sort()
        keys.params.sort()
        keys.tags.sort()
    return found
