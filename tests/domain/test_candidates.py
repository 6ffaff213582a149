"""The candidate rules: write-once params, metric history with a maintained latest value,
NaN and infinities, MLflow's batch limits, and no half-written batches."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import InvalidValueError, NotFoundError
from app.models import Candidate, CandidateMetric, CandidateStatus, Model, Project
from app.services import candidates, models, projects
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint


@pytest.fixture
async def model(session: AsyncSession, project: Project) -> Model:
    return await models.create_model(session, project=project, display_name="Churn", actor=OPERATOR)


@pytest.fixture
async def candidate(session: AsyncSession, model: Model) -> Candidate:
    return await candidates.create_candidate(session, model=model, name="first", actor=OPERATOR)


async def test_candidates_get_project_scoped_iids_and_unique_run_ids(
    session: AsyncSession, project: Project, model: Model
) -> None:
    other_model = await models.create_model(
        session, project=project, display_name="Fraud", actor=OPERATOR
    )
    created = [
        await candidates.create_candidate(session, model=m, actor=OPERATOR)
        for m in (model, other_model, model)
    ]
    assert [c.iid for c in created] == [1, 2, 3]
    assert len({c.eid for c in created}) == 3
    assert all(len(c.eid) == 32 for c in created)
    found = await candidates.get_candidate(session, project=project, eid=created[1].eid)
    assert (found.iid, found.model_id) == (2, other_model.id)


async def test_a_candidate_is_not_found_from_another_project(
    session: AsyncSession, candidate: Candidate
) -> None:
    other = await projects.create_project(session, path="elsewhere")
    with pytest.raises(NotFoundError):
        await candidates.get_candidate(session, project=other, eid=candidate.eid)


async def test_params_are_written_once_and_the_same_value_again_is_a_no_op(
    session: AsyncSession, candidate: Candidate
) -> None:
    await candidates.log_batch(
        session, candidate=candidate, params={"lr": "0.1", "depth": "3"}, actor=OPERATOR
    )
    await candidates.log_batch(session, candidate=candidate, params={"lr": "0.1"}, actor=OPERATOR)
    with pytest.raises(InvalidValueError, match="Changing param values is not allowed"):
        await candidates.log_batch(
            session, candidate=candidate, params={"lr": "0.2"}, actor=OPERATOR
        )
    assert await candidates.get_params(session, candidate=candidate) == {
        "depth": "3",
        "lr": "0.1",
    }


async def test_one_batch_with_a_param_twice_at_different_values_is_refused(
    session: AsyncSession, candidate: Candidate
) -> None:
    with pytest.raises(InvalidValueError, match="Duplicate parameter"):
        await candidates.log_batch(
            session, candidate=candidate, params=[("lr", "0.1"), ("lr", "0.2")], actor=OPERATOR
        )


async def test_latest_metric_follows_the_highest_step_whatever_the_arrival_order(
    session: AsyncSession, candidate: Candidate
) -> None:
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[MetricPoint("loss", 0.5, timestamp=100, step=5)],
        actor=OPERATOR,
    )
    # Earlier steps arriving late, in one batch and then alone, do not move it back.
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[
            MetricPoint("loss", 0.9, timestamp=300, step=1),
            MetricPoint("loss", 0.7, timestamp=300, step=3),
        ],
        actor=OPERATOR,
    )
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[MetricPoint("loss", 0.8, timestamp=400, step=2)],
        actor=OPERATOR,
    )
    latest = await candidates.get_latest_metrics(session, candidate=candidate)
    assert [(m.name, m.value, m.step) for m in latest] == [("loss", 0.5, 5)]
    # A later step moves it forward; at the same step a later timestamp wins.
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[
            MetricPoint("loss", 0.3, timestamp=50, step=6),
            MetricPoint("loss", 0.4, timestamp=60, step=6),
        ],
        actor=OPERATOR,
    )
    latest = await candidates.get_latest_metrics(session, candidate=candidate)
    assert [(m.value, m.step, m.timestamp) for m in latest] == [(0.4, 6, 60)]
    history = await candidates.get_metric_history(session, candidate=candidate, name="loss")
    assert [(m.step, m.value) for m in history] == [
        (1, 0.9),
        (2, 0.8),
        (3, 0.7),
        (5, 0.5),
        (6, 0.3),
        (6, 0.4),
    ]


async def test_nan_and_infinities_are_stored_and_returned(
    session: AsyncSession, candidate: Candidate
) -> None:
    await candidates.log_batch(
        session,
        candidate=candidate,
        metrics=[
            MetricPoint("a", math.nan, timestamp=1, step=0),
            MetricPoint("a", math.inf, timestamp=1, step=1),
            MetricPoint("a", -math.inf, timestamp=1, step=2),
            MetricPoint("b", math.nan, timestamp=1, step=0),
        ],
        actor=OPERATOR,
    )
    history = await candidates.get_metric_history(session, candidate=candidate, name="a")
    values = [m.value for m in history]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]
    latest = {
        m.name: m.value for m in await candidates.get_latest_metrics(session, candidate=candidate)
    }
    assert latest["a"] == -math.inf
    assert math.isnan(latest["b"])


async def test_metrics_of_one_batch_are_inserted_in_bulk(
    session: AsyncSession, candidate: Candidate
) -> None:
    points = [MetricPoint(f"m{i % 50}", float(i), timestamp=i, step=i // 50) for i in range(1000)]
    await candidates.log_batch(session, candidate=candidate, metrics=points, actor=OPERATOR)
    count = await session.scalar(
        sa.select(sa.func.count()).where(CandidateMetric.candidate_id == candidate.id)
    )
    assert count == 1000
    latest = await candidates.get_latest_metrics(session, candidate=candidate)
    assert len(latest) == 50
    assert all(m.step == 19 for m in latest)


@pytest.mark.parametrize(
    ("metrics", "params", "tags", "message"),
    [
        (1001, 0, 0, "at most 1000 metrics"),
        (0, 101, 0, "at most 100 params"),
        (0, 0, 101, "at most 100 tags"),
        (950, 60, 0, "at most 1000 entries"),
    ],
)
async def test_batches_over_mlflows_limits_are_refused(
    session: AsyncSession, candidate: Candidate, metrics: int, params: int, tags: int, message: str
) -> None:
    with pytest.raises(InvalidValueError, match=message):
        await candidates.log_batch(
            session,
            candidate=candidate,
            metrics=[MetricPoint(f"m{i}", 1.0, timestamp=1) for i in range(metrics)],
            params={f"p{i}": "v" for i in range(params)},
            tags={f"t{i}": "v" for i in range(tags)},
            actor=OPERATOR,
        )


@pytest.mark.parametrize(
    "name", ["", "../escape", "/absolute", "a//b", "bad!char", "x" * 251, "trailing/", "."]
)
async def test_invalid_keys_are_refused(
    session: AsyncSession, candidate: Candidate, name: str
) -> None:
    with pytest.raises(InvalidValueError):
        await candidates.log_batch(session, candidate=candidate, params={name: "v"}, actor=OPERATOR)


async def test_value_lengths_follow_mlflow(session: AsyncSession, candidate: Candidate) -> None:
    await candidates.log_batch(
        session,
        candidate=candidate,
        params={"p": "x" * 6000},
        tags={"t": "y" * 8000},
        actor=OPERATOR,
    )
    with pytest.raises(InvalidValueError):
        await candidates.log_batch(
            session, candidate=candidate, params={"q": "x" * 6001}, actor=OPERATOR
        )
    with pytest.raises(InvalidValueError):
        await candidates.log_batch(
            session, candidate=candidate, tags={"u": "y" * 8001}, actor=OPERATOR
        )


async def test_a_refused_batch_writes_nothing(database: Database) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)
        model = await models.create_model(
            session, project=project, display_name="Churn", actor=OPERATOR
        )
        candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        await candidates.log_batch(
            session, candidate=candidate, params={"lr": "0.1"}, actor=OPERATOR
        )
    with pytest.raises(InvalidValueError):
        async with database.session() as session:
            await candidates.log_batch(
                session,
                candidate=candidate,
                metrics=[MetricPoint("loss", 1.0, timestamp=1)],
                tags={"note": "kept?"},
                params={"depth": "3", "lr": "0.5"},
                actor=OPERATOR,
            )
    async with database.session(read_only=True) as session:
        assert await candidates.get_params(session, candidate=candidate) == {"lr": "0.1"}
        assert await candidates.get_latest_metrics(session, candidate=candidate) == []
        assert await candidates.get_metadata(session, candidate=candidate) == {}


async def test_tags_are_overwritten_and_deletable(
    session: AsyncSession, candidate: Candidate
) -> None:
    await candidates.log_batch(
        session, candidate=candidate, tags={"a": "1", "b": "2"}, actor=OPERATOR
    )
    await candidates.log_batch(session, candidate=candidate, tags={"a": "3"}, actor=OPERATOR)
    await candidates.delete_metadata(session, candidate=candidate, name="b", actor=OPERATOR)
    assert await candidates.get_metadata(session, candidate=candidate) == {"a": "3"}
    with pytest.raises(NotFoundError):
        await candidates.delete_metadata(session, candidate=candidate, name="b", actor=OPERATOR)


async def test_a_deleted_candidate_refuses_writes_until_restored(
    session: AsyncSession, project: Project, candidate: Candidate
) -> None:
    await candidates.delete_candidate(session, candidate=candidate, actor=OPERATOR)
    with pytest.raises(InvalidValueError, match="must be active"):
        await candidates.log_batch(session, candidate=candidate, params={"lr": "1"}, actor=OPERATOR)
    with pytest.raises(NotFoundError):
        await candidates.get_candidate(session, project=project, eid=candidate.eid)
    await candidates.restore_candidate(session, candidate=candidate, actor=OPERATOR)
    await candidates.log_batch(session, candidate=candidate, params={"lr": "1"}, actor=OPERATOR)
    await candidates.update_candidate(
        session, candidate=candidate, status=CandidateStatus.FINISHED, end_time=5, actor=OPERATOR
    )
    found = await candidates.get_candidate(session, project=project, eid=candidate.eid)
    assert (found.status, found.end_time) == (CandidateStatus.FINISHED, 5)


async def test_a_deleted_model_takes_no_new_candidates(session: AsyncSession, model: Model) -> None:
    await models.delete_model(session, model=model, actor=OPERATOR)
    with pytest.raises(InvalidValueError):
        await candidates.create_candidate(session, model=model, actor=OPERATOR)


async def test_listing_shows_a_models_candidates_newest_first(
    session: AsyncSession, model: Model
) -> None:
    for start in (10, 30, 20):
        await candidates.create_candidate(
            session, model=model, name=str(start), start_time=start, actor=OPERATOR
        )
    listed = await candidates.list_candidates(session, model=model)
    assert [c.name for c in listed] == ["30", "20", "10"]
