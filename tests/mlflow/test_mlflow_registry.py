"""MLflow's model registry through the real `mlflow` client against a live modelreg:
registered models (which are our models, experiments included), versions promoted from
runs, aliases, stages, tags, searches, download URIs, and MLflow's error codes."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from app.db import Database
from app.models import LoggedModel, Model, VersionStage
from app.services import candidates, models, projects, versions
from tests.live_server import LiveServer


def unique(prefix: str) -> str:
    """A name no other test of the module (sharing the server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(error: MlflowException) -> str:
    return str(error.error_code)


def call(
    server: LiveServer, method: str, path: str, body: Any = None, **params: Any
) -> httpx.Response:
    """One raw registry call, for what the client would not send."""
    return httpx.request(
        method,
        f"{server.url}/api/2.0/mlflow/{path}",
        headers={
            "Authorization": f"Bearer {server.admin_token}",
            # Raw bodies are malformed JSON, declared as JSON like the client's.
            **({"Content-Type": "application/json"} if isinstance(body, str | bytes) else {}),
        },
        params=params or None,
        content=body if isinstance(body, str | bytes) else None,
        json=None if isinstance(body, str | bytes) else body,
    )


def assert_error(response: httpx.Response, code: str, status: int) -> None:
    assert (response.status_code, response.json()["error_code"]) == (status, code), response.text


def finished_run(client: MlflowClient, experiment_name: str) -> str:
    """A finished run in the experiment (created when missing); its run id."""
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(experiment_name)
    )
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.8)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


# --- Registered models --------------------------------------------------------------------


def test_registered_models_are_created_read_renamed_updated_and_deleted(
    client: MlflowClient,
) -> None:
    name = unique("Churn Model")
    created = client.create_registered_model(
        name, tags={"team": "growth"}, description="predicts churn"
    )
    assert (created.name, created.description, created.tags) == (
        name,
        "predicts churn",
        {"team": "growth"},
    )
    assert created.latest_versions == [] and created.aliases == {}
    assert created.creation_timestamp > 0
    with pytest.raises(RestException) as raised:
        client.create_registered_model(name)
    assert error_code(raised.value) == "RESOURCE_ALREADY_EXISTS"
    assert f"Registered Model (name={name}) already exists." in raised.value.message

    renamed = unique("Churn Model v2")
    client.rename_registered_model(name, renamed)
    assert client.get_registered_model(renamed).name == renamed
    with pytest.raises(RestException) as raised:
        client.get_registered_model(name)
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    assert f"Registered Model with name={name} not found" in raised.value.message

    updated = client.update_registered_model(renamed, description="v2")
    assert updated.description == "v2"
    client.set_registered_model_tag(renamed, "owner", "ana")
    client.delete_registered_model_tag(renamed, "team")
    client.delete_registered_model_tag(renamed, "never-set")  # no error, as MLflow
    fetched = client.get_registered_model(renamed)
    assert (fetched.description, fetched.tags) == ("v2", {"owner": "ana"})
    # As in MLflow, a registered model is no experiment.
    assert client.get_experiment_by_name(renamed) is None

    client.delete_registered_model(renamed)
    with pytest.raises(RestException) as raised:
        client.get_registered_model(renamed)
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    # As in MLflow, the name is free at once, for a new model.
    again = client.create_registered_model(renamed)
    assert (again.description, again.tags) == ("", {})


def test_registering_the_name_of_an_experiment_registers_that_model(
    client: MlflowClient,
) -> None:
    name = unique("Fraud Experiments")
    run_id = finished_run(client, name)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    assert client.search_registered_models(f"name = '{name}'") == []
    with pytest.raises(RestException) as raised:
        client.get_registered_model(name)
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"

    registered = client.create_registered_model(name, tags={"kind": "fraud"})
    assert (registered.name, registered.tags) == (name, {"kind": "fraud"})
    # Same model: the experiment keeps its id and its runs, and shares the tags.
    again = client.get_experiment_by_name(name)
    assert again is not None and again.experiment_id == experiment.experiment_id
    assert again.tags == {"kind": "fraud"}
    assert client.get_run(run_id).info.experiment_id == experiment.experiment_id
    with pytest.raises(RestException) as raised:
        client.create_registered_model(name)
    assert error_code(raised.value) == "RESOURCE_ALREADY_EXISTS"

    version = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert (version.version, version.run_id) == ("1", run_id)


