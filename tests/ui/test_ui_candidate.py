"""The candidate page in Chromium, against a live server fed by the real `mlflow` client.

Beside `ui_site`'s runs, this module logs a small hyperparameter sweep into the model
`sweeps`: a parent run `sweep` (a 2,500-step `loss` history, a `grad_norm` whose latest
value is NaN, artifacts in folders, a dataset input) with two child runs. The page must
show them exactly; its `loss` chart holds what `metricHistories` answers for 1,000 points
(first and last step kept) until a drag zooms it to a step range, refetched at full
resolution; a file of the artifacts tree downloads with its bytes; parent, child and
version links lead to their pages; a running candidate's chart gains the points the
client logs while the page is open; MLflow's printed "View run" link lands on the run.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from playwright.async_api import Page

from tests import browser_support, ui_support
from tests.browser_support import BrowserPage
from tests.live_server import LiveServer
from tests.ui_support import WAIT_MS, UiSite, screenshot, sign_in

browser = browser_support.browser
browser_page = browser_support.browser_page
ui_site = ui_support.ui_site

SWEEP_MODEL = "sweeps"
LOSS_STEPS = 2_500
MAX_POINTS = 1_000
PARAMS = {"search": "grid", "trials": "2"}
TAGS = {"goal": "lowest loss"}
ARTIFACTS = {
    "reports/summary.txt": b"loss went down\n",
    "reports/plots/curve.csv": b"step,loss\n0,1.0\n",
    "notes.md": b"# Sweep\n",
}
DATASET = Dataset(
    name="iris-train", digest="d1g3st", source_type="local", source='{"uri": "data/train.csv"}'
)

ARTIFACTS_TREE = "[data-testid=candidate-artifacts] [data-testid=artifacts-tree]"

CANDIDATE_QUERY = """
query UiCandidateTest($project: String!, $runId: String!, $maxPoints: Int!) {
  project(path: $project) {
    candidate(runId: $runId) {
      webPath
      metricHistories(names: ["loss"], maxPoints: $maxPoints) { steps }
    }
  }
}
"""


def loss(step: int) -> float:
    return round(1.0 / (1.0 + step / 100.0), 6)


@dataclass(frozen=True)
class Sweep:
    parent: str
    children: tuple[str, ...]
    # webPath of each run by name.
    pages: dict[str, str]
    # The steps of `loss` that `metricHistories(maxPoints: 1000)` answers.
    sampled_steps: list[int]
    experiment_id: str


@pytest.fixture(scope="module")
def mlflow_client(ui_site: UiSite) -> Iterator[mlflow.MlflowClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_TOKEN", ui_site.server.admin_token)
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        yield mlflow.MlflowClient(f"{ui_site.url}/projects/{ui_site.public_project}/mlflow")


def candidate(server: LiveServer, project: str, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = server.ask(
        CANDIDATE_QUERY, project=project, runId=run_id, maxPoints=MAX_POINTS
    )["project"]["candidate"]
    return found


@pytest.fixture(scope="module")
def sweep(
    ui_site: UiSite, mlflow_client: mlflow.MlflowClient, tmp_path_factory: pytest.TempPathFactory
) -> Sweep:
    client = mlflow_client
    experiment_id = client.create_experiment(SWEEP_MODEL)
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    history = [
        Metric("loss", loss(step), 1_700_000_000_000 + step, step) for step in range(LOSS_STEPS)
    ]
    for start in range(0, LOSS_STEPS, 1_000):
        client.log_batch(parent, metrics=history[start : start + 1_000])
    client.log_batch(
        parent,
        metrics=[
            Metric("grad_norm", 0.5, 1_700_000_000_000, 0),
            Metric("grad_norm", float("nan"), 1_700_000_000_001, 1),
        ],
        params=[Param(key, value) for key, value in PARAMS.items()],
        tags=[RunTag(key, value) for key, value in TAGS.items()],
    )
    client.log_inputs(
        parent, datasets=[DatasetInput(DATASET, tags=[InputTag("mlflow.data.context", "training")])]
    )
    files = tmp_path_factory.mktemp("artifacts")
    for path, content in ARTIFACTS.items():
        local = files / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
    client.log_artifacts(parent, str(files))
    children = []
    for name in ("trial-1", "trial-2"):
        child = client.create_run(
            experiment_id, run_name=name, tags={"mlflow.parentRunId": parent}
        ).info.run_id
        client.set_terminated(child)
        children.append(child)
    client.set_terminated(parent)
    project = ui_site.public_project
    found = candidate(ui_site.server, project, parent)
    pages = {"sweep": found["webPath"]} | {
        name: candidate(ui_site.server, project, run_id)["webPath"]
        for name, run_id in zip(("trial-1", "trial-2"), children, strict=True)
    }
    return Sweep(
        parent=parent,
        children=tuple(children),
        pages=pages,
        sampled_steps=found["metricHistories"][0]["steps"],
        experiment_id=experiment_id,
    )


def chart(page: Page, metric: str) -> Any:
    return page.locator(f"[data-testid=metric-chart][data-name='{metric}'] [data-testid=chart]")


async def wait_for_attribute(page: Page, locator: Any, name: str, value: str) -> None:
    """Until the element `locator` finds has `name`="value" (the chart redraws async)."""
    handle = await locator.element_handle(timeout=WAIT_MS)
    await page.wait_for_function(
        "([element, name, value]) => element.getAttribute(name) === value",
        arg=[handle, name, value],
        timeout=WAIT_MS,
    )


async def texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in await page.locator(selector).all_inner_texts()]


async def rows(page: Page, test_id: str) -> dict[str, str]:
    """A key/value table's rows by name."""
    found = {}
    for row in await page.locator(f"[data-testid={test_id}]").all():
        name = await row.get_attribute("data-name")
        assert name is not None
        found[name] = (await row.locator(f"[data-testid={test_id}-value]").inner_text()).strip()
    return found


