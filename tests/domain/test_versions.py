"""The version rules: sequential numbers beside semvers, promotion of a candidate,
aliases as MLflow allows them, and stage transitions."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import CandidateStatus, Model, Project, VersionStage
from app.services import candidates, models, versions
from app.services.actor import OPERATOR
from app.services.validation import semver


@pytest.fixture
async def model(session: AsyncSession, project: Project) -> Model:
    return await models.create_model(session, project=project, display_name="Churn", actor=OPERATOR)


@pytest.mark.parametrize(
    "value", ["0.0.1", "1.2.3", "10.20.30", "1.0.0-rc.1", "1.0.0-alpha.beta+exp.sha.5114f85"]
)
def test_semantic_versions_are_accepted(value: str) -> None:
    assert semver(value) == value


@pytest.mark.parametrize(
    "value", ["1", "1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3.4", "1.2.3-01", ""]
)
def test_other_strings_are_not_semantic_versions(value: str) -> None:
    with pytest.raises(InvalidValueError):
        semver(value)


async def test_versions_number_sequentially_with_a_default_semver(
    session: AsyncSession, model: Model
) -> None:
    first = await versions.create_version(session, model=model, actor=OPERATOR)
    second = await versions.create_version(session, model=model, version="2.1.0", actor=OPERATOR)
    third = await versions.create_version(session, model=model, actor=OPERATOR)
    assert [(v.number, v.version) for v in (first, second, third)] == [
        (1, "1.0.0"),
        (2, "2.1.0"),
        (3, "3.0.0"),
    ]
    assert model.registered
    by_semver = await versions.get_version(session, model=model, version="2.1.0")
    by_number = await versions.get_version(session, model=model, number=2)
    assert by_semver.id == by_number.id == second.id


async def test_a_semver_is_unique_per_model(
    session: AsyncSession, project: Project, model: Model
) -> None:
    await versions.create_version(session, model=model, version="1.0.0", actor=OPERATOR)
    with pytest.raises(AlreadyExistsError):
        await versions.create_version(session, model=model, version="1.0.0", actor=OPERATOR)
    other = await models.create_model(
        session, project=project, display_name="Fraud", actor=OPERATOR
    )
    assert (
        await versions.create_version(session, model=other, version="1.0.0", actor=OPERATOR)
    ).number == 1


async def test_an_invalid_semver_is_refused(session: AsyncSession, model: Model) -> None:
    with pytest.raises(InvalidValueError):
        await versions.create_version(session, model=model, version="1.0", actor=OPERATOR)


async def test_promoting_a_candidate_makes_it_the_versions_candidate(
    session: AsyncSession, model: Model
) -> None:
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    version = await versions.create_version(
        session, model=model, candidate=candidate, actor=OPERATOR
    )
    assert candidate.model_version_id == version.id
    found = await versions.get_version_candidate(session, version=version)
    assert found.id == candidate.id
    with pytest.raises(AlreadyExistsError):
        await versions.create_version(session, model=model, candidate=candidate, actor=OPERATOR)


async def test_a_run_of_another_model_in_the_project_can_be_promoted(
    session: AsyncSession, project: Project, model: Model
) -> None:
    default = await models.get_model(session, project=project, iid=0)
    run = await candidates.create_candidate(session, model=default, actor=OPERATOR)
    version = await versions.create_version(session, model=model, candidate=run, actor=OPERATOR)
    assert (await versions.get_version_candidate(session, version=version)).id == run.id
    assert run.model_id == default.id


async def test_a_version_without_a_candidate_gets_a_fresh_one(
    session: AsyncSession, model: Model
) -> None:
    version = await versions.create_version(session, model=model, version="0.1.0", actor=OPERATOR)
    candidate = await versions.get_version_candidate(session, version=version)
    assert candidate.model_id == model.id
    assert candidate.status is CandidateStatus.FINISHED


async def test_aliases_point_at_one_version_and_move(session: AsyncSession, model: Model) -> None:
    one = await versions.create_version(session, model=model, actor=OPERATOR)
    two = await versions.create_version(session, model=model, actor=OPERATOR)
    await versions.set_alias(session, model=model, alias="champion", version=one, actor=OPERATOR)
    assert (await versions.get_version(session, model=model, alias="champion")).id == one.id
    await versions.set_alias(session, model=model, alias="champion", version=two, actor=OPERATOR)
    assert (await versions.get_version(session, model=model, alias="champion")).id == two.id
    assert await versions.get_aliases(session, version=one) == []
    assert await versions.get_aliases(session, version=two) == ["champion"]
    await versions.delete_alias(session, model=model, alias="champion", actor=OPERATOR)
    with pytest.raises(NotFoundError):
        await versions.get_version(session, model=model, alias="champion")


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v1", "V12", "", "has space", "a" * 256])
async def test_aliases_follow_mlflows_rules(
    session: AsyncSession, model: Model, alias: str
) -> None:
    version = await versions.create_version(session, model=model, actor=OPERATOR)
    with pytest.raises(InvalidValueError):
        await versions.set_alias(session, model=model, alias=alias, version=version, actor=OPERATOR)


async def test_moving_a_version_to_production_can_archive_the_previous_one(
    session: AsyncSession, model: Model
) -> None:
    one = await versions.create_version(session, model=model, actor=OPERATOR)
    two = await versions.create_version(session, model=model, actor=OPERATOR)
    three = await versions.create_version(session, model=model, actor=OPERATOR)
    await versions.update_version(
        session, version=one, stage=VersionStage.PRODUCTION, actor=OPERATOR
    )
    await versions.update_version(
        session, version=two, stage=VersionStage.PRODUCTION, actor=OPERATOR
    )
    await versions.update_version(
        session,
        version=three,
        stage=VersionStage.PRODUCTION,
        archive_existing_versions=True,
        actor=OPERATOR,
    )
    stages = {
        v.number: (await versions.get_version(session, model=model, number=v.number)).stage
        for v in (one, two, three)
    }
    assert stages == {
        1: VersionStage.ARCHIVED,
        2: VersionStage.ARCHIVED,
        3: VersionStage.PRODUCTION,
    }


async def test_deleting_a_version_unlinks_its_candidate_and_drops_its_aliases(
    session: AsyncSession, model: Model
) -> None:
    candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
    version = await versions.create_version(
        session, model=model, candidate=candidate, actor=OPERATOR
    )
    await versions.set_alias(session, model=model, alias="prod", version=version, actor=OPERATOR)
    await versions.destroy_version(session, version=version, actor=OPERATOR)
    await session.refresh(candidate)
    assert candidate.model_version_id is None
    with pytest.raises(NotFoundError):
        await versions.get_version(session, model=model, alias="prod")
    with pytest.raises(NotFoundError):
        await versions.get_version(session, model=model, number=1)
    # The number is not reused.
    assert (await versions.create_version(session, model=model, actor=OPERATOR)).number == 2


async def test_version_metadata_is_set_by_key(session: AsyncSession, model: Model) -> None:
    version = await versions.create_version(
        session, model=model, metadata={"framework": "sklearn"}, actor=OPERATOR
    )
    await versions.set_version_metadata(
        session, version=version, items={"framework": "xgb"}, actor=OPERATOR
    )
    assert await versions.get_version_metadata(session, version=version) == {"framework": "xgb"}