def test_search_registered_models_filters_orders_and_pages(client: MlflowClient) -> None:
    prefix = unique("search")
    names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    for name, team in zip(names, ["red", "blue", "red"], strict=True):
        client.create_registered_model(name, tags={"team": team})

    def found(filter_string: str, **options: Any) -> list[str]:
        return [m.name for m in client.search_registered_models(filter_string, **options)]

    assert found(f"name LIKE '{prefix}%'", order_by=["name DESC"]) == names[::-1]
    assert found(f"name LIKE '{prefix}%' AND tags.team = 'red'") == [names[0], names[2]]
    assert found(f"name LIKE '{prefix}%' AND tags.team != 'red'") == [names[1]]
    assert found(f"name ILIKE '{prefix.upper()}-B'") == [names[1]]
    assert found(f"name = '{names[0]}' AND tags.missing = 'x'") == []

    first = client.search_registered_models(f"name LIKE '{prefix}%'", max_results=2)
    assert [m.name for m in first] == names[:2] and first.token
    second = client.search_registered_models(
        f"name LIKE '{prefix}%'", max_results=2, page_token=first.token
    )
    assert [m.name for m in second] == names[2:] and not second.token

    # A model tagged as a prompt leaves model searches, as in MLflow.
    client.set_registered_model_tag(names[1], "mlflow.prompt.is_prompt", "true")
    assert found(f"name LIKE '{prefix}%'") == [names[0], names[2]]


# --- Versions -----------------------------------------------------------------------------


def test_versions_are_created_from_runs_and_without_them(client: MlflowClient) -> None:
    experiment = unique("Ranking Experiments")
    name = unique("Ranker")
    run_id = finished_run(client, experiment)
    client.create_registered_model(name)

    first = client.create_model_version(
        name, source=f"runs:/{run_id}/model", run_id=run_id, description="first"
    )
    assert (first.name, first.version, first.run_id, first.status) == (name, "1", run_id, "READY")
    assert (first.source, first.description, first.current_stage) == (
        f"runs:/{run_id}/model",
        "first",
        "None",
    )
    # The run stays where it was logged.
    assert client.get_run(run_id).info.experiment_id == (
        client.get_experiment_by_name(experiment).experiment_id  # type: ignore[union-attr]
    )

    second = client.create_model_version(name, source="s3://bucket/ranker/model")
    assert (second.version, second.source, second.status) == (
        "2",
        "s3://bucket/ranker/model",
        "READY",
    )
    assert second.run_id  # its own fresh candidate

    # MLflow lets one run back several versions; the run id still renders.
    third = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert (third.version, third.run_id, third.tags) == ("3", run_id, {})
    # A runs:/ source names its run on its own.
    other_run = finished_run(client, experiment)
    fourth = client.create_model_version(name, source=f"runs:/{other_run}/model")
    assert (fourth.version, fourth.run_id) == ("4", other_run)

    fetched = client.get_model_version(name, "1")
    assert (fetched.run_id, fetched.description) == (run_id, "first")
    client.update_model_version(name, "1", description="the first")
    assert client.get_model_version(name, "1").description == "the first"

    by_name = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in by_name) == [1, 2, 3, 4]
    # The run was registered twice (versions 1 and 3); both carry its id.
    by_run = client.search_model_versions(f"run_id = '{run_id}'")
    assert sorted((v.name, v.version) for v in by_run) == [(name, "1"), (name, "3")]
    newest = client.search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
    )
    assert [v.version for v in newest] == ["4"] and newest.token
    ordered = client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    assert [v.version for v in ordered] == ["1", "2", "3", "4"]

    client.delete_model_version(name, "2")
    with pytest.raises(RestException) as raised:
        client.get_model_version(name, "2")
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    assert client.create_model_version(name, source="s3://bucket/x").version == "5"

    model = client.get_registered_model(name)
    assert [v.version for v in model.latest_versions] == ["5"]