def assert_stayed_on_the_server(browser_page: BrowserPage) -> None:
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == []


async def test_candidate_page_shows_the_run_and_zooms_its_chart(
    browser_page: BrowserPage, ui_site: UiSite, sweep: Sweep
) -> None:
    page = browser_page.page
    await sign_in(page, ui_site.developer)
    await page.goto(ui_site.url + sweep.pages["sweep"])
    await page.wait_for_selector("[data-testid=candidate-name]", timeout=WAIT_MS)

    assert await page.inner_text("[data-testid=candidate-name]") == "sweep"
    assert await page.inner_text("[data-testid=candidate-status]") == "FINISHED"
    assert await rows(page, "param") == PARAMS
    assert (await rows(page, "tag")).items() >= TAGS.items()
    assert await texts(page, "[data-testid=metric] td:first-child") == ["grad_norm", "loss"]
    assert await texts(page, "[data-testid=metric-value]") == [
        "NaN",
        str(loss(LOSS_STEPS - 1)),
    ]
    assert await texts(page, "[data-testid=input] td") == [
        "iris-train",
        "training",
        "d1g3st",
        'local: {"uri": "data/train.csv"}',
    ]
    assert await texts(page, "[data-testid=candidate-children] a") == ["trial-1", "trial-2"]

    # Downsampled by the server: at most 1,000 points, the first and last step kept.
    loss_chart = chart(page, "loss")
    assert len(sweep.sampled_steps) <= MAX_POINTS
    assert (sweep.sampled_steps[0], sweep.sampled_steps[-1]) == (0, LOSS_STEPS - 1)
    await wait_for_attribute(page, loss_chart, "data-points", str(len(sweep.sampled_steps)))
    assert await loss_chart.get_attribute("data-steps") == f"0-{LOSS_STEPS - 1}"
    await wait_for_attribute(page, chart(page, "grad_norm"), "data-points", "2")
    await screenshot(page, "candidate")

    # A drag over a quarter of the plot asks for that step range at full resolution:
    # every step in it, more than the downsampled series held there.
    plot = loss_chart.locator(".u-over")
    await plot.scroll_into_view_if_needed()
    box = await plot.bounding_box()
    assert box is not None
    middle = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.25, middle)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.5, middle, steps=8)
    await page.mouse.up()
    shown = await page.inner_text("[data-testid=chart-range]", timeout=WAIT_MS)
    match = re.fullmatch(r"steps (\d+) to (\d+)", shown)
    assert match is not None, shown
    low, high = int(match[1]), int(match[2])
    assert 0 < low < high < LOSS_STEPS - 1
    await wait_for_attribute(page, loss_chart, "data-points", str(high - low + 1))
    assert await loss_chart.get_attribute("data-steps") == f"{low}-{high}"
    assert high - low + 1 > sum(low <= step <= high for step in sweep.sampled_steps)
    await screenshot(page, "candidate-chart-zoomed")

    await page.click("[data-testid=metric-chart][data-name=loss] [data-testid=chart-reset]")
    await wait_for_attribute(page, loss_chart, "data-points", str(len(sweep.sampled_steps)))

    # Choosing metrics: unticking `grad_norm` removes its chart.
    await page.uncheck("[data-testid=metric-choice][value=grad_norm]")
    await page.wait_for_selector(
        "[data-testid=metric-chart][data-name=grad_norm]", state="detached"
    )
    assert await page.locator("[data-testid=metric-chart]").count() == 1
    assert_stayed_on_the_server(browser_page)


