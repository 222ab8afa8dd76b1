"""What a web page can do to a default grid, tried in a real browser (Debian's chromium) against
real `gridrun` processes with no tokens, as `gridrun up` runs: a page of another origin that
submits with fetch and with a form, cancels and drains; a DNS-rebinding name for 127.0.0.1; a
frame on another site around the dashboard. Nothing may be created or changed, and nothing read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright

from tests.browser.conftest import launch
from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REBOUND = "rebind.gridrun.test"


class AttackerSite:
    """A web server on another loopback port (so another origin) serving one page."""

    def __init__(self) -> None:
        self.html = b""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(site.html)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker() -> Iterator[AttackerSite]:
    site = AttackerSite()
    try:
        yield site
    finally:
        site.close()


@pytest.fixture(scope="module")
def rebinding_browser(playwright: Playwright) -> Iterator[Browser]:
    """A browser whose resolver answers 127.0.0.1 for the attacker's name: what DNS rebinding
    achieves once the name's short TTL runs out."""
    browser = launch(playwright, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1")
    try:
        yield browser
    finally:
        browser.close()


def _tasks(grid: SystemGrid) -> list[dict[str, object]]:
    listing: list[dict[str, object]] = httpx.get(f"{grid.url}/v1/tasks", timeout=10).json()["tasks"]
    return listing


@pytest.fixture
def visitor(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context, for visiting the attacker's pages (whose blocked frames are
    reported as policy violations: expected here, unlike on the dashboard's own pages)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_page_of_another_origin_cannot_submit_cancel_or_drain(
    system_grid: SystemGrid, visitor: Page, attacker: AttackerSite
) -> None:
    page = visitor
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    marker = system_grid.tmp / "pwned"
    # a task no worker can take: it stays queued, to be cancelled by the page if it could
    submitted = system_grid.cli("submit", "--json", "--on", "nobody=here", "--", "true")
    victim = json.loads(submitted.stdout)
    target = system_grid.url
    body = '{"cmd": "touch ' + str(marker) + '"}'
    attacker.html = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}/tasks" enctype="text/plain">
  <input type="hidden" name='{{"cmd": "touch {marker}-form", "x": "' value='"}}'>
</form>
<form id="g" method="POST" target="sink" action="{target}/v1/tasks/{victim["id"]}/cancel"></form>
<iframe name="sink"></iframe>
<script>
  const sent = [];
  const hit = (url, opts) => fetch(url, {{mode: "no-cors", method: "POST", ...opts}})
    .then(() => sent.push(url), () => sent.push(url));
  Promise.all([
    hit("{target}/v1/tasks", {{headers: {{"Content-Type": "text/plain"}}, body: '{body}'}}),
    hit("{target}/tasks", {{headers: {{"Content-Type": "text/plain"}}, body: '{body}'}}),
    hit("{target}/v1/tasks", {{body: new Blob(['{body}'])}}),
    hit("{target}/v1/jobs", {{headers: {{"Content-Type": "text/plain"}}, body: '{body}'}}),
    hit("{target}/v1/schedules", {{headers: {{"Content-Type": "text/plain"}},
        body: '{{"cron": "* * * * *", "cmd": "touch {marker}-cron"}}'}}),
    hit("{target}/v1/tasks/{victim["id"]}/cancel", {{}}),
    hit("{target}/v1/workers/w1/drain", {{}}),
  ]).then(() => {{ document.title = "sent " + sent.length; }});
  document.getElementById("g").submit();
</script></body></html>""".encode()
    page.goto(attacker.url)
    page.wait_for_function("document.title === 'sent 7'", timeout=15000)
    # and the classic form post, as a navigation of the whole page
    with page.expect_navigation(url=f"{target}/tasks"):  # its answer has loaded: refused
        page.evaluate("document.getElementById('f').submit()")
    page.goto("about:blank")

    tasks = _tasks(system_grid)
    assert [t["id"] for t in tasks] == [victim["id"]], tasks  # nothing created
    assert tasks[0]["state"] == "queued"  # not cancelled
    schedules = httpx.get(f"{target}/v1/schedules", timeout=10).json()["schedules"]
    assert schedules == []
    assert system_grid.worker_state("w1") == "online"  # not drained
    assert not list(system_grid.tmp.glob("pwned*"))


def test_a_rebound_name_for_the_master_gets_nothing(
    system_grid: SystemGrid, rebinding_browser: Browser
) -> None:
    system_grid.start_master()
    assert system_grid.cli("submit", "--name", "private-report", "--", "true").returncode == 0
    context = rebinding_browser.new_context()
    try:
        page = context.new_page()
        origin = f"http://{REBOUND}:{system_grid.http_port}"
        response = page.goto(origin + "/")
        assert response is not None
        assert response.status == 403  # not the dashboard
        # the attacker's script now runs same-origin with the master, as the browser sees it
        result = page.evaluate(
            """async () => {
                const read = await fetch("/v1/tasks").then(r => r.status + " " + r.statusText);
                const write = await fetch("/v1/tasks", {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({cmd: "echo rebound"})}).then(r => r.status);
                const text = await fetch("/v1/tasks").then(r => r.text());
                return {read, write, leaked: text.includes("private-report")};
            }"""
        )
    finally:
        context.close()
    assert result["read"].startswith("403"), result
    assert result["write"] == 403, result
    assert result["leaked"] is False
    assert len(_tasks(system_grid)) == 1


def test_the_dashboard_cannot_be_framed_by_another_site(
    system_grid: SystemGrid, visitor: Page, attacker: AttackerSite
) -> None:
    page = visitor
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    attacker.html = (
        f'<!doctype html><iframe id="victim" src="{system_grid.url}/#/workers"'
        ' width="800" height="600"></iframe>'
    ).encode()
    page.goto(attacker.url)
    page.wait_for_load_state("load")
    frame = next(f for f in page.frames if f != page.main_frame)

    def settled() -> bool:
        return frame.url != "about:blank"

    eventually(settled, 10, 0.1)
    # the browser refused to render it: no Drain button to click through the frame
    assert frame.locator("#token-button").count() == 0
    assert frame.locator("text=Drain").count() == 0
    # the same page opened directly is the dashboard (the check above is not vacuous)
    page.goto(system_grid.url + "/#/workers")
    page.locator("text=Drain").first.wait_for(timeout=10000)
