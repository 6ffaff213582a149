"""The web UI's browser tests: one live `modelreg serve` per test module, seeded as a team
would fill it, through the real `mlflow` client, and the users who look at it.

A module takes the fixtures by naming them at module level:

    from tests import browser_support, ui_support

    browser = browser_support.browser
    browser_page = browser_support.browser_page
    ui_site = ui_support.ui_site

What `ui_site` holds (`UiSite` names every seeded thing, with the ids the API gives it):

- users `maintainer`, `developer` and `reporter` with the password `PASSWORD` and each an
  access token (`api` scope), members of the public project `demo` with the role their
  name says; only `maintainer` belongs to the private project `vault`;
- in `demo` (seeded through its tracking URI ``/projects/demo/mlflow``): the model
  `iris` with 12 finished runs ``run-01`` … ``run-12`` (params ``lr``, ``depth``,
  ``optimizer``; metrics ``accuracy`` and ``loss`` with 50-step histories; tags ``team``
  and ``stage``), of which ``run-12`` logged an sklearn model with
  `mlflow.sklearn.log_model`, registered as version 1 of `iris` with the alias
  ``champion``; the model `wine` with 2 runs; the registered model `digits`, empty;
- in `vault`: the model `secret` with one run.

`sign_in(page, user)` signs a browser context in; `screenshot(page, name)` keeps a picture
of the page for the README when MODELREG_SCREENSHOTS names a directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from app.db import Database
from app.models import Role, Visibility
from app.services import auth, projects, sessions, users
from app.services.actor import OPERATOR, SCOPE_API
from tests.live_server import LiveServer, copy_sqlite, live_server

PASSWORD = "correct horse battery staple"
PUBLIC_PROJECT = "demo"
PRIVATE_PROJECT = "vault"
MODEL = "iris"
ALIAS = "champion"
RUN_COUNT = 12
HISTORY_STEPS = 50
SCREENSHOTS_VARIABLE = "MODELREG_SCREENSHOTS"
# Generous: Chromium shares two cores with the server and the other tests.
WAIT_MS = 30_000


@dataclass(frozen=True)
class UiUser:
    username: str
    password: str
    # An access token (`api` scope) of the user.
    token: str
    # The server the user belongs to (`sign_in` signs in there).
    server_url: str


@dataclass(frozen=True)
class SeededRun:
    """One MLflow run of `iris`, as logged and as the API names it."""

    name: str
    run_id: str
    iid: int
    id: str
    params: dict[str, str]
    # The last value of each metric (at step HISTORY_STEPS - 1).
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class UiSite:
    server: LiveServer
    maintainer: UiUser
    developer: UiUser
    reporter: UiUser
    public_project: str
    private_project: str
    # `iris`: its global id, and its MLflow experiment id (the model's iid).
    model: str
    model_id: str
    experiment_id: str
    runs: tuple[SeededRun, ...]
    # The run that logged the sklearn model, and the version it became (number 1).
    model_run: SeededRun
    version_id: str
    version: str
    alias: str
    # What the mlflow client printed when `model_run` ended: "🏃 View run … at: <url>".
    view_run_output: str

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, name: str) -> SeededRun:
        return next(run for run in self.runs if run.name == name)


async def sign_in(page: Page, user: UiUser) -> None:
    """Sign the page's browser context in as `user` (the session cookie the UI's sign-in
    form would get)."""
    response = await page.context.request.post(
        f"{user.server_url}/sign-in",
        data={"username": user.username, "password": user.password},
        headers={"Accept": "application/json"},
    )
    assert response.status == 200, await response.text()


async def screenshot(page: Page, name: str) -> None:
    """`<name>.png` of the whole page in MODELREG_SCREENSHOTS, when it is set."""
    directory = os.environ.get(SCREENSHOTS_VARIABLE)
    if directory:
        await asyncio.to_thread(Path(directory).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
async def ui_site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> AsyncIterator[UiSite]:
    workdir = tmp_path_factory.mktemp("ui-server")
    database_url = copy_sqlite(sqlite_template, workdir)
    tokens = await _seed_people(database_url)
    with live_server(workdir, database_url) as server:
        seeded = await asyncio.to_thread(_seed_through_mlflow, server)
        people = {
            username: UiUser(username, PASSWORD, tokens[username], server.url)
            for username in tokens
        }
        yield _site(server, people, *seeded)


async def _seed_people(database_url: str) -> dict[str, str]:
    """The users with their passwords, and the two projects; each user's token secret."""
    database = Database(database_url)
    roles = {"maintainer": Role.MAINTAINER, "developer": Role.DEVELOPER, "reporter": Role.REPORTER}
    tokens: dict[str, str] = {}
    try:
        async with database.session() as session:
            demo = await projects.create_project(
                session, path=PUBLIC_PROJECT, visibility=Visibility.PUBLIC, actor=OPERATOR
            )
            vault = await projects.create_project(
                session, path=PRIVATE_PROJECT, visibility=Visibility.PRIVATE, actor=OPERATOR
            )
            for username, role in roles.items():
                user = await users.create_user(session, username=username, actor=OPERATOR)
                await sessions.set_password(session, user=user, password=PASSWORD, actor=OPERATOR)
                _, tokens[username] = await auth.create_token(
                    session, user=user, name=f"{username}-token", scopes=(SCOPE_API,)
                )
                await projects.set_member(
                    session, project=demo, user=user, role=role, actor=OPERATOR
                )
                if role is Role.MAINTAINER:
                    await projects.set_member(
                        session, project=vault, user=user, role=role, actor=OPERATOR
                    )
    finally:
        await database.dispose()
    return tokens


