"""Registry lineage as MLflow keeps it, with the real mlflow client against a live modelreg
on both databases: a version made from a logged model is listed in that logged model's
`mlflow.modelVersions` tag, and a run id the server has never seen is accepted and read
back as sent, for a version as for a logged model (MLflow does not check it either)."""

from __future__ import annotations

import json
import uuid

import mlflow
from mlflow import MlflowClient

from app.services.logged_models import MODEL_VERSIONS_TAG


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def _unknown_run_id() -> str:
    return uuid.uuid4().hex


def _experiment_id(client: MlflowClient) -> str:
    return client.create_experiment(_unique("Lineage"))


def test_versions_made_from_a_logged_model_are_listed_in_its_model_versions_tag(
    client: MlflowClient,
) -> None:
    logged = client.create_logged_model(_experiment_id(client), name="classifier")
    other = client.create_logged_model(_experiment_id(client), name="untouched")
    name = _unique("Tagged")
    client.create_registered_model(name)

    first = client.create_model_version(
        name, f"models:/{logged.model_id}", model_id=logged.model_id
    )
    assert first.version == "1"
    tag = mlflow.get_logged_model(logged.model_id).tags[MODEL_VERSIONS_TAG]
    assert json.loads(tag) == [{"name": name, "version": 1}]

    second = client.create_model_version(name, f"models:/{logged.model_id}")
    assert second.version == "2"
    tag = mlflow.get_logged_model(logged.model_id).tags[MODEL_VERSIONS_TAG]
    assert json.loads(tag) == [{"name": name, "version": 1}, {"name": name, "version": 2}]
    # The same text MLflow's server writes (json.dumps with its default separators).
    assert tag == json.dumps([{"name": name, "version": 1}, {"name": name, "version": 2}])

    assert MODEL_VERSIONS_TAG not in mlflow.get_logged_model(other.model_id).tags
    # A version of another model, from a source naming no logged model, tags nothing.
    client.create_model_version(name, "s3://bucket/model")
    assert len(json.loads(mlflow.get_logged_model(logged.model_id).tags[MODEL_VERSIONS_TAG])) == 2


def test_a_model_versions_tag_a_client_set_to_something_else_is_kept(
    client: MlflowClient,
) -> None:
    logged = client.create_logged_model(_experiment_id(client))
    client.set_logged_model_tags(logged.model_id, {MODEL_VERSIONS_TAG: "not json"})
    name = _unique("Kept")
    client.create_registered_model(name)

    version = client.create_model_version(name, f"models:/{logged.model_id}")

    assert version.version == "1"
    assert mlflow.get_logged_model(logged.model_id).tags[MODEL_VERSIONS_TAG] == "not json"


def test_a_version_from_an_unknown_run_id_is_created_and_reads_back_that_run_id(
    client: MlflowClient,
) -> None:
    name = _unique("Unknown Run")
    client.create_registered_model(name)
    run_id = _unknown_run_id()
    source = f"runs:/{run_id}/model"

    created = client.create_model_version(name, source, run_id=run_id)

    assert (created.version, created.run_id, created.source) == ("1", run_id, source)
    read = client.get_model_version(name, "1")
    assert (read.run_id, read.source) == (run_id, source)
    assert MODEL_VERSIONS_TAG not in read.tags
    [found] = client.search_model_versions(f"name = '{name}'")
    assert found.run_id == run_id

    # A source other than runs:/ with an unknown run id is accepted the same way.
    other_run_id = _unknown_run_id()
    stored = client.create_model_version(name, "s3://bucket/model", run_id=other_run_id)
    assert client.get_model_version(name, stored.version).run_id == other_run_id

    # As MLflow's registry does, the download URI of such a version is its source, and
    # a version made from `models:/<name>/1` carries its run id on.
    assert client.get_model_version_download_uri(name, "1") == source
    copy = _unique("Copy")
    client.create_registered_model(copy)
    copied = client.create_model_version(copy, f"models:/{name}/1")
    assert (copied.source, copied.run_id) == (f"models:/{name}/1", run_id)
    assert client.get_model_version_download_uri(copy, "1") == source


def test_two_versions_from_one_unknown_run_id_each_get_their_own_candidate(
    client: MlflowClient,
) -> None:
    name = _unique("Twice")
    client.create_registered_model(name)
    run_id = _unknown_run_id()

    first = client.create_model_version(name, f"runs:/{run_id}/a", run_id=run_id)
    second = client.create_model_version(name, f"runs:/{run_id}/b", run_id=run_id)

    assert (first.version, second.version) == ("1", "2")
    assert [client.get_model_version(name, v).run_id for v in ("1", "2")] == [run_id, run_id]


def test_a_logged_model_from_an_unknown_run_id_is_created_with_that_source_run_id(
    client: MlflowClient,
) -> None:
    experiment_id = _experiment_id(client)
    run_id = _unknown_run_id()

    created = client.create_logged_model(experiment_id, name="orphan", source_run_id=run_id)

    assert created.source_run_id == run_id
    assert mlflow.get_logged_model(created.model_id).source_run_id == run_id
    [found] = client.search_logged_models(experiment_ids=[experiment_id])
    assert found.source_run_id == run_id

    # A version made from it takes that run id, as MLflow's registry does.
    name = _unique("From Orphan")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"models:/{created.model_id}")
    assert version.run_id == run_id


def test_a_logged_model_from_a_known_run_still_links_to_it(client: MlflowClient) -> None:
    experiment_id = _experiment_id(client)
    run = client.create_run(experiment_id)

    created = client.create_logged_model(experiment_id, source_run_id=run.info.run_id)

    assert mlflow.get_logged_model(created.model_id).source_run_id == run.info.run_id


def test_logged_models_are_searched_by_an_unknown_source_run_id(client: MlflowClient) -> None:
    experiment_id = _experiment_id(client)
    run_id = _unknown_run_id()
    orphan = client.create_logged_model(experiment_id, source_run_id=run_id)
    client.create_logged_model(experiment_id, source_run_id=_unknown_run_id())
    client.create_logged_model(experiment_id)

    found = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )

    assert [model.model_id for model in found] == [orphan.model_id]
