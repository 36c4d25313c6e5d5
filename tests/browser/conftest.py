"""Browser journeys: Debian's chromium driven by Playwright through the real servers.

Each test gets a fresh browser context (its own cookies) and a :class:`Journey` that takes
screenshots as it goes, into ``test-artifacts/browser/<test>/`` (and a last one when the test
fails). With ``MSGCENTER_DOC_SCREENSHOTS=1`` the shots a journey names for the documentation
are also written to ``docs/console/`` (``make screenshots``), which ``docs/console.md`` shows.

Without a chromium the tests are skipped, unless ``MSGCENTER_TEST_BROWSER=required`` (as in
CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.platform import Platform, running_platform

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOC_SHOTS = ROOT / "docs" / "console"
CHROMIUM = os.environ.get("MSGCENTER_CHROMIUM", "/usr/bin/chromium")
#: how long an expectation waits for the page (a loaded machine is slow, never wrong)
WAIT_MS = 20_000


# Module scope, not session: while Playwright's sync driver is started, its event loop counts
# as running in this thread, so asyncio.run() fails ("cannot be called from a running event
# loop") in any other test the same xdist worker runs meanwhile. A module's end stops it.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # checked before Playwright starts: a driver started and then abandoned by a failing
    # fixture would leave its event loop behind for every later test of this process
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        message = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("MSGCENTER_TEST_BROWSER") == "required":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless (Playwright's own browser download cannot work here)."""
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    yield launched
    launched.close()


class Journey:
    """One browser tab of a test, with numbered screenshots of the steps it reaches."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self._count = 0
        #: patterns of the browser's console errors this journey provokes on purpose
        self.tolerated: list[str] = [r"status of 4\d\d"]

    def shot(self, step: str, *, doc: str | None = None) -> Path:
        """A full-page screenshot of the current page, named after ``step``; ``doc`` also
        names it for ``docs/console/`` when the documentation's shots are being taken."""
        self._count += 1
        path = self.folder / f"{self._count:02d}-{_slug(step)}.png"
        self.page.screenshot(path=path, full_page=True)
        if doc and os.environ.get("MSGCENTER_DOC_SCREENSHOTS") == "1":
            DOC_SHOTS.mkdir(parents=True, exist_ok=True)
            # JPEG for the repository: a tenth of the PNG's weight
            self.page.screenshot(
                path=DOC_SHOTS / f"{doc}.jpg", full_page=True, type="jpeg", quality=70
            )
        return path

    def log_in(self, url: str, login: str, password: str) -> None:
        """Open ``url``'s console and log in; ends on the console's first page."""
        self.page.goto(f"{url}/console/login")
        self.page.get_by_label("Login").fill(login)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("button", name="Log out")).to_be_visible()

    def go(self, url: str) -> None:
        """Open ``url`` and wait for it to load."""
        self.page.goto(url)

    def flash(self) -> str:
        """The message the last action left at the top of the page."""
        flash = self.page.locator("p.flash")
        expect(flash).to_be_visible()
        return flash.inner_text()

    def chart(self, name: str) -> Any:
        """The data of the chart ``canvas[data-chart=name]`` as Chart.js holds it (labels and
        datasets), read from the chart object itself, not from the picture."""
        canvas = self.page.locator(f'canvas[data-chart="{name}"]')
        expect(canvas).to_be_visible()
        self.page.wait_for_function(
            "name => { const c = document.querySelector(`canvas[data-chart='${name}']`);"
            " return c && window.Chart && Chart.getChart(c) !== undefined; }",
            arg=name,
        )
        return self.page.evaluate(
            "name => { const chart = Chart.getChart("
            "document.querySelector(`canvas[data-chart='${name}']`));"
            " return {type: chart.config.type, labels: chart.data.labels,"
            " datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))}; }",
            name,
        )


@pytest.fixture
def journey(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Journey]:
    """A fresh browser context and tab; a screenshot is kept of the page a failing test left."""
    folder = ARTIFACTS / _slug(request.node.nodeid.split("::", 1)[-1])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    walked = Journey(page, folder)
    yield walked
    failed = getattr(request.node, "failed_call", False)
    if failed:
        walked.shot("failure")
    context.close()
    # a script error or a violation of the Content-Security-Policy is a failure of its own
    if not failed:
        assert not [e for e in errors if not any(re.search(t, e) for t in walked.tolerated)], errors


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80]


@pytest.fixture
def platform(db, control_db, smtp_server) -> Iterator[Platform]:  # type: ignore[no-untyped-def]
    """A control and an execution instance on the test's store, mail to ``smtp_server``."""
    with running_platform(db, control_db, smtp_server) as running:
        yield running