def test_aliases_point_at_versions(server: LiveServer, client: MlflowClient) -> None:
    name = unique("Aliased")
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source="s3://bucket/model")

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version(name, "1").aliases == ["champion"]
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}

    client.set_registered_model_alias(name, "champion", "2")  # moves
    moved = client.get_model_version_by_alias(name, "champion")
    assert (moved.version, sorted(moved.aliases)) == ("2", ["challenger", "champion"])
    assert client.get_model_version(name, "1").aliases == []
    # `latest` is the highest version, and reserved.
    assert client.get_model_version_by_alias(name, "latest").version == "3"
    # Checked by the server, not only by the client.
    for reserved in ("latest", "LATEST", "v1", "V7", "bad alias!", ""):
        response = call(
            server,
            "POST",
            "registered-models/alias",
            {"name": name, "alias": reserved, "version": "1"},
        )
        assert_error(response, "INVALID_PARAMETER_VALUE", 400)
    with pytest.raises(RestException) as raised:
        client.set_registered_model_alias(name, "ghost", "9")
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as raised:
        client.get_model_version_by_alias(name, "nobody")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"  # as MLflow

    client.delete_registered_model_alias(name, "champion")
    client.delete_registered_model_alias(name, "champion")  # no error, as MLflow
    assert client.get_registered_model(name).aliases == {"challenger": "2"}
    # Deleting the version takes its aliases along.
    client.delete_model_version(name, "2")
    assert client.get_registered_model(name).aliases == {}
    assert client.get_model_version_by_alias(name, "latest").version == "3"

    empty = unique("No Versions")
    client.create_registered_model(empty)
    with pytest.raises(RestException) as raised:
        client.get_model_version_by_alias(empty, "latest")
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.filterwarnings("ignore:.*stages.*:FutureWarning")
def test_stage_transitions_and_latest_versions(server: LiveServer, client: MlflowClient) -> None:
    name = unique("Staged")
    client.create_registered_model(name)
    for _ in range(4):
        client.create_model_version(name, source="s3://bucket/model")

    assert client.transition_model_version_stage(name, "1", "staging").current_stage == "Staging"
    client.transition_model_version_stage(name, "2", "Production")
    client.transition_model_version_stage(name, "3", "PRODUCTION")
    assert client.get_model_version(name, "2").current_stage == "Production"
    promoted = client.transition_model_version_stage(
        name, "4", "production", archive_existing_versions=True
    )
    assert promoted.current_stage == "Production"
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name='{name}'")}
    assert stages == {"1": "Staging", "2": "Archived", "3": "Archived", "4": "Production"}

    assert [v.version for v in client.get_latest_versions(name, ["Production"])] == ["4"]
    assert [v.version for v in client.get_latest_versions(name, ["staging", "archived"])] == [
        "1",
        "3",
    ]
    assert [v.version for v in client.get_latest_versions(name)] == ["1", "3", "4"]
    by_get = call(
        server,
        "GET",
        "registered-models/get-latest-versions",
        name=name,
        stages=["Production", "staging"],
    )
    assert [v["version"] for v in by_get.json()["model_versions"]] == ["1", "4"]
    latest = client.get_registered_model(name).latest_versions
    assert {(v.version, v.current_stage) for v in latest} == {
        ("1", "Staging"),
        ("3", "Archived"),
        ("4", "Production"),
    }

    with pytest.raises(RestException) as raised:
        client.transition_model_version_stage(name, "1", "Retired")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException) as raised:
        client.transition_model_version_stage(name, "1", "Archived", archive_existing_versions=True)
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException) as raised:
        client.get_latest_versions(name, ["Retired"])
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"


