"""The model pages of the web UI, driven in Chromium against a live server seeded through
the real `mlflow` client (tests/ui_support.py): the candidates table (columns, filters in
the builder and in MLflow's grammar, sorting), comparing candidates, promoting one into a
version with an alias and loading that version with `mlflow.pyfunc`, downloading a file
of a version, what a reporter may not press, and deleting a model while its job runs.

The iris runs are `run-01` … `run-12`; run n logged accuracy 0.6 + 0.03·n, loss
1.2 - 0.08·n, lr ("0.001", "0.01", "0.1")[n % 3], depth 2 + n % 4, optimizer "adam" when
n is even (else "sgd") and the tag team "vision" when n is even (else "tabular")."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Locator, Page, expect

from tests import browser_support, ui_support
from tests.browser_support import BrowserPage
from tests.live_server import LiveServer
from tests.ui_support import WAIT_MS, UiSite, UiUser, screenshot, sign_in

browser = browser_support.browser
browser_page = browser_support.browser_page
ui_site = ui_support.ui_site

# A model of this module's own, with one run that logged an sklearn model: promoted in a test.
PROMOTED_MODEL = "penguins"
PROMOTED_RUN = "penguins-run"
# The features the penguins classifier was fitted on, and what it predicts for them.
FEATURES = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 1.1], [0.9, 1.0]])
LABELS = np.array([0, 0, 1, 1])


@dataclass(frozen=True)
class PromotableRun:
    run_id: str
    iid: int


@pytest.fixture(scope="module")
def promotable(ui_site: UiSite) -> Iterator[PromotableRun]:
    """`penguins` in the public project, with one finished run that logged a model."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    with tracking(ui_site, ui_site.server.admin_token) as tracking_uri:
        experiment_id = mlflow.MlflowClient(tracking_uri).create_experiment(PROMOTED_MODEL)
        with mlflow.start_run(experiment_id=experiment_id, run_name=PROMOTED_RUN) as run:
            mlflow.log_param("C", "1.0")
            mlflow.log_metric("accuracy", 0.95)
            mlflow.sklearn.log_model(LogisticRegression().fit(FEATURES, LABELS), name="model")
    found = ui_site.server.ask(
        "query UiModelRun($project: String!, $runId: String!) "
        "{ project(path: $project) { candidate(runId: $runId) { iid } } }",
        project=ui_site.public_project,
        runId=run.info.run_id,
    )
    yield PromotableRun(run.info.run_id, found["project"]["candidate"]["iid"])