def _history(final: float, start: float) -> list[float]:
    """HISTORY_STEPS values going evenly from `start` to `final`."""
    last = HISTORY_STEPS - 1
    return [round(start + (final - start) * step / last, 6) for step in range(HISTORY_STEPS)]


def _seed_through_mlflow(server: LiveServer) -> tuple[list[dict[str, Any]], str, str]:
    """Runs, models and the version, logged as a training script logs them; returns the
    iris runs as logged, the ended model run's printed output, and iris' experiment id."""
    import mlflow
    import numpy as np
    from mlflow.entities import Metric, Param, RunTag
    from sklearn.linear_model import LogisticRegression

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        demo_uri = f"{server.url}/projects/{PUBLIC_PROJECT}/mlflow"
        client = mlflow.MlflowClient(demo_uri)
        experiment_id = client.create_experiment(MODEL)
        logged: list[dict[str, Any]] = []
        printed = ""
        for number in range(1, RUN_COUNT + 1):
            name = f"run-{number:02d}"
            params = {
                "lr": ("0.001", "0.01", "0.1")[number % 3],
                "depth": str(2 + number % 4),
                "optimizer": ("adam", "sgd")[number % 2],
            }
            finals = {
                "accuracy": round(0.6 + number * 0.03, 6),
                "loss": round(1.2 - number * 0.08, 6),
            }
            tags = {
                "team": ("vision", "tabular")[number % 2],
                "stage": "tuned" if number > RUN_COUNT // 2 else "baseline",
            }
            histories = {
                "accuracy": _history(finals["accuracy"], 0.1),
                "loss": _history(finals["loss"], 2.0),
            }
            metrics = [
                Metric(key, value, 1_700_000_000_000 + step, step)
                for key, values in histories.items()
                for step, value in enumerate(values)
            ]
            if number < RUN_COUNT:
                run = client.create_run(experiment_id, run_name=name)
                run_id = run.info.run_id
                client.log_batch(
                    run_id,
                    metrics=metrics,
                    params=[Param(key, value) for key, value in params.items()],
                    tags=[RunTag(key, value) for key, value in tags.items()],
                )
                client.set_terminated(run_id)
            else:
                # The last run trains and logs a model with the fluent API, and its end
                # prints the "View run" link.
                mlflow.set_tracking_uri(demo_uri)
                output = io.StringIO()
                with (
                    contextlib.redirect_stdout(output),
                    mlflow.start_run(experiment_id=experiment_id, run_name=name) as active,
                ):
                    run_id = active.info.run_id
                    client.log_batch(
                        run_id,
                        metrics=metrics,
                        params=[Param(key, value) for key, value in params.items()],
                        tags=[RunTag(key, value) for key, value in tags.items()],
                    )
                    features = np.array([[0.0, 0.2], [0.1, 0.0], [1.0, 0.9], [0.9, 1.2]])
                    classifier = LogisticRegression().fit(features, np.array([0, 0, 1, 1]))
                    info = mlflow.sklearn.log_model(classifier, name="model")
                printed = output.getvalue()
                version = mlflow.register_model(info.model_uri, MODEL)
                client.set_registered_model_alias(MODEL, ALIAS, str(version.version))
            logged.append(
                {"name": name, "run_id": run_id, "params": params, "metrics": finals, "tags": tags}
            )
        wine = client.create_experiment("wine")
        for name in ("wine-a", "wine-b"):
            client.set_terminated(client.create_run(wine, run_name=name).info.run_id)
        client.create_registered_model("digits")
        vault = mlflow.MlflowClient(f"{server.url}/projects/{PRIVATE_PROJECT}/mlflow")
        secret = vault.create_experiment("secret")
        vault.set_terminated(vault.create_run(secret, run_name="secret-run").info.run_id)
        # None forgets it again (MLflow accepts None; its annotation does not say so).
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return logged, printed, experiment_id


_IDS_QUERY = """
query UiSupportIds($project: String!, $model: String!, $runId: String!) {
  project(path: $project) {
    model(name: $model) { id latestVersion { id version } }
    candidate(runId: $runId) { id iid }
  }
}
"""


def _site(
    server: LiveServer,
    people: dict[str, UiUser],
    logged: list[dict[str, Any]],
    printed: str,
    experiment_id: str,
) -> UiSite:
    runs: list[SeededRun] = []
    project: dict[str, Any] = {}
    for run in logged:
        project = server.ask(_IDS_QUERY, project=PUBLIC_PROJECT, model=MODEL, runId=run["run_id"])[
            "project"
        ]
        candidate = project["candidate"]
        runs.append(SeededRun(iid=candidate["iid"], id=candidate["id"], **run))
    model = project["model"]
    return UiSite(
        server=server,
        maintainer=people["maintainer"],
        developer=people["developer"],
        reporter=people["reporter"],
        public_project=PUBLIC_PROJECT,
        private_project=PRIVATE_PROJECT,
        model=MODEL,
        model_id=model["id"],
        experiment_id=experiment_id,
        runs=tuple(runs),
        model_run=runs[-1],
        version_id=model["latestVersion"]["id"],
        version=model["latestVersion"]["version"],
        alias=ALIAS,
        view_run_output=printed,
    )