def test_version_tags_and_the_semver_tag(server: LiveServer, client: MlflowClient) -> None:
    name = unique("Tagged")
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source="s3://bucket/model", tags={"modelreg.semver": "2.1.0-rc.1", "k": "v"}
    )
    assert (version.version, version.tags) == ("1", {"k": "v"})
    client.set_model_version_tag(name, "1", "reviewed", "yes")
    client.delete_model_version_tag(name, "1", "k")
    client.delete_model_version_tag(name, "1", "k")  # no error, as MLflow
    assert client.get_model_version(name, "1").tags == {"reviewed": "yes"}
    assert [v.version for v in client.search_model_versions("tags.reviewed = 'yes'")] == ["1"]

    # The semver addresses the version too.
    by_semver = call(server, "GET", "model-versions/get", name=name, version="2.1.0-rc.1")
    assert by_semver.json()["model_version"]["version"] == "1"
    assert client.create_model_version(name, source="s3://bucket/model").version == "2"

    for tags in ({"modelreg.semver": "two"}, {"modelreg.semver": "2.1.0-rc.1"}):
        with pytest.raises(RestException) as raised:
            client.create_model_version(name, source="s3://bucket/model", tags=tags)
        expected = (
            "INVALID_PARAMETER_VALUE"
            if tags["modelreg.semver"] == "two"
            else ("RESOURCE_ALREADY_EXISTS")
        )
        assert error_code(raised.value) == expected
    for reserved in ("modelreg.semver", "mlflow.source.run_id"):
        with pytest.raises(RestException) as raised:
            client.set_model_version_tag(name, "1", reserved, "3.0.0")
        assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException) as raised:
        client.set_model_version_tag(name, "1", "bad/../key", "x")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"


def test_download_uris_resolve_sources_to_artifacts(client: MlflowClient) -> None:
    experiment = unique("Download Experiments")
    name = unique("Downloadable")
    run_id = finished_run(client, experiment)
    experiment_id = client.get_run(run_id).info.experiment_id
    client.create_registered_model(name)
    client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version(name, source="s3://bucket/model")
    client.create_model_version(name, source=f"mlflow-artifacts:/{experiment_id}/x/artifacts")
    client.create_model_version(name, source=f"runs:/{run_id}")

    assert client.get_model_version_download_uri(name, "1") == (
        f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model"
    )
    assert client.get_model_version_download_uri(name, "2") == "s3://bucket/model"
    assert client.get_model_version_download_uri(name, "3") == (
        f"mlflow-artifacts:/{experiment_id}/x/artifacts"
    )
    assert client.get_model_version_download_uri(name, "4") == (
        f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    )

    # Copying a version into another model references it; the download URI follows.
    copy_name = unique("Production Copy")
    copied = client.copy_model_version(f"models:/{name}/1", copy_name)
    assert (copied.name, copied.version, copied.source, copied.run_id) == (
        copy_name,
        "1",
        f"models:/{name}/1",
        run_id,
    )
    assert client.get_model_version_download_uri(copy_name, "1") == (
        f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model"
    )
    client.set_registered_model_alias(name, "champion", "2")
    by_alias = client.create_model_version(copy_name, source=f"models:/{name}@champion")
    assert by_alias.source == f"models:/{name}/2"
    assert client.get_model_version_download_uri(copy_name, "2") == "s3://bucket/model"


async def test_logged_model_sources_resolve_to_the_logged_model(
    server: LiveServer, client: MlflowClient
) -> None:
    experiment = unique("Logged Model Experiments")
    name = unique("From Logged Model")
    run_id = finished_run(client, experiment)
    model_eid = f"m-{uuid.uuid4().hex}"
    database = Database(server.database_url)
    try:
        async with database.session() as session:
            project = await projects.get_default_project(session)
            run = await candidates.get_candidate(session, project=project, eid=run_id)
            session.add(
                LoggedModel(
                    project_id=project.id,
                    model_id=run.model_id,
                    eid=model_eid,
                    name="model",
                    source_candidate_id=run.id,
                )
            )
            experiment_iid = (await session.get_one(Model, run.model_id)).iid
    finally:
        await database.dispose()

    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"models:/{model_eid}", model_id=model_eid)
    assert (version.run_id, version.source) == (run_id, f"models:/{model_eid}")
    # The client does not read `model_id` back; the server sends it.
    rendered = call(server, "GET", "model-versions/get", name=name, version="1").json()
    assert rendered["model_version"]["model_id"] == model_eid
    assert client.get_model_version_download_uri(name, "1") == (
        f"mlflow-artifacts:/{experiment_iid}/models/{model_eid}/artifacts"
    )
    with pytest.raises(RestException) as raised:
        client.create_model_version(name, source="models:/m-0123456789abcdef0123456789abcdef")
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as raised:
        client.create_model_version(name, source=f"models:/{model_eid}", model_id="m-other")
    assert error_code(raised.value) == "INVALID_PARAMETER_VALUE"


