"""The web UI's frame and project pages in Chromium, against a live `modelreg serve` fed
by the real mlflow client (`tests.ui_support`): signing in with a password or a token and
out, the projects and models lists, members as a maintainer and as a reporter, access
tokens, a deletion's job followed live, and the links MLflow prints. Every test also
checks that the page asked nothing of any host but the server and logged no error."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests import browser_support, ui_support
from tests.browser_support import BrowserPage
from tests.ui_support import WAIT_MS, UiSite, UiUser, screenshot, sign_in

browser = browser_support.browser
browser_page = browser_support.browser_page
ui_site = ui_support.ui_site


# What Chromium logs for the 401 a refused sign-in answers.
REFUSED_SIGN_IN = (
    "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
)


def assert_stayed_on_the_server(browser_page: BrowserPage, *, expected_errors: int = 0) -> None:
    assert browser_page.blocked_requests == []
    assert browser_page.console_errors == [REFUSED_SIGN_IN] * expected_errors


def marked(name: str) -> str:
    return f"[data-testid={name}]"


async def open_page(page: Page, site: UiSite, path: str) -> None:
    await page.goto(f"{site.url}{path}")
    await expect(page.locator(marked("frame-header"))).to_be_visible(timeout=WAIT_MS)


async def shows_viewer(page: Page, user: UiUser | None) -> None:
    if user is None:
        await expect(page.locator(marked("sign-in-link"))).to_be_visible(timeout=WAIT_MS)
    else:
        await expect(page.locator(marked("viewer-username"))).to_have_text(
            user.username, timeout=WAIT_MS
        )


async def test_a_wrong_password_is_refused_then_the_right_one_signs_in_and_out(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    # An anonymous visitor of a page that needs someone is sent to sign in, and back.
    await open_page(page, ui_site, "/-/tokens")
    await expect(page).to_have_url(f"{ui_site.url}/-/sign-in?next=%2F-%2Ftokens")
    await expect(page.locator("h1")).to_have_text("Sign in to modelreg")

    await page.fill(marked("sign-in-username"), "reporter")
    await page.fill(marked("sign-in-password"), "not the password")
    await page.click(marked("sign-in-submit"))
    await expect(page.locator(marked("sign-in-error"))).to_have_text(
        "wrong username or password", timeout=WAIT_MS
    )
    await screenshot(page, "sign-in")

    await page.fill(marked("sign-in-password"), ui_site.reporter.password)
    await page.click(marked("sign-in-submit"))
    await expect(page).to_have_url(f"{ui_site.url}/-/tokens", timeout=WAIT_MS)
    await shows_viewer(page, ui_site.reporter)
    await expect(page.locator("h1")).to_have_text("Access tokens")

    await page.click(marked("viewer-menu"))
    await page.click(marked("sign-out"))
    await expect(page).to_have_url(f"{ui_site.url}/", timeout=WAIT_MS)
    await shows_viewer(page, None)
    # The session is gone: the private project is out of sight again.
    await open_page(page, ui_site, f"/{ui_site.private_project}")
    await expect(page).to_have_url(
        f"{ui_site.url}/-/sign-in?next=%2F{ui_site.private_project}", timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page, expected_errors=1)


async def test_an_access_token_signs_in(browser_page: BrowserPage, ui_site: UiSite) -> None:
    page = browser_page.page
    await open_page(page, ui_site, f"/-/sign-in?next=/{ui_site.private_project}")
    await page.fill(marked("sign-in-token"), ui_site.maintainer.token)
    await page.click(marked("sign-in-token-submit"))
    await expect(page).to_have_url(f"{ui_site.url}/{ui_site.private_project}", timeout=WAIT_MS)
    await shows_viewer(page, ui_site.maintainer)
    await expect(page.locator(marked("model-link"))).to_have_text(
        ["Default", "secret"], timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page)


async def model_rows(page: Page) -> list[list[str]]:
    """Each model row's name, latest version, version count and candidate count."""
    rows = page.locator(marked("model-row"))
    found: list[list[str]] = []
    for index in range(await rows.count()):
        row = rows.nth(index)
        found.append(
            [
                await row.locator(marked(name)).inner_text()
                for name in (
                    "model-link",
                    "model-latest-version",
                    "model-versions",
                    "model-candidates",
                )
            ]
        )
    return found


