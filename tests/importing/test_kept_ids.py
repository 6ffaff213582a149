"""What an import needs from the services: runs, logged models and versions that keep
the ids and numbers they had at the source, and refuse ones already given out."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExistsError, InvalidValueError
from app.models import Model, Project
from app.services import candidates, logged_models, models, versions
from app.services.actor import OPERATOR

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def model(session: AsyncSession, project: Project) -> Model:
    return await models.create_model(session, project=project, display_name="Moved", actor=OPERATOR)


async def test_a_candidate_keeps_the_run_id_it_had_once_only(
    session: AsyncSession, model: Model
) -> None:
    candidate = await candidates.create_candidate(session, model=model, eid=RUN_ID, actor=OPERATOR)
    assert candidate.eid == RUN_ID
    with pytest.raises(AlreadyExistsError, match=f"A run with id '{RUN_ID}' already exists"):
        await candidates.create_candidate(session, model=model, eid=RUN_ID, actor=OPERATOR)
    with pytest.raises(InvalidValueError, match="is not 1 to 32 letters"):
        await candidates.create_candidate(session, model=model, eid="../x", actor=OPERATOR)


async def test_a_logged_model_keeps_its_model_id_once_only(
    session: AsyncSession, model: Model
) -> None:
    kept = await logged_models.create_logged_model(
        session, model=model, eid="m-0a1b2c", actor=OPERATOR
    )
    assert (kept.eid, kept.name) == ("m-0a1b2c", "model-0a1b2c")
    with pytest.raises(AlreadyExistsError):
        await logged_models.create_logged_model(
            session, model=model, eid="m-0a1b2c", actor=OPERATOR
        )
    with pytest.raises(InvalidValueError):
        await logged_models.create_logged_model(session, model=model, eid="0a1b", actor=OPERATOR)


async def test_a_version_keeps_its_number_and_numbers_are_never_reused(
    session: AsyncSession, model: Model
) -> None:
    kept = await versions.create_version(session, model=model, number=3, actor=OPERATOR)
    assert (kept.number, kept.version) == (3, "3.0.0")
    following = await versions.create_version(session, model=model, actor=OPERATOR)
    assert (following.number, following.version) == (4, "4.0.0")
    await versions.destroy_version(session, version=following, actor=OPERATOR)
    for taken in (2, 3, 4):
        with pytest.raises(AlreadyExistsError, match=f"version number {taken} or a later"):
            await versions.create_version(session, model=model, number=taken, actor=OPERATOR)
    later = await versions.create_version(session, model=model, number=7, actor=OPERATOR)
    assert later.number == 7