@pytest.mark.filterwarnings("ignore:.*stages.*:FutureWarning")
async def test_versions_created_through_mlflow_are_seen_by_the_services(
    server: LiveServer, client: MlflowClient
) -> None:
    experiment = unique("Service Experiments")
    name = unique("Service Model")
    run_id = finished_run(client, experiment)
    client.create_registered_model(name)
    client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version(name, source="s3://bucket/model", tags={"modelreg.semver": "3.2.1"})
    client.transition_model_version_stage(name, "1", "Production")
    client.set_registered_model_alias(name, "champion", "1")

    database = Database(server.database_url)
    try:
        async with database.session(read_only=True) as session:
            project = await projects.get_default_project(session)
            model = await models.get_model(session, project=project, display_name=name)
            assert model.registered
            first = await versions.get_version(session, model=model, number=1)
            assert (first.version, first.stage, first.source) == (
                "1.0.0",
                VersionStage.PRODUCTION,
                f"runs:/{run_id}/model",
            )
            promoted = await versions.get_version_candidate(session, version=first)
            assert promoted.eid == run_id
            assert (await versions.get_version(session, model=model, alias="champion")).id == (
                first.id
            )
            # The run's candidate backs version 1; version 2 got a fresh one.
            second = await versions.get_version(session, model=model, number=2)
            fresh = await versions.get_version_candidate(session, version=second)
            assert fresh.eid != run_id and fresh.model_id == model.id
            assert await versions.get_version_metadata(session, version=second) == {
                "mlflow.source.run_id": run_id
            }
            chosen = await versions.get_version(session, model=model, version="3.2.1")
            assert chosen.number == 3
            assert await versions.get_version_metadata(session, version=chosen) == {}
    finally:
        await database.dispose()


# --- Errors -------------------------------------------------------------------------------