async def test_projects_and_models_are_listed_searched_and_sorted(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await sign_in(page, ui_site.reporter)
    await open_page(page, ui_site, "/")
    rows = page.locator(f"{marked('project-row')} td")
    # The reporter reads the public project they belong to; the private one is hidden.
    await expect(page.locator(marked("project-row"))).to_have_count(1, timeout=WAIT_MS)
    await expect(rows).to_have_text(["demo", "", "Public", "Reporter"])
    await screenshot(page, "projects")

    await page.click("text=demo")
    await expect(page).to_have_url(f"{ui_site.url}/demo")
    names = page.locator(marked("model-link"))
    await expect(names).to_have_text(["Default", "digits", "iris", "wine"], timeout=WAIT_MS)
    assert await model_rows(page) == [
        ["Default", "—", "0", "0"],
        ["digits", "—", "0", "0"],
        ["iris", "1.0.0\n@champion", "1", "12"],
        ["wine", "—", "0", "2"],
    ]
    await expect(page.locator(marked("models-count"))).to_have_text("4 models")
    await screenshot(page, "project")

    await page.click(marked("models-direction"))
    await expect(names).to_have_text(["wine", "iris", "digits", "Default"], timeout=WAIT_MS)
    await page.select_option(marked("models-sort"), "LATEST_VERSION")
    await expect(names.first).to_have_text("iris", timeout=WAIT_MS)
    await page.select_option(marked("models-sort"), "NAME")
    await page.fill(marked("models-search"), "I")
    await expect(names).to_have_text(["digits", "iris", "wine"], timeout=WAIT_MS)
    await page.fill(marked("models-search"), "ri")
    await expect(names).to_have_text(["iris"], timeout=WAIT_MS)
    await page.fill(marked("models-search"), "nothing-like-it")
    await expect(page.locator(marked("models-empty"))).to_have_text(
        "No model matches the search.", timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page)


PAGED_PROJECT = """
mutation UiTestProject { projectCreate(input: {path: "paged", visibility: PUBLIC}) {
  ... on Project { path } ... on Error { message } } }
"""

PAGED_MODEL = """
mutation UiTestPagedModel($name: String!) {
  modelCreate(input: {project: "paged", displayName: $name}) {
    ... on Model { name } ... on Error { message } } }
"""


async def test_models_are_paged_by_cursor(browser_page: BrowserPage, ui_site: UiSite) -> None:
    page = browser_page.page
    server = ui_site.server
    assert server.ask(PAGED_PROJECT)["projectCreate"] == {"path": "paged"}
    names = [f"m-{number:02d}" for number in range(1, 22)]
    for name in names:
        assert server.ask(PAGED_MODEL, name=name)["modelCreate"] == {"name": name}
    await sign_in(page, ui_site.reporter)
    await open_page(page, ui_site, "/paged")
    shown = page.locator(marked("model-link"))
    first_page = ["Default", *names[:19]]
    await expect(shown).to_have_text(first_page, timeout=WAIT_MS)
    await expect(page.locator(marked("models-count"))).to_have_text("22 models")
    await expect(page.locator(marked("models-previous"))).to_be_disabled()
    await page.click(marked("models-next"))
    await expect(shown).to_have_text(names[19:], timeout=WAIT_MS)
    await expect(page.locator(marked("models-next"))).to_be_disabled()
    await page.click(marked("models-previous"))
    await expect(shown).to_have_text(first_page, timeout=WAIT_MS)
    assert_stayed_on_the_server(browser_page)


async def member_roles(page: Page) -> dict[str, str]:
    rows = page.locator(marked("member-row"))
    found: dict[str, str] = {}
    for index in range(await rows.count()):
        row = rows.nth(index)
        role = row.locator(marked("member-role"))
        tag = await role.evaluate("element => element.tagName")
        text = await role.input_value() if tag == "SELECT" else await role.inner_text()
        found[str(await row.get_attribute("data-username"))] = text
    return found


async def test_a_maintainer_manages_members_and_a_reporter_only_reads_them(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await sign_in(page, ui_site.reporter)
    await open_page(page, ui_site, "/demo/-/members")
    await expect(page.locator(marked("member-row"))).to_have_count(3, timeout=WAIT_MS)
    assert await member_roles(page) == {
        "developer": "Developer",
        "maintainer": "Maintainer",
        "reporter": "Reporter",
    }
    await expect(page.locator(marked("member-add"))).to_have_count(0)
    await expect(page.locator(marked("member-remove"))).to_have_count(0)

    await sign_in(page, ui_site.maintainer)
    await open_page(page, ui_site, f"/{ui_site.private_project}/-/members")
    await expect(page.locator(marked("member-row"))).to_have_count(1, timeout=WAIT_MS)
    await page.fill(marked("member-add-username"), "nobody")
    await page.click(marked("member-add-submit"))
    await expect(page.locator(marked("error-username"))).to_have_text(
        "User 'nobody' does not exist", timeout=WAIT_MS
    )
    await page.fill(marked("member-add-username"), "reporter")
    await page.select_option(marked("member-add-role"), "REPORTER")
    await page.click(marked("member-add-submit"))
    await expect(page.locator(marked("member-row"))).to_have_count(2, timeout=WAIT_MS)
    assert await member_roles(page) == {"maintainer": "MAINTAINER", "reporter": "REPORTER"}

    reporter_row = page.locator(f"{marked('member-row')}[data-username=reporter]")
    await reporter_row.locator(marked("member-role")).select_option("DEVELOPER")
    await expect(reporter_row.locator(marked("member-role"))).to_have_value(
        "DEVELOPER", timeout=WAIT_MS
    )
    await reporter_row.locator(marked("member-remove")).click()
    await expect(page.locator(marked("member-row"))).to_have_count(1, timeout=WAIT_MS)
    assert await member_roles(page) == {"maintainer": "MAINTAINER"}
    assert_stayed_on_the_server(browser_page)


async def test_a_token_is_shown_once_works_and_is_revoked(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    await sign_in(page, ui_site.developer)
    await open_page(page, ui_site, "/-/tokens")
    await page.fill(marked("token-name"), "ci")
    await page.click(marked("token-scope-read_api"))
    await page.click(marked("token-scope-api"))
    await page.fill(marked("token-expires"), "2099-12-31")
    await page.click(marked("token-submit"))
    secret = (await page.locator(marked("token-secret")).inner_text(timeout=WAIT_MS)).strip()
    assert re.fullmatch(r"mrpat-[\w-]+", secret)
    created = page.locator(f"{marked('token-row')}[data-name=ci]")
    await expect(created.locator("td")).to_have_text(
        ["ci", "read_api", re.compile(r".+"), "—", "Dec 31, 2099", "Revoke"], timeout=WAIT_MS
    )
    assert await viewer_with(ui_site, secret) == "developer"

    # Shown once: after leaving the page, the secret is nowhere.
    await page.click(marked("token-dismiss"))
    await expect(page.locator(marked("token-secret"))).to_have_count(0)
    await page.reload()
    await expect(created).to_have_count(1, timeout=WAIT_MS)
    assert secret not in await page.content()

    await created.locator(marked("token-revoke")).click()
    await expect(created.locator(marked("token-revoked"))).to_have_text("Revoked", timeout=WAIT_MS)
    assert await viewer_with(ui_site, secret) is None
    assert_stayed_on_the_server(browser_page)


async def viewer_with(site: UiSite, token: str) -> str | None:
    """Whom the API takes a request with this token for (None: refused)."""
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{site.url}/graphql",
            json={"query": "{ viewer { user { username } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return str(body["data"]["viewer"]["user"]["username"])


MODEL_WITH_CANDIDATES = """
mutation UiTestModel($project: String!) {
  modelCreate(input: {project: $project, displayName: "Doomed"}) {
    ... on Model { id } ... on Error { message }
  }
}
"""

CANDIDATE = """
mutation UiTestCandidate($model: ID!, $name: String!) {
  candidateCreate(input: {modelId: $model, name: $name}) {
    ... on Candidate { id } ... on Error { message }
  }
}
"""

METRICS = """
mutation UiTestMetrics($id: ID!) {
  candidateLogMetrics(input: {id: $id, metrics: [
    {name: "loss", value: 0.5, step: 0}, {name: "loss", value: 0.4, step: 1}
  ]}) { ... on Candidate { id } ... on Error { message } }
}
"""

DELETE = """
mutation UiTestDelete($id: ID!) {
  modelDelete(input: {id: $id}) { ... on JobStarted { job { id } } ... on Error { message } }
}
"""

JOB = "query UiTestJob($id: ID!) { job(id: $id) { status progress { done } } }"


async def test_a_deletion_job_is_followed_live_until_it_succeeded(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    server = ui_site.server
    model = server.ask(MODEL_WITH_CANDIDATES, project=ui_site.private_project)["modelCreate"]
    for name in ("first", "second"):
        candidate = server.ask(CANDIDATE, model=model["id"], name=name)["candidateCreate"]
        server.ask(METRICS, id=candidate["id"])
    job_id = server.ask(DELETE, id=model["id"])["modelDelete"]["job"]["id"]

    await sign_in(page, ui_site.maintainer)
    await open_page(page, ui_site, f"/{ui_site.private_project}/-/jobs?job={job_id}")
    followed = page.locator(marked("followed-job"))
    # The page learns of the job through its subscription alone.
    await expect(followed.locator(marked("job-progress"))).to_have_attribute(
        "data-status", "SUCCEEDED", timeout=WAIT_MS
    )
    finished = server.ask(JOB, id=job_id)["job"]
    assert finished["status"] == "SUCCEEDED"
    await expect(followed.locator(marked("job-status"))).to_have_text("SUCCEEDED")
    await expect(followed.locator(marked("job-done"))).to_have_text(
        f"{finished['progress']['done']} done"
    )
    assert finished["progress"]["done"] >= 2
    await expect(page.locator(f"{marked('job-row')}[data-status=SUCCEEDED]")).to_have_count(
        1, timeout=WAIT_MS
    )
    assert_stayed_on_the_server(browser_page)


async def test_the_links_mlflow_prints_open_the_matching_pages(
    browser_page: BrowserPage, ui_site: UiSite
) -> None:
    page = browser_page.page
    printed = re.search(r"View run run-12 at: (\S+)", ui_site.view_run_output)
    assert printed is not None, ui_site.view_run_output
    run_link = printed.group(1)
    tracking_uri = f"{ui_site.url}/projects/demo/mlflow"
    assert run_link == (
        f"{tracking_uri}/#/experiments/{ui_site.experiment_id}/runs/{ui_site.model_run.run_id}"
    )
    await sign_in(page, ui_site.reporter)
    links = {
        run_link: f"/demo/-/models/iris/candidates/{ui_site.model_run.iid}",
        f"{tracking_uri}/#/experiments/{ui_site.experiment_id}": "/demo/-/models/iris",
        f"{tracking_uri}/#/models/iris/versions/1": "/demo/-/models/iris/versions/1.0.0",
        f"{tracking_uri}/#/models/iris": "/demo/-/models/iris",
        f"{tracking_uri}/": "/demo",
        # What a client with `mlflow.set_workspace("demo")` prints: the root tracking URI.
        f"{ui_site.url}/#/experiments/{ui_site.experiment_id}?workspace=demo": (
            "/demo/-/models/iris"
        ),
    }
    for link, landing in links.items():
        await page.goto(link)
        await expect(page).to_have_url(f"{ui_site.url}{landing}", timeout=WAIT_MS)
    # A run this project does not have is not found.
    await page.goto(f"{tracking_uri}/#/experiments/1/runs/0123456789abcdef")
    await expect(page.locator(marked("not-found"))).to_be_visible(timeout=WAIT_MS)
    assert_stayed_on_the_server(browser_page)