async def test_artifacts_download_and_related_runs_link(
    browser_page: BrowserPage, ui_site: UiSite, sweep: Sweep
) -> None:
    page = browser_page.page
    await sign_in(page, ui_site.developer)
    await page.goto(ui_site.url + sweep.pages["sweep"])
    await page.wait_for_selector(f"{ARTIFACTS_TREE}", timeout=WAIT_MS)

    # Folders first, closed; opening one shows what it holds.
    top = page.locator(f"{ARTIFACTS_TREE} > li > [data-testid]")
    assert await top.evaluate_all("(items) => items.map((item) => item.dataset.path)") == [
        "reports",
        "notes.md",
    ]
    assert await page.get_attribute("[data-path=reports]", "aria-expanded") == "false"
    await page.click("[data-testid=artifact-folder][data-path=reports]")
    await page.click("[data-testid=artifact-folder][data-path='reports/plots']")
    assert await page.locator(f"{ARTIFACTS_TREE} [data-testid=artifact-file]").evaluate_all(
        "(links) => links.map((link) => link.dataset.path)"
    ) == ["reports/plots/curve.csv", "reports/summary.txt", "notes.md"]
    async with page.expect_download() as started:
        await page.click("[data-testid=artifact-file][data-path='reports/summary.txt']")
    download = await started.value
    assert download.suggested_filename == "summary.txt"
    assert (
        await asyncio.to_thread(Path(await download.path()).read_bytes)
        == ARTIFACTS["reports/summary.txt"]
    )

    # A child run, then its parent, by their links.
    await page.click("[data-testid=candidate-children] a >> text=trial-2")
    await page.wait_for_url(ui_site.url + sweep.pages["trial-2"], timeout=WAIT_MS)
    await page.wait_for_selector("[data-testid=candidate-name]:text-is('trial-2')", timeout=WAIT_MS)
    assert await page.locator("[data-testid=candidate-children]").count() == 0
    await page.click("[data-testid=candidate-parent] a")
    await page.wait_for_url(ui_site.url + sweep.pages["sweep"], timeout=WAIT_MS)
    await page.wait_for_selector("[data-testid=candidate-name]:text-is('sweep')", timeout=WAIT_MS)
    assert_stayed_on_the_server(browser_page)


async def test_a_running_candidates_chart_gains_the_points_logged_meanwhile(
    browser_page: BrowserPage,
    ui_site: UiSite,
    sweep: Sweep,
    mlflow_client: mlflow.MlflowClient,
) -> None:
    client = mlflow_client
    run_id = client.create_run(sweep.experiment_id, run_name="live").info.run_id

    def log(steps: range) -> None:
        client.log_batch(
            run_id,
            metrics=[Metric("acc", step / 10, 1_700_000_000_000 + step, step) for step in steps],
        )

    await asyncio.to_thread(log, range(0, 5))
    web_path = candidate(ui_site.server, ui_site.public_project, run_id)["webPath"]
    page = browser_page.page
    await sign_in(page, ui_site.developer)
    await page.goto(ui_site.url + web_path)
    assert await page.inner_text("[data-testid=candidate-status]", timeout=WAIT_MS) == "RUNNING"
    acc_chart = chart(page, "acc")
    await wait_for_attribute(page, acc_chart, "data-points", "5")
    # The subscription is open once the server has answered its first message; logging
    # before that would still arrive, as the first message carries the latest values.

    await asyncio.to_thread(log, range(5, 12))
    await wait_for_attribute(page, acc_chart, "data-points", "12")
    assert await acc_chart.get_attribute("data-steps") == "0-11"
    assert await texts(page, "[data-testid=metric-value]") == ["1.1"]

    await asyncio.to_thread(client.set_terminated, run_id)
    await page.wait_for_selector(
        "[data-testid=candidate-status]:text-is('FINISHED')", timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page)


async def test_mlflow_view_run_link_lands_on_the_candidate_and_its_version(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    printed = re.search(r"View run \S+ at: (\S+)", ui_site.view_run_output)
    assert printed is not None, ui_site.view_run_output
    link = printed[1]
    assert urllib.parse.urlsplit(link).fragment.startswith("/experiments/")
    page = browser_page.page
    await sign_in(page, ui_site.developer)
    await page.goto(link)

    run = ui_site.model_run
    await page.wait_for_selector(
        f"[data-testid=candidate-name]:text-is('{run.name}')", timeout=WAIT_MS
    )
    assert urllib.parse.urlsplit(page.url).path.endswith(f"/candidates/{run.iid}")
    assert await rows(page, "param") == run.params
    [logged_model] = await texts(page, "[data-testid=logged-model] h3")
    assert re.fullmatch(r"model m-[0-9a-f]{32} READY", logged_model), logged_model
    # The logged model's files download through MLflow's artifact proxy.
    async with page.expect_download() as started:
        await page.click(
            "[data-testid=logged-model] [data-testid=artifact-file][data-path=MLmodel]"
        )
    download = await started.value
    mlmodel = await asyncio.to_thread(Path(await download.path()).read_text)
    assert "sklearn:" in mlmodel and f"run_id: {run.run_id}" in mlmodel, mlmodel

    await page.click("[data-testid=candidate-version] a")
    await page.wait_for_url(
        re.compile(rf".*/versions/{re.escape(ui_site.version)}$"), timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page)