def test_bad_input_gets_mlflow_error_codes(server: LiveServer, client: MlflowClient) -> None:
    name = unique("Errors")
    taken = unique("Taken")
    client.create_registered_model(name)
    client.create_registered_model(taken)
    client.create_model_version(name, source="s3://bucket/model")
    run_id = finished_run(client, unique("Error Experiments"))

    def code_of(action: Any) -> str:
        with pytest.raises(MlflowException) as raised:
            action()
        return error_code(raised.value)

    missing = unique("Missing")
    assert code_of(lambda: client.get_registered_model(missing)) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.delete_registered_model(missing)) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.get_model_version(name, "7")) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.create_registered_model("a/b")) == "INVALID_PARAMETER_VALUE"
    assert code_of(lambda: client.rename_registered_model(name, taken)) == (
        "RESOURCE_ALREADY_EXISTS"
    )
    assert code_of(lambda: client.rename_registered_model(name, "x:y")) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert code_of(lambda: client.create_model_version(missing, "s3://b/m")) == (
        "RESOURCE_DOES_NOT_EXIST"
    )
    for source, source_run in [
        (f"runs:/{run_id}/model", "f" * 32),  # the source names another run
        ("/tmp/model", None),  # local paths are refused
        ("file:///tmp/model", None),
        ("s3://bucket/../secrets", None),
        ("runs://host/model", None),
        (f"models:/{missing}/1", None),
        ("models:/a/b/c", None),
    ]:
        expected = (
            "RESOURCE_DOES_NOT_EXIST"
            if source == f"models:/{missing}/1"
            else "INVALID_PARAMETER_VALUE"
        )
        assert (
            code_of(lambda s=source, r=source_run: client.create_model_version(name, s, run_id=r))
            == expected
        ), source
    assert code_of(lambda: client.search_registered_models("name = 'x' OR name = 'y'")) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert code_of(lambda: client.search_registered_models(order_by=["colour DESC"])) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert code_of(lambda: client.search_registered_models(max_results=5000)) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert code_of(lambda: client.search_model_versions("version_number > 'x'")) == (
        "INVALID_PARAMETER_VALUE"
    )
    assert code_of(lambda: client.search_model_versions("metrics.auc > 1")) == (
        "INVALID_PARAMETER_VALUE"
    )

    # What the client would not send.
    huge_offset = base64.urlsafe_b64encode(json.dumps({"offset": 10**30}).encode()).decode()
    for method, path, body, params in [
        ("POST", "registered-models/create", {}, {}),
        ("POST", "registered-models/create", {"name": "  "}, {}),
        ("POST", "registered-models/create", {"name": 5}, {}),
        ("POST", "registered-models/create", {"name": "x", "tags": {"a": "b"}}, {}),
        ("POST", "registered-models/create", "{not json", {}),
        ("POST", "registered-models/rename", {"name": name}, {}),
        ("GET", "model-versions/get", None, {"name": name, "version": "abc"}),
        ("GET", "model-versions/get", None, {"name": name, "version": "1.2"}),
        ("GET", "registered-models/get", None, {"name": "nul\x00name"}),
        ("POST", "registered-models/create", {"name": "x", "tags": [{"key": "k\x00"}]}, {}),
        ("GET", "model-versions/get", None, {"name": name}),
        ("GET", "registered-models/search", None, {"page_token": "garbage"}),
        ("GET", "registered-models/search", None, {"page_token": huge_offset}),
        ("GET", "model-versions/search", None, {"page_token": huge_offset}),
        ("GET", "registered-models/search", None, {"max_results": "many"}),
        ("GET", "registered-models/alias", None, {"name": name, "alias": "bad alias"}),
        ("POST", "model-versions/create", {"name": name}, {}),
        ("POST", "model-versions/create", {"name": name, "source": "s3://b", "tags": [{}]}, {}),
        (
            "POST",
            "model-versions/transition-stage",
            {"name": name, "version": "1", "stage": "Staging", "archive_existing_versions": "y"},
            {},
        ),
        ("DELETE", "registered-models/delete-tag", {"name": name, "key": "../x"}, {}),
        ("POST", "model-versions/transition-stage", {"name": name, "version": "1"}, {}),
        (
            "POST",
            "model-versions/transition-stage",
            {"name": name, "version": "1", "stage": " "},
            {},
        ),
    ]:
        response = call(server, method, path, body, **params)
        assert_error(response, "INVALID_PARAMETER_VALUE", 400)
    for version in ("99999999999", "-1", "0"):
        response = call(server, "GET", "model-versions/get", name=name, version=version)
        assert_error(response, "RESOURCE_DOES_NOT_EXIST", 404)
    unknown = call(server, "GET", "model-versions/get-download-uri", name=missing, version="1")
    assert_error(unknown, "RESOURCE_DOES_NOT_EXIST", 404)
    anonymous = httpx.get(
        f"{server.url}/api/2.0/mlflow/registered-models/get", params={"name": name}
    )
    assert anonymous.status_code in (401, 404)


def test_unregistering_the_default_model_keeps_the_default_experiment(
    client: MlflowClient,
) -> None:
    client.create_registered_model("Default")
    client.delete_registered_model("Default")
    with pytest.raises(RestException) as raised:
        client.get_registered_model("Default")
    assert error_code(raised.value) == "RESOURCE_DOES_NOT_EXIST"
    default = client.get_experiment("0")
    assert (default.name, default.lifecycle_stage) == ("Default", "active")
