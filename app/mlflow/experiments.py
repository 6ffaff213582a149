"""MLflow experiments: our models that are experiments, addressed by their project-scoped
iid. A model created through the registry alone is no experiment: it is not found or
listed here until an experiment is created under its name, which makes it one.

Deleting an experiment deletes its face and soft-deletes its runs, as MLflow's store
does; restoring it brings both back. A model that is also registered stays in the
registry meanwhile (app/services/models.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.mlflow import protocol
from app.mlflow.call import Call, Endpoint, view_states
from app.models import LifecycleState, Model, ModelMetadata, Project
from app.search import paging
from app.services import key_values, models
from app.services.policy import Operation


def experiment_iid(value: str) -> int:
    try:
        iid = int(value)
        if not 0 <= iid < 2**63:
            raise ValueError("out of range")
        return iid
    except ValueError:
        raise InvalidValueError(
            f"Invalid experiment ID '{value}': experiment IDs are integers", field="experiment_id"
        ) from None


async def find_experiment(
    session: AsyncSession, project: Project, experiment_id: str, *, include_deleted: bool = True
) -> Model:
    try:
        return await models.get_experiment(
            session,
            project=project,
            iid=experiment_iid(experiment_id),
            include_deleted=include_deleted,
        )
    except NotFoundError:
        raise NotFoundError(
            f"No Experiment with id={experiment_id} exists", field="experiment_id"
        ) from None


def _experiment(model: Model, tags: dict[str, str]) -> dict[str, Any]:
    """MLflow's Experiment, whose lifecycle stage is the experiment face's own."""
    body = protocol.experiment(model, tags)
    body["lifecycle_stage"] = protocol.LIFECYCLE[models.experiment_state(model)]
    return body


async def render(session: AsyncSession, model: Model) -> dict[str, Any]:
    tags = await key_values.read(session, ModelMetadata, owner_id=model.id)
    return _experiment(model, tags)


def check_artifact_location(requested: str | None, model: Model) -> None:
    """Artifacts live in this server's packages, reached through its proxy at the
    experiment's `mlflow-artifacts:/<id>`: a client's `artifact_location` may be absent,
    empty or exactly that; any other place would be silently not used, so it is refused."""
    assigned = protocol.experiment_artifact_location(model)
    if requested and requested != assigned:
        raise InvalidValueError(
            f"Invalid artifact_location '{requested[:200]}': this server stores every "
            "experiment's artifacts itself, behind its artifact proxy "
            f"('{assigned}' for this one); omit artifact_location",
            field="artifact_location",
        )


async def create(call: Call) -> dict[str, Any]:
    name = call.required("name")
    artifact_location = call.string("artifact_location")
    tags = dict(call.key_values("tags"))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        try:
            model = await models.create_experiment(
                session, project=project, display_name=name, metadata=tags, actor=call.actor
            )
        except AlreadyExistsError:
            raise AlreadyExistsError(
                f"Experiment(name={name}) already exists. Error: an experiment with this name "
                "exists in the project",
                field="name",
            ) from None
        # Checked against the id just assigned; refusing rolls the creation back.
        check_artifact_location(artifact_location, model)
    return {"experiment_id": str(model.iid)}


async def get(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id)
        return {"experiment": await render(session, model)}


async def get_by_name(call: Call) -> dict[str, Any]:
    name = call.required("experiment_name")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        try:
            model = await models.get_experiment(
                session, project=project, display_name=name, include_deleted=True
            )
        except NotFoundError:
            raise NotFoundError(f"Could not find experiment with name {name}") from None
        return {"experiment": await render(session, model)}


async def update(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    new_name = call.string("new_name")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        if new_name is not None:
            await models.update_model(session, model=model, display_name=new_name, actor=call.actor)
    return {}


async def delete(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        await models.delete_model(session, model=model, actor=call.actor)
    return {}


async def restore(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id)
        # MLflow's store looks among deleted experiments only.
        if models.experiment_state(model) is not LifecycleState.DELETED:
            raise NotFoundError(
                f"No Experiment with id={experiment_id} exists", field="experiment_id"
            )
        await models.restore_model(session, model=model, actor=call.actor)
    return {}


async def set_tag(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    key = call.required("key")
    value = call.string("value", default="") or ""
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        await models.set_model_metadata(session, model=model, items={key: value}, actor=call.actor)
    return {}


async def delete_tag(call: Call) -> dict[str, Any]:
    experiment_id = call.required("experiment_id")
    key = call.required("key")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_experiment(session, project, experiment_id, include_deleted=False)
        await models.delete_model_metadata(session, model=model, name=key, actor=call.actor)
    return {}


async def search(call: Call) -> dict[str, Any]:
    states = view_states(call, "view_type")
    page = call.page(
        default=paging.SEARCH_MAX_RESULTS_DEFAULT,
        threshold=paging.SEARCH_MAX_RESULTS_THRESHOLD,
    )
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        shown, token = await models.search_experiments(
            session,
            project=project,
            states=states,
            filter_string=call.string("filter"),
            order_by=call.strings("order_by"),
            page=page,
        )
        tags = await models.metadata_of(session, model_ids=[row.id for row in shown])
    body: dict[str, Any] = {"experiments": [_experiment(row, tags[row.id]) for row in shown]}
    if token:
        body["next_page_token"] = token
    return body


ENDPOINTS: list[Endpoint] = [
    ("POST", "/mlflow/experiments/create", create),
    ("GET", "/mlflow/experiments/get", get),
    ("GET", "/mlflow/experiments/get-by-name", get_by_name),
    ("POST", "/mlflow/experiments/update", update),
    ("POST", "/mlflow/experiments/delete", delete),
    ("POST", "/mlflow/experiments/restore", restore),
    ("POST", "/mlflow/experiments/set-experiment-tag", set_tag),
    ("POST", "/mlflow/experiments/delete-experiment-tag", delete_tag),
    ("POST", "/mlflow/experiments/search", search),
    ("GET", "/mlflow/experiments/search", search),
]
