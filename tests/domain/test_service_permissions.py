"""Each service operation asks the policy for its own action, whoever calls it: called
directly, with no door in front, it refuses a caller the policy refuses, with the answer
a door would give (403 naming the least role, 404 for a project the caller may not read,
401 for an anonymous caller), and lets `OPERATOR` through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DomainError, ForbiddenError, NotFoundError, UnauthenticatedError
from app.models import Candidate, LoggedModel, Model, ModelVersion, Project, Role, Visibility
from app.services import candidates, logged_models, models, projects, users, versions
from app.services.actor import OPERATOR, SCOPE_READ_API, Actor
from app.services.candidates import MetricPoint


@dataclass
class Owned:
    project: Project
    model: Model
    version: ModelVersion
    candidate: Candidate
    logged_model: LoggedModel


Change = Callable[[AsyncSession, Owned, Actor | None], Awaitable[object]]

# Each service change, with the least role the policy table gives its operation.
CHANGES: dict[str, tuple[Role, Change]] = {
    "create a model": (
        Role.DEVELOPER,
        lambda s, o, a: models.create_model(s, project=o.project, display_name="New", actor=a),
    ),
    "create an experiment": (
        Role.DEVELOPER,
        lambda s, o, a: models.create_experiment(s, project=o.project, display_name="New", actor=a),
    ),
    "register a model": (
        Role.DEVELOPER,
        lambda s, o, a: models.register_model(s, model=o.model, actor=a),
    ),
    "update a model": (
        Role.DEVELOPER,
        lambda s, o, a: models.update_model(s, model=o.model, description="x", actor=a),
    ),
    "set a model's metadata": (
        Role.DEVELOPER,
        lambda s, o, a: models.set_model_metadata(s, model=o.model, items={"k": "v"}, actor=a),
    ),
    "delete a model's metadata": (
        Role.DEVELOPER,
        lambda s, o, a: models.delete_model_metadata(s, model=o.model, name="team", actor=a),
    ),
    "delete an experiment": (
        Role.MAINTAINER,
        lambda s, o, a: models.delete_model(s, model=o.model, actor=a),
    ),
    "restore an experiment": (
        Role.MAINTAINER,
        lambda s, o, a: models.restore_model(s, model=o.model, actor=a),
    ),
    "destroy a model": (
        Role.MAINTAINER,
        lambda s, o, a: models.destroy_model(s, model=o.model, actor=a),
    ),
    "unregister a model": (
        Role.MAINTAINER,
        lambda s, o, a: versions.unregister_model(s, model=o.model, actor=a),
    ),
    "create a version": (
        Role.DEVELOPER,
        lambda s, o, a: versions.create_version(s, model=o.model, actor=a),
    ),
    "update a version": (
        Role.DEVELOPER,
        lambda s, o, a: versions.update_version(s, version=o.version, description="x", actor=a),
    ),
    "set a version's metadata": (
        Role.DEVELOPER,
        lambda s, o, a: versions.set_version_metadata(
            s, version=o.version, items={"k": "v"}, actor=a
        ),
    ),
    "delete a version's metadata": (
        Role.DEVELOPER,
        lambda s, o, a: versions.delete_version_metadata(s, version=o.version, name="k", actor=a),
    ),
    "destroy a version": (
        Role.DEVELOPER,
        lambda s, o, a: versions.destroy_version(s, version=o.version, actor=a),
    ),
    "set an alias": (
        Role.DEVELOPER,
        lambda s, o, a: versions.set_alias(
            s, model=o.model, alias="champion", version=o.version, actor=a
        ),
    ),
    "delete an alias": (
        Role.DEVELOPER,
        lambda s, o, a: versions.delete_alias(s, model=o.model, alias="champion", actor=a),
    ),
    "create a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.create_candidate(s, model=o.model, actor=a),
    ),
    "update a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.update_candidate(s, candidate=o.candidate, name="x", actor=a),
    ),
    "log to a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.log_batch(
            s, candidate=o.candidate, metrics=[MetricPoint("loss", 0.5, 1, 0)], actor=a
        ),
    ),
    "delete a candidate's metadata": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.delete_metadata(s, candidate=o.candidate, name="k", actor=a),
    ),
    "record a candidate's inputs": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.record_inputs(
            s, candidate=o.candidate, entries=[("dataset_input", "d:1", {})], actor=a
        ),
    ),
    "delete a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.delete_candidate(s, candidate=o.candidate, actor=a),
    ),
    "restore a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.restore_candidate(s, candidate=o.candidate, actor=a),
    ),
    "destroy a candidate": (
        Role.DEVELOPER,
        lambda s, o, a: candidates.destroy_candidate(s, candidate=o.candidate, actor=a),
    ),
    "create a logged model": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.create_logged_model(s, model=o.model, actor=a),
    ),
    "finalize a logged model": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.finalize_logged_model(
            s, logged_model=o.logged_model, status_name="READY", actor=a
        ),
    ),
    "tag a logged model": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.set_tags(
            s, logged_model=o.logged_model, tags={"k": "v"}, actor=a
        ),
    ),
    "delete a logged model's tag": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.delete_tag(s, logged_model=o.logged_model, key="k", actor=a),
    ),
    "log a logged model's params": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.log_params(
            s, logged_model=o.logged_model, params={"k": "v"}, actor=a
        ),
    ),
    "delete a logged model": (
        Role.DEVELOPER,
        lambda s, o, a: logged_models.delete_logged_model(s, logged_model=o.logged_model, actor=a),
    ),
}


async def _owned(session: AsyncSession, visibility: Visibility) -> Owned:
    project = await projects.create_project(session, path="guarded", visibility=visibility)
    model = await models.create_model(
        session, project=project, display_name="Churn", metadata={"team": "a"}, actor=OPERATOR
    )
    version = await versions.create_version(session, model=model, actor=OPERATOR)
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    logged_model = await logged_models.create_logged_model(session, model=model, actor=OPERATOR)
    return Owned(project, model, version, candidate, logged_model)


async def _member(session: AsyncSession, project: Project, role: Role) -> Actor:
    user = await users.create_user(session, username=f"a-{role.name.lower()}")
    await projects.set_member(session, project=project, user=user, role=role, actor=OPERATOR)
    return Actor(user_id=user.id, username=user.username, is_admin=False)


async def _refusal(session: AsyncSession, change: Change, owned: Owned, actor: Actor | None) -> str:
    with pytest.raises(DomainError) as refused:
        await change(session, owned, actor)
    return f"{type(refused.value).__name__}: {refused.value.message}"


@pytest.mark.parametrize("name", list(CHANGES))
async def test_a_service_change_refuses_whom_the_policy_refuses(
    session: AsyncSession, name: str
) -> None:
    least, change = CHANGES[name]
    owned = await _owned(session, Visibility.PRIVATE)
    below = Role(least - 10)
    member_below = await _member(session, owned.project, below)
    stranger = await users.create_user(session, username="outsider")
    outsider = Actor(user_id=stranger.id, username=stranger.username, is_admin=False)
    read_only_admin = Actor(
        user_id=None, username="reader", is_admin=True, scopes=frozenset({SCOPE_READ_API})
    )
    assert await _refusal(session, change, owned, member_below) == (
        f"{ForbiddenError.__name__}: this needs the {least.name.lower()} role or higher "
        "in 'guarded'"
    )
    assert await _refusal(session, change, owned, read_only_admin) == (
        f"{ForbiddenError.__name__}: the access token's read_api scope allows reading only"
    )
    assert await _refusal(session, change, owned, outsider) == (
        f"{NotFoundError.__name__}: Project 'guarded' does not exist"
    )
    assert await _refusal(session, change, owned, None) == (
        f"{UnauthenticatedError.__name__}: authentication is required"
    )


async def test_an_anonymous_caller_may_read_a_public_project_but_change_nothing(
    session: AsyncSession,
) -> None:
    owned = await _owned(session, Visibility.PUBLIC)
    messages = {await _refusal(session, change, owned, None) for _, change in CHANGES.values()}
    assert messages == {
        f"{UnauthenticatedError.__name__}: authentication is required to make changes"
    }
