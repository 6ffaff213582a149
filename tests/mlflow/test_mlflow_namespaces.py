"""MLflow's two namespaces on one model, through the real `mlflow` client against a live
modelreg: an experiment and a registered model may share a name either way round, each
API lists only its own kind, deleting a registered model frees its name at once and
leaves nothing of its versions behind, and each face is deleted without the other."""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Experiment, ViewType
from mlflow.exceptions import MlflowException

from app.db import Database
from app.models import Model, ModelVersion, Package, PackageFile
from app.storage.local import LocalArtifactStore
from tests.access.test_one_rule_per_operation import files_url
from tests.clients import bearer, jobs_settled
from tests.live_server import LiveServer

MODELS = """
query($search: String!) {
  project(path: "default") {
    models(search: $search) { edges { node { displayName registered } } }
  }
}
"""


def unique(prefix: str) -> str:
    """A name no other test of the module (sharing the server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def experiment_names(client: MlflowClient, name: str, view_type: int) -> list[str]:
    found = client.search_experiments(view_type=view_type, filter_string=f"name = '{name}'")
    return [experiment.name for experiment in found]


def experiment_named(client: MlflowClient, name: str) -> Experiment:
    found = client.get_experiment_by_name(name)
    assert found is not None, name
    return found


def run_with_metric(client: MlflowClient, experiment_id: str) -> str:
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.5, step=1)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def test_a_registered_model_and_an_experiment_share_a_name_either_way_round(
    server: LiveServer, client: MlflowClient
) -> None:
    registered_first = unique("registered-first")
    client.create_registered_model(registered_first, description="the registry's")
    experiment_id = client.create_experiment(registered_first)
    experiment = client.get_experiment(experiment_id)
    assert (experiment.name, experiment.lifecycle_stage) == (registered_first, "active")
    assert client.get_registered_model(registered_first).description == "the registry's"

    experiment_first = unique("experiment-first")
    first_id = client.create_experiment(experiment_first)
    client.create_registered_model(experiment_first)
    assert experiment_named(client, experiment_first).experiment_id == first_id
    assert client.get_registered_model(experiment_first).name == experiment_first

    # GraphQL shows one model for both faces.
    for name in (registered_first, experiment_first):
        models = server.ask(MODELS, search=name)["project"]["models"]["edges"]
        assert [edge["node"] for edge in models] == [{"displayName": name, "registered": True}]

    # Each namespace still refuses its own names twice.
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS"):
        client.create_experiment(registered_first)
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS"):
        client.create_registered_model(experiment_first)


async def test_experiment_reads_find_no_registered_only_model(
    server: LiveServer, client: MlflowClient
) -> None:
    name = unique("registry-only")
    client.create_registered_model(name)
    assert experiment_names(client, name, ViewType.ALL) == []
    assert client.get_experiment_by_name(name) is None
    assert [model.name for model in client.search_registered_models(f"name = '{name}'")] == [name]
    iid = await _model_iid(server, name)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_experiment(str(iid))

    # Creating the experiment makes the same model one, under its own id.
    assert client.create_experiment(name) == str(iid)
    assert experiment_names(client, name, ViewType.ACTIVE_ONLY) == [name]


async def _model_iid(server: LiveServer, name: str) -> int:
    database = Database(server.database_url)
    try:
        async with database.session(read_only=True) as session:
            iid = await session.scalar(sa.select(Model.iid).where(Model.display_name == name))
    finally:
        await database.dispose()
    assert iid is not None
    return iid


async def test_deleting_a_registered_model_frees_its_name_and_leaves_no_version_behind(
    server: LiveServer, client: MlflowClient
) -> None:
    name = unique("recreated")
    client.create_registered_model(name, tags={"team": "vision"})
    client.create_model_version(name, "s3://bucket/model")
    client.set_registered_model_alias(name, "champion", "1")
    database = Database(server.database_url)
    store = LocalArtifactStore(server.log_path.parent / "data" / "artifacts")
    http = httpx.AsyncClient(headers=bearer(server.admin_token), timeout=30)
    try:
        async with database.session(read_only=True) as session:
            old = await session.scalar(
                sa.select(ModelVersion).join(Model).where(Model.display_name == name)
            )
        assert old is not None
        for path in ("weights.bin", "config.json"):
            uploaded = await http.put(files_url(server, old.id, path), content=b"old")
            assert uploaded.status_code == 201, uploaded.text
        await jobs_settled(database)
        async with database.session(read_only=True) as session:
            package_id = (await session.get_one(ModelVersion, old.id)).package_id
            keys = set(
                await session.scalars(
                    sa.select(PackageFile.storage_key).where(PackageFile.package_id == package_id)
                )
            )
        assert package_id is not None and len(keys) == 2

        client.delete_registered_model(name)

        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
            client.get_registered_model(name)
        # The name is free at once, for a model with nothing of the old one.
        again = client.create_registered_model(name)
        assert (again.tags, again.aliases, again.latest_versions) == ({}, {}, [])
        assert client.search_model_versions(f"name = '{name}'") == []
        assert client.create_model_version(name, "s3://bucket/other").version == "1"

        await jobs_settled(database)
        async with database.session(read_only=True) as session:
            left = {
                "versions": await session.scalar(
                    sa.select(sa.func.count()).where(ModelVersion.id == old.id)
                ),
                "models": await session.scalar(
                    sa.select(sa.func.count()).where(Model.id == old.model_id)
                ),
                "packages": await session.scalar(
                    sa.select(sa.func.count()).where(Package.id == package_id)
                ),
                "files": await session.scalar(
                    sa.select(sa.func.count()).where(PackageFile.package_id == package_id)
                ),
            }
        assert left == {"versions": 0, "models": 0, "packages": 0, "files": 0}
        assert [key for key in keys if await store.exists(key)] == []
    finally:
        await http.aclose()
        await database.dispose()


async def test_unregistering_an_experiment_keeps_its_runs_and_their_metrics(
    server: LiveServer, client: MlflowClient
) -> None:
    name = unique("unregistered")
    experiment_id = client.create_experiment(name)
    run_id = run_with_metric(client, experiment_id)
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", "1")

    client.delete_registered_model(name)

    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)
    assert client.search_model_versions(f"name = '{name}'") == []
    experiment = client.get_experiment(experiment_id)
    assert (experiment.name, experiment.lifecycle_stage) == (name, "active")
    run = client.get_run(run_id)
    assert (run.info.lifecycle_stage, run.data.metrics) == ("active", {"loss": 0.5})
    assert [point.value for point in client.get_metric_history(run_id, "loss")] == [0.5]
    database = Database(server.database_url)
    try:
        await jobs_settled(database)
    finally:
        await database.dispose()
    assert client.get_run(run_id).data.metrics == {"loss": 0.5}

    # Registering the name again registers the experiment afresh, with no old version.
    again = client.create_registered_model(name)
    assert (again.aliases, again.latest_versions) == ({}, [])
    assert experiment_named(client, name).experiment_id == experiment_id


def test_deleting_the_experiment_of_a_registered_model_keeps_the_registry_face(
    client: MlflowClient,
) -> None:
    name = unique("both-faces")
    experiment_id = client.create_experiment(name)
    run_id = run_with_metric(client, experiment_id)
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)

    client.delete_experiment(experiment_id)

    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert experiment_names(client, name, ViewType.ACTIVE_ONLY) == []
    assert experiment_names(client, name, ViewType.DELETED_ONLY) == [name]
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.delete_experiment(experiment_id)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.create_run(experiment_id)
    registered = client.get_registered_model(name)
    assert [version.version for version in registered.latest_versions] == ["1"]
    assert client.get_model_version(name, "1").run_id == run_id

    client.restore_experiment(experiment_id)

    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    # As MLflow's store: only a deleted experiment is found to restore.
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.restore_experiment(experiment_id)
    run = client.get_run(run_id)
    assert (run.info.lifecycle_stage, run.data.metrics) == ("active", {"loss": 0.5})
    assert client.get_registered_model(name).name == name


def test_a_deleted_experiment_of_a_model_unregistered_since_can_be_restored(
    client: MlflowClient,
) -> None:
    name = unique("deleted-then-unregistered")
    experiment_id = client.create_experiment(name)
    client.create_registered_model(name)
    client.delete_experiment(experiment_id)
    client.delete_registered_model(name)

    assert experiment_names(client, name, ViewType.DELETED_ONLY) == [name]
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)
    client.restore_experiment(experiment_id)
    assert experiment_named(client, name).lifecycle_stage == "active"
