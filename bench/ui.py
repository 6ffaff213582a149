"""What the web UI costs in a browser: the two budgets of its issue, measured.

    .venv/bin/python -m bench.ui                 # 5 loads of each page
    .venv/bin/python -m bench.ui --repeat 20

Serves a fresh SQLite database with `modelreg serve` on loopback, seeds it through the
real `mlflow` client (a model `table` of `--rows` (50) finished runs with 3 params, 2
metrics of 50 steps and 2 tags each; a model `curves` of `--series` (10) runs logging a
`--points` (1,000) step `loss`), and drives Debian's Chromium through Playwright,
signed in with the administrator's token:

- **model page**: from navigation start to the moment its candidates table shows
  `--rows` rows (`[data-testid=candidate-row]`, recorded in the page by a
  MutationObserver at `performance.now()`).
  Budget: 1,000 ms on loopback.
- **chart**: the Compare page of the `curves` runs with `?timings`: its `loss` chart
  overlays `--series` x `--points` points; the Chart component writes `data-render-ms`,
  from receiving the series to uPlot's first draw of them (`performance.now()`).
  Budget: 200 ms.

The model page is timed twice per repetition: in a new browser context (an empty cache:
a first visit) and in one kept context whose cache a warm-up load filled (a returning
user: the hashed assets are cached for a year). Each figure is the median and the
slowest of `--repeat` loads, in ms; the verdict compares the median with the budget.
The machine's other load shows in these figures: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, async_playwright

from app import migrations
from app.db import Database
from app.models import Visibility
from app.services import projects
from app.services.actor import OPERATOR
from tests.browser_support import CHROMIUM_ARGUMENTS, chromium_path
from tests.live_server import LiveServer, live_server

PROJECT = "bench"
TABLE_MODEL = "table"
CHART_MODEL = "curves"
HISTORY_STEPS = 50
MODEL_PAGE_BUDGET_MS = 1_000.0
CHART_BUDGET_MS = 200.0
WAIT_MS = 60_000

ROWS_SHOWN = """
(rows) => {
  window.__rowsShownAt = null;
  const check = () => {
    if (window.__rowsShownAt === null &&
        document.querySelectorAll("[data-testid=candidate-row]").length >= rows) {
      window.__rowsShownAt = performance.now();
    }
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true });
}
"""

IDS = """
query BenchUiIds($project: String!, $model: String!) {
  project(path: $project) {
    model(name: $model) { webPath candidates(first: 100) { edges { node { id } } } }
  }
}
"""


def _seed(server: LiveServer, options: argparse.Namespace) -> None:
    """The two models, logged as training scripts log them."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    os.environ["MLFLOW_TRACKING_TOKEN"] = server.admin_token
    client = mlflow.MlflowClient(f"{server.url}/projects/{PROJECT}/mlflow")
    table = client.create_experiment(TABLE_MODEL)
    for number in range(options.rows):
        run_id = client.create_run(table, run_name=f"run-{number:03d}").info.run_id
        client.log_batch(
            run_id,
            metrics=[
                Metric(name, value * (step + 1) / HISTORY_STEPS, 1_700_000_000_000 + step, step)
                for name, value in (("accuracy", 0.5 + number / 200), ("loss", 1 - number / 200))
                for step in range(HISTORY_STEPS)
            ],
            params=[
                Param("lr", str(0.001 * (1 + number % 5))),
                Param("depth", str(2 + number % 4)),
                Param("optimizer", ("adam", "sgd")[number % 2]),
            ],
            tags=[RunTag("team", ("vision", "tabular")[number % 2]), RunTag("stage", "tuned")],
        )
        client.set_terminated(run_id)
    curves = client.create_experiment(CHART_MODEL)
    for number in range(options.series):
        run_id = client.create_run(curves, run_name=f"curve-{number}").info.run_id
        history = [
            Metric("loss", 1 / (1 + step * (number + 1) / 100), 1_700_000_000_000 + step, step)
            for step in range(options.points)
        ]
        for start in range(0, options.points, 1_000):
            client.log_batch(run_id, metrics=history[start : start + 1_000])
        client.set_terminated(run_id)