@contextlib.contextmanager
def tracking(site: UiSite, token: str) -> Iterator[str]:
    """The mlflow client (fluent API included) on the public project's tracking URI with
    `token`, for the block; the URI set before (or none) comes back after it."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    uri = f"{site.url}/projects/{site.public_project}/mlflow"
    with pytest.MonkeyPatch.context() as patch, _use_tracking_uri(uri):
        patch.setenv("MLFLOW_TRACKING_TOKEN", token)
        # A 5xx would be retried for minutes; no answer of ours may be one.
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        yield uri


def model_url(site: UiSite, model: str) -> str:
    return f"{site.url}/{site.public_project}/-/models/{model}"


async def open_model(page: Page, site: UiSite, user: UiUser, model: str) -> None:
    await sign_in(page, user)
    await page.goto(model_url(site, model))
    await expect(page.get_by_test_id("model-name")).to_be_visible(timeout=WAIT_MS)


async def table_rows(page: Page) -> list[list[str]]:
    """The shown rows, each as the texts of its name cell and of the chosen columns."""
    await expect(page.get_by_test_id("candidates-count")).not_to_have_text("", timeout=WAIT_MS)
    rows: list[list[str]] = []
    for row in await page.get_by_test_id("candidate-row").all():
        cells = await row.locator("td[data-testid^='cell-']").all_inner_texts()
        rows.append([cell.strip() for cell in cells])
    return rows


async def expect_rows(page: Page, expected: list[list[str]]) -> None:
    """Waits for the table to show exactly `expected` (a query may still be answering)."""
    names = [row[0] for row in expected]
    await expect(page.get_by_test_id("cell-name")).to_have_text(names, timeout=WAIT_MS)
    assert await table_rows(page) == expected


async def cells(row: Locator) -> list[str]:
    return [text.strip() for text in await row.locator("th, td").all_inner_texts()]


async def test_reporter_chooses_columns_filters_and_sorts_candidates_without_promote_or_delete(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await open_model(page, ui_site, ui_site.reporter, ui_site.model)

    await expect(page.get_by_test_id("model-version")).to_have_count(1)
    await expect(page.get_by_test_id("version-alias")).to_have_text([f"@{ui_site.alias}"])
    # Every run, newest first, with the first metrics as the default columns.
    await expect(page.get_by_test_id("candidates-count")).to_have_text(
        "1\N{EN DASH}12 of 12", timeout=WAIT_MS
    )
    assert [row[0] for row in await table_rows(page)] == [
        f"run-{number:02d}" for number in range(12, 0, -1)
    ]
    # Cursor paging, ten to a page.
    await page.get_by_test_id("page-size").select_option("10")
    await expect(page.get_by_test_id("candidates-count")).to_have_text("1\N{EN DASH}10 of 12")
    await page.get_by_test_id("page-next").click()
    await expect(page.get_by_test_id("candidates-count")).to_have_text("11\N{EN DASH}12 of 12")
    await expect(page.get_by_test_id("cell-name")).to_have_text(["run-02", "run-01"])
    await expect(page.get_by_test_id("page-next")).to_be_disabled()
    await page.get_by_test_id("page-previous").click()
    await expect(page.get_by_test_id("candidates-count")).to_have_text("1\N{EN DASH}10 of 12")
    await expect(page.get_by_test_id("cell-name")).to_have_count(10)
    columns = page.locator("[data-testid='candidates-table'] thead th").all_inner_texts()
    assert [text.strip() for text in await columns][1:] == [
        "Name",
        "Status",
        "Started",
        "Duration",
        "Version",
        "accuracy",
        "loss",
    ]

    # Columns: drop loss, add the param lr and the tag team; the choice is in the address.
    await page.get_by_test_id("column-chooser").locator("summary").click()
    await page.get_by_test_id("column-metrics.loss").uncheck()
    await page.get_by_test_id("column-params.lr").check()
    await page.get_by_test_id("column-tags.team").check()
    await page.get_by_test_id("column-chooser").locator("summary").click()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["columns"] == ["metrics.accuracy,params.lr,tags.team"]

    # The builder: accuracy > 0.8 and lr = 0.1, sorted by accuracy, highest first.
    await page.get_by_test_id("add-condition").click()
    await page.get_by_test_id("condition-name").select_option("accuracy")
    await page.get_by_test_id("condition-op").select_option("GT")
    await page.get_by_test_id("condition-value").fill("0.8")
    await page.get_by_test_id("add-condition").click()
    second = page.get_by_test_id("filter-condition").nth(1)
    await second.get_by_test_id("condition-kind").select_option("param")
    await second.get_by_test_id("condition-name").select_option("lr")
    await second.get_by_test_id("condition-value").fill("0.1")
    await page.get_by_test_id("filter-apply").click()
    await page.get_by_test_id("sort-metrics.accuracy").click()
    await expect_rows(
        page, [["run-11", "0.93", "0.1", "tabular"], ["run-08", "0.84", "0.1", "vision"]]
    )
    await page.get_by_test_id("sort-metrics.accuracy").click()
    await expect_rows(
        page, [["run-08", "0.84", "0.1", "vision"], ["run-11", "0.93", "0.1", "tabular"]]
    )
    await screenshot(page, "model")

    # MLflow's grammar instead, sorted by the name.
    await page.get_by_test_id("filter-clear").click()
    await page.get_by_test_id("filter-query").fill(
        "params.optimizer = 'adam' and metrics.accuracy >= 0.9"
    )
    await page.get_by_test_id("filter-apply").click()
    await page.get_by_test_id("sort-name").click()
    await expect_rows(
        page,
        [
            ["run-12", "0.96", "0.001", "vision"],
            ["run-10", "0.9", "0.01", "vision"],
        ],
    )
    await page.get_by_test_id("sort-name").click()
    await expect_rows(
        page,
        [
            ["run-10", "0.9", "0.01", "vision"],
            ["run-12", "0.96", "0.001", "vision"],
        ],
    )
    # A filter the grammar refuses says why, beside the table.
    await page.get_by_test_id("filter-query").fill("metrics.accuracy >")
    await page.get_by_test_id("filter-apply").click()
    await expect(page.get_by_test_id("candidates-error")).to_have_text(
        "Invalid filter 'metrics.accuracy >': expected a value after > (at the end)",
        timeout=WAIT_MS,
    )

    # A reporter may compare, but neither promote nor delete.
    await page.get_by_test_id("select-" + str(ui_site.run("run-10").iid)).check()
    await expect(page.get_by_test_id("selection-count")).to_have_text("1 selected")
    await expect(page.get_by_test_id("promote-button")).to_have_count(0)
    await page.get_by_test_id("select-" + str(ui_site.run("run-12").iid)).check()
    await expect(page.get_by_test_id("compare-button")).to_have_text("Compare 2")
    await expect(page.get_by_test_id("model-delete")).to_have_count(0)
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


async def test_comparing_three_candidates_marks_the_params_that_differ(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await open_model(page, ui_site, ui_site.reporter, ui_site.model)
    await expect(page.get_by_test_id("candidate-row")).to_have_count(12, timeout=WAIT_MS)
    for name in ("run-02", "run-05", "run-08"):
        await page.get_by_test_id(f"select-{ui_site.run(name).iid}").check()
    await page.get_by_test_id("compare-button").click()

    await expect(page.get_by_test_id("compare-page")).to_be_visible(timeout=WAIT_MS)
    # In the order they were chosen.
    params_table = page.get_by_test_id("compare-params")
    await expect(params_table.get_by_test_id("compare-candidate")).to_have_text(
        ["run-02", "run-05", "run-08"]
    )
    params = page.get_by_test_id("param-row")
    assert [await cells(row) for row in await params.all()] == [
        ["depth ≠", "4", "3", "2"],
        ["lr", "0.1", "0.1", "0.1"],
        ["optimizer ≠", "adam", "sgd", "adam"],
    ]
    assert [await row.get_attribute("data-differs") for row in await params.all()] == [
        "true",
        "false",
        "true",
    ]
    metrics = page.get_by_test_id("metric-row")
    assert [await cells(row) for row in await metrics.all()] == [
        ["accuracy ≠", "0.66", "0.75", "0.84"],
        ["loss ≠", "1.04", "0.8", "0.56"],
    ]
    # An overlaid chart per metric, a line of 50 steps per candidate.
    charts = page.get_by_test_id("compare-chart")
    await expect(charts).to_have_count(2)
    for chart in await charts.all():
        await expect(chart.get_by_test_id("chart")).to_have_attribute(
            "data-points", "50,50,50", timeout=WAIT_MS
        )
    await screenshot(page, "compare")
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


async def test_developer_promotes_a_candidate_with_an_alias_and_mlflow_loads_it(
    browser_page: BrowserPage, ui_site: UiSite, promotable: PromotableRun, tmp_path: Path
) -> None:
    page = browser_page.page
    await open_model(page, ui_site, ui_site.developer, PROMOTED_MODEL)
    await expect(page.get_by_test_id("candidate-row")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.get_by_test_id("model-delete")).to_have_count(0)
    await page.get_by_test_id(f"select-{promotable.iid}").check()
    await page.get_by_test_id("promote-button").click()

    dialog = page.get_by_test_id("promote-dialog")
    await dialog.get_by_test_id("promote-version").fill("one")
    await dialog.get_by_test_id("promote-description").fill("The first *penguins* release.")
    await dialog.get_by_test_id("promote-alias").fill("prod")
    await dialog.get_by_test_id("promote-submit").click()
    await expect(dialog.get_by_test_id("promote-version-error")).to_have_text(
        "'one' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)", timeout=WAIT_MS
    )
    await screenshot(page, "promote")
    await dialog.get_by_test_id("promote-version").fill("1.2.0")
    await dialog.get_by_test_id("promote-submit").click()

    await expect(page.get_by_test_id("version-page")).to_be_visible(timeout=WAIT_MS)
    assert urllib.parse.urlsplit(page.url).path == (
        f"/{ui_site.public_project}/-/models/{PROMOTED_MODEL}/versions/1.2.0"
    )
    await expect(page.get_by_test_id("version-semver")).to_have_text("1.2.0")
    await expect(page.get_by_test_id("version-alias")).to_have_text(["@prod"])
    await expect(page.get_by_test_id("version-candidate")).to_have_text(PROMOTED_RUN)
    await expect(page.get_by_test_id("version-flavors")).to_contain_text("sklearn")
    snippet = f'mlflow.pyfunc.load_model("models:/{PROMOTED_MODEL}@prod")'
    await expect(page.get_by_test_id("version-snippet")).to_have_text(snippet)
    await screenshot(page, "version")

    # The snippet works: the developer's token, the project's tracking URI.
    loaded = await asyncio.to_thread(load_and_predict, ui_site, ui_site.developer, "prod")
    assert loaded == [0, 0, 1, 1]

    # A file downloads through its link, with the session cookie.
    link = page.get_by_test_id("version-file-download").filter(has_text="MLmodel").first
    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    saved = tmp_path / "MLmodel"
    await download.save_as(saved)
    assert "sklearn" in saved.read_text()
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


def load_and_predict(site: UiSite, user: UiUser, alias: str) -> list[int]:
    import mlflow

    with tracking(site, user.token):
        model = mlflow.pyfunc.load_model(f"models:/{PROMOTED_MODEL}@{alias}")
        return [int(label) for label in model.predict(FEATURES)]


async def test_maintainer_deletes_a_model_and_watches_its_job_finish(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await open_model(page, ui_site, ui_site.maintainer, "wine")
    await page.get_by_test_id("model-delete").click()
    await page.get_by_test_id("model-delete-confirm").click()
    await expect(
        page.get_by_test_id("model-delete-job").get_by_test_id("job-progress")
    ).to_be_visible(timeout=WAIT_MS)
    # The page leaves for the project only once the job succeeded.
    await page.wait_for_url(f"{ui_site.url}/{ui_site.public_project}", timeout=WAIT_MS)
    assert model_exists(ui_site.server, ui_site.public_project, "wine") is False
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


def model_exists(server: LiveServer, project: str, model: str) -> bool:
    found = server.ask(
        "query UiModelExists($project: String!, $model: String!) "
        "{ project(path: $project) { model(name: $model) { id } } }",
        project=project,
        model=model,
    )
    return found["project"]["model"] is not None
