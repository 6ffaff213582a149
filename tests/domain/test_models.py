"""The model rules: slugs from free-text names, uniqueness per project, soft delete."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.models import LifecycleState, Project
from app.services import models, projects
from app.services.actor import OPERATOR
from app.services.validation import slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("My Experiment", "my_experiment"),
        ("  spaced   out  ", "spaced_out"),
        ("Résumé Classifier v2.1", "resume_classifier_v2.1"),
        ("fraud-detector", "fraud-detector"),
        ("__weird__name__", "weird_name"),
        ("!!!", "model"),
    ],
)
def test_slugify_turns_free_text_into_a_strict_slug(text: str, slug: str) -> None:
    assert slugify(text) == slug


async def test_the_default_project_has_the_default_model_as_iid_zero(
    session: AsyncSession, project: Project
) -> None:
    default = await models.get_model(session, project=project, iid=0)
    assert (default.name, default.display_name) == ("default", "Default")


async def test_creating_a_model_derives_its_slug_and_numbers_it_in_the_project(
    session: AsyncSession, project: Project
) -> None:
    first = await models.create_model(
        session, project=project, display_name="My Experiment", actor=OPERATOR
    )
    second = await models.create_model(
        session, project=project, display_name="Other one", actor=OPERATOR
    )
    assert (first.iid, first.name, first.display_name) == (1, "my_experiment", "My Experiment")
    assert (second.iid, second.name) == (2, "other_one")


async def test_slug_collisions_get_the_first_free_numeric_suffix(
    session: AsyncSession, project: Project
) -> None:
    names = [
        (
            await models.create_model(session, project=project, display_name=text, actor=OPERATOR)
        ).name
        for text in ("My Model", "my model", "MY-MODEL?", "My  Model")
    ]
    assert names == ["my_model", "my_model_2", "my-model", "my_model_3"]


async def test_display_names_are_unique_per_project(
    session: AsyncSession, project: Project
) -> None:
    await models.create_model(session, project=project, display_name="Churn", actor=OPERATOR)
    with pytest.raises(AlreadyExistsError):
        await models.create_model(session, project=project, display_name="Churn", actor=OPERATOR)


async def test_the_same_name_may_exist_in_two_projects(
    session: AsyncSession, project: Project
) -> None:
    other = await projects.create_project(session, path="team-b")
    mine = await models.create_model(session, project=project, display_name="Churn", actor=OPERATOR)
    theirs = await models.create_model(session, project=other, display_name="Churn", actor=OPERATOR)
    assert (mine.name, theirs.name) == ("churn", "churn")
    assert (mine.iid, theirs.iid) == (1, 1)


async def test_an_explicit_name_must_be_a_free_strict_slug(
    session: AsyncSession, project: Project
) -> None:
    await models.create_model(
        session, project=project, display_name="A", name="fraud", actor=OPERATOR
    )
    with pytest.raises(AlreadyExistsError):
        await models.create_model(
            session, project=project, display_name="B", name="fraud", actor=OPERATOR
        )
    for bad in ("Fraud", "fraud model", "-fraud", "fraud_", "x" * 256, ""):
        with pytest.raises(InvalidValueError):
            await models.create_model(
                session, project=project, display_name="C", name=bad, actor=OPERATOR
            )


async def test_empty_display_names_are_refused(session: AsyncSession, project: Project) -> None:
    with pytest.raises(InvalidValueError):
        await models.create_model(session, project=project, display_name="   ", actor=OPERATOR)


async def test_renaming_keeps_the_slug_and_refuses_a_taken_display_name(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session, project=project, display_name="Churn", actor=OPERATOR
    )
    await models.create_model(session, project=project, display_name="Fraud", actor=OPERATOR)
    await models.update_model(session, model=model, display_name="Churn v2", actor=OPERATOR)
    assert (model.display_name, model.name) == ("Churn v2", "churn")
    with pytest.raises(AlreadyExistsError):
        await models.update_model(session, model=model, display_name="Fraud", actor=OPERATOR)


async def test_a_deleted_model_is_hidden_until_restored(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session, project=project, display_name="Churn", actor=OPERATOR
    )
    await models.delete_model(session, model=model, actor=OPERATOR)
    with pytest.raises(NotFoundError):
        await models.get_model(session, project=project, name="churn")
    found = await models.get_model(session, project=project, name="churn", include_deleted=True)
    assert found.state is LifecycleState.DELETED
    await models.restore_model(session, model=model, actor=OPERATOR)
    assert (await models.get_model(session, project=project, iid=model.iid)).id == model.id


async def test_the_default_model_cannot_be_deleted(session: AsyncSession, project: Project) -> None:
    default = await models.get_model(session, project=project, iid=0)
    with pytest.raises(InvalidValueError):
        await models.delete_model(session, model=default, actor=OPERATOR)


async def test_model_metadata_is_replaced_by_key_and_deletable(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session,
        project=project,
        display_name="Churn",
        metadata={"team": "a", "task": "clf"},
        actor=OPERATOR,
    )
    await models.set_model_metadata(session, model=model, items={"team": "b"}, actor=OPERATOR)
    assert await models.get_model_metadata(session, model=model) == {"task": "clf", "team": "b"}
    await models.delete_model_metadata(session, model=model, name="task", actor=OPERATOR)
    assert await models.get_model_metadata(session, model=model) == {"team": "b"}
    with pytest.raises(NotFoundError):
        await models.delete_model_metadata(session, model=model, name="task", actor=OPERATOR)


async def test_list_models_shows_registered_ones_on_request(
    session: AsyncSession, project: Project
) -> None:
    await models.create_model(
        session, project=project, display_name="Experiment only", actor=OPERATOR
    )
    await models.create_model(
        session, project=project, display_name="Registry", registered=True, actor=OPERATOR
    )
    everything = await models.list_models(session, project=project)
    registered = await models.list_models(session, project=project, registered_only=True)
    assert [m.display_name for m in everything] == ["Default", "Experiment only", "Registry"]
    assert [m.display_name for m in registered] == ["Registry"]


async def test_project_paths_are_validated_and_unique(
    session: AsyncSession, project: Project
) -> None:
    with pytest.raises(AlreadyExistsError):
        await projects.create_project(session, path="default")
    for bad in ("Team", "-team", "team/a", "", "t" * 101):
        with pytest.raises(InvalidValueError):
            await projects.create_project(session, path=bad)
    # The first segments of the server's own addresses are no project's page.
    for taken in ("api", "graphql", "static", "projects", "metrics"):
        with pytest.raises(InvalidValueError, match=f"'{taken}' is taken by the server's own"):
            await projects.create_project(session, path=taken)


async def test_concurrent_creations_get_distinct_iids_and_slugs(database: Database) -> None:
    async with database.session() as session:
        project = await projects.get_default_project(session)

    async def create(index: int) -> tuple[int, str]:
        async with database.session() as session:
            model = await models.create_model(
                session, project=project, display_name=f"Same Name {'!' * index}", actor=OPERATOR
            )
            return model.iid, model.name

    created = await asyncio.gather(*(create(index) for index in range(8)))
    assert sorted(iid for iid, _ in created) == list(range(1, 9))
    assert sorted(name for _, name in created) == ["same_name"] + [
        f"same_name_{n}" for n in range(2, 9)
    ]