async def _signed_in(browser: Browser, server: LiveServer) -> BrowserContext:
    """A new browser context (empty cache) with the administrator's session cookie."""
    context = await browser.new_context()
    response = await context.request.post(
        f"{server.url}/sign-in",
        form={"token": server.admin_token},
        headers={"Accept": "application/json"},
    )
    if response.status != 200:
        raise RuntimeError(f"signing in answered {response.status}: {await response.text()}")
    return context


async def _model_page_ms(context: BrowserContext, url: str, rows: int) -> float:
    page = await context.new_page()
    try:
        await page.add_init_script(script=f"({ROWS_SHOWN})({rows})")
        await page.goto(url)
        shown = await page.wait_for_function("() => window.__rowsShownAt", timeout=WAIT_MS)
        return float(await shown.json_value())
    finally:
        await page.close()


async def _chart_ms(context: BrowserContext, url: str) -> float:
    page = await context.new_page()
    try:
        await page.goto(url)
        chart = page.locator(
            "[data-testid=compare-chart][data-metric=loss] [data-testid=chart][data-render-ms]"
        )
        return float(await chart.get_attribute("data-render-ms", timeout=WAIT_MS) or "nan")
    finally:
        await page.close()


Result = tuple[str, list[float], float]


async def _measure(server: LiveServer, options: argparse.Namespace) -> list[Result]:
    table = server.ask(IDS, project=PROJECT, model=TABLE_MODEL)["project"]["model"]
    curves = server.ask(IDS, project=PROJECT, model=CHART_MODEL)["project"]["model"]
    ids = [edge["node"]["id"] for edge in curves["candidates"]["edges"]]
    model_url = f"{server.url}{table['webPath']}?per_page={options.rows}"
    compare_url = f"{server.url}/{PROJECT}/-/compare?candidates={','.join(ids)}&timings"
    cold: list[float] = []
    warm: list[float] = []
    charts: list[float] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGUMENTS
        )
        try:
            returning = await _signed_in(browser, server)
            # One load first warms the server and `returning`'s cache.
            await _model_page_ms(returning, model_url, options.rows)
            await _chart_ms(returning, compare_url)
            for _ in range(options.repeat):
                first_visit = await _signed_in(browser, server)
                cold.append(await _model_page_ms(first_visit, model_url, options.rows))
                await first_visit.close()
                warm.append(await _model_page_ms(returning, model_url, options.rows))
                charts.append(await _chart_ms(returning, compare_url))
        finally:
            await browser.close()
    return [
        (f"model page, {options.rows} rows, empty cache", cold, MODEL_PAGE_BUDGET_MS),
        (f"model page, {options.rows} rows, cached", warm, MODEL_PAGE_BUDGET_MS),
        (f"chart {options.series} series x {options.points} points", charts, CHART_BUDGET_MS),
    ]


def _print(results: list[Result]) -> None:
    print(f"{'measure':<40} {'median ms':>10} {'slowest ms':>11} {'budget ms':>10}  verdict")
    for name, samples, budget in results:
        median, slowest = statistics.median(samples), max(samples)
        verdict = "within" if median <= budget else "OVER"
        print(f"{name:<40} {median:>10.1f} {slowest:>11.1f} {budget:>10.0f}  {verdict}")


@contextlib.contextmanager
def _served(directory: Path) -> Iterator[LiveServer]:
    database_url = f"sqlite+aiosqlite:///{directory / 'modelreg.db'}"
    migrations.upgrade(database_url)
    asyncio.run(_create_project(database_url))
    with live_server(directory, database_url) as server:
        yield server


async def _create_project(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            await projects.create_project(
                session, path=PROJECT, visibility=Visibility.PRIVATE, actor=OPERATOR
            )
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="timed loads of each page")
    parser.add_argument("--rows", type=int, default=50, help="runs of the table model")
    parser.add_argument("--series", type=int, default=10, help="runs overlaid in the chart")
    parser.add_argument("--points", type=int, default=1_000, help="steps of each chart run")
    options = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-ui-") as directory,
        _served(Path(directory)) as server,
    ):
        print(f"seeding {options.rows} + {options.series} runs through mlflow ...", flush=True)
        _seed(server, options)
        results = asyncio.run(_measure(server, options))
    _print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
