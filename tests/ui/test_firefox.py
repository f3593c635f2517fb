"""The dashboard's user journeys in a real headless Firefox (over WebDriver BiDi): sign in,
the live overview, a pipeline's boxes, a failing job's coloured log, cancel and retry, the
pool's admin actions, and a tenant kept to its own jobs. The page is driven through its DOM,
as a user's clicks and typing would."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from o11n.client import Client
from tests.e2e.jobs import wait_final, wait_running
from tests.servers import ServerProcess
from tests.ui.bidi import Page
from tests.ui.conftest import SCREENSHOTS
from tests.ui.test_dashboard import FAILING, PIPELINE, loud_job, two_tenants

# document.querySelector's first match, or of the elements matching `selector`, the first
# whose text contains `text` (as Playwright's has_text filter does).
FIND = """(selector, text) => [...document.querySelectorAll(selector)]
  .find((el) => text === null || el.textContent.includes(text))"""


def find(page: Page, selector: str, text: str | None = None, timeout: float = 20.0) -> None:
    """Wait until an element matches `selector` (and contains `text`)."""
    script = f"(() => !!({FIND})({_js(selector)}, {_js(text)}))()"
    shown = f" with the text {text!r}" if text is not None else ""
    page.wait_for(script, f"an element {selector}{shown}", timeout)


def text_of(page: Page, selector: str) -> str:
    """The rendered text (innerText) of the first element matching `selector`."""
    found = page.evaluate("(s) => document.querySelector(s)?.innerText ?? null", selector)
    assert found is not None, f"nothing matches {selector} on {page.evaluate('location.href')}"
    return str(found)


def texts_of(page: Page, selector: str) -> list[str]:
    """The rendered texts of all elements matching `selector`."""
    found = page.evaluate(
        "(s) => [...document.querySelectorAll(s)].map((e) => e.innerText)", selector
    )
    return list(found)


def click(page: Page, selector: str, text: str | None = None) -> None:
    """Click the first enabled element matching `selector` (and containing `text`), once it
    is there."""
    script = f"""(() => {{
      const el = ({FIND})({_js(selector)}, {_js(text)});
      if (!el || el.disabled) return false;
      el.click();
      return true;
    }})()"""
    shown = f" with the text {text!r}" if text is not None else ""
    page.wait_for(script, f"an enabled {selector}{shown} to click")


def fill(page: Page, selector: str, value: str) -> None:
    """Type `value` into an input: set it and fire the input event a keyboard would."""
    find(page, selector)
    page.evaluate(
        """(s, value) => {
          const input = document.querySelector(s);
          input.focus();
          input.value = value;
          input.dispatchEvent(new InputEvent("input", {bubbles: true, data: value}));
        }""",
        selector,
        value,
    )


def screenshot(page: Page, name: str) -> None:
    """Save the viewport as docs/screenshots/firefox-NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = page.screenshot(SCREENSHOTS / f"firefox-{name}.png")
    assert path.stat().st_size > 10_000, f"{path} is too small to show the page"


def sign_in(page: Page, server: ServerProcess, token: str | None = None) -> None:
    """Open the dashboard and sign in with `token` (default: the admin's)."""
    page.navigate(server.url + "/")
    fill(page, "#token", token or server.token)
    click(page, "form.signin button[type=submit]", "Sign in")
    find(page, "#who", "admin" if token is None else "tenant ")


def url_of(page: Page) -> str:
    return str(page.evaluate("location.href"))


def _js(value: Any) -> str:
    """`value` as a JavaScript literal."""
    return json.dumps(value)


def test_sign_in_with_a_bad_token_then_a_good_one(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    page.navigate(pool.url + "/")
    find(page, "label[for=token]", "API token")
    assert page.evaluate("document.activeElement.id") == "token"
    screenshot(page, "signin")
    fill(page, "#token", "o11n_adm_not-a-token")
    click(page, "form.signin button[type=submit]", "Sign in")
    find(page, "[role=alert]", "not valid")
    assert text_of(page, "#who") == ""
    sign_in(page, pool)
    assert text_of(page, "#who") == "admin"
    assert page.evaluate("sessionStorage.getItem('o11n.token')") == pool.token
    assert page.evaluate("document.title") == "o11n · overview"
    click(page, "#sign-out", "Sign out")
    find(page, "#token")
    assert page.evaluate("sessionStorage.getItem('o11n.token')") is None
    assert page.evaluate("document.getElementById('sign-out').hidden") is True


def test_overview_counts_jobs_live(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    with Client(pool.url, pool.token) as client:
        done = [client.submit({"command": ["true"], "name": f"quick {i}"}) for i in range(3)]
        for job_id in done:
            wait_final(client, job_id)
        sign_in(page, pool)
        find(page, '[data-counter="workers online"]', "2")
        find(page, 'table[aria-label="Recent jobs"] td', "quick 2")
        recent = text_of(page, 'table[aria-label="Recent jobs"]')
        assert all(f"quick {i}" in recent for i in range(3)) and "succeeded" in recent
        blocked = client.submit({"command": ["true"], "tags": {"pool": "none"}, "name": "waits"})
        find(page, '[data-counter="queued"]', "1")  # the overview polls: no reload
        find(page, 'table[aria-label="Queued jobs"] td', "waits")
        find(page, "svg.chart rect.bar-ok", timeout=40)
        find(page, 'table[aria-label="Tenants"] td', "default")
        screenshot(page, "overview")
        client.cancel(blocked)
        find(page, '[data-counter="queued"]', "0")
        assert "waits" not in text_of(page, 'table[aria-label="Queued jobs"]')


def test_a_pipeline_s_boxes_turn_green(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        body = {"pipeline": PIPELINE, "file_name": "hello.yml"}
        pipeline_id = int(client.request("POST", "/api/v1/pipelines", body=body)["id"])
    page.navigate(f"{pool.url}/#/pipelines/{pipeline_id}")
    page.wait_for("document.querySelectorAll('.box').length === 4", "the pipeline's 4 boxes")
    find(page, ".box.state-running, .box.state-queued")
    page.wait_for(
        "document.querySelectorAll('.box.state-succeeded').length === 4",
        "all 4 boxes green (state-succeeded)",
        timeout=60,
    )
    find(page, ".panel-head .badge.state-succeeded", "succeeded")
    assert texts_of(page, ".stage h2") == ["build", "test"]
    assert "attempt 1" in text_of(page, '[data-substage="compile"]')
    colours = page.evaluate(
        """(() => { const s = getComputedStyle(document.querySelector('.box.state-succeeded'));
          return [s.borderLeftColor, s.backgroundColor]; })()"""
    )
    assert colours == ["rgb(26, 127, 55)", "rgb(218, 251, 225)"]  # --ok and --ok-bg: green
    screenshot(page, "pipeline")
    click(page, '[data-substage="unit[shard=2]"]')
    page.wait_for("/#\\/jobs\\/\\d+$/.test(location.hash)", "the box's job page")
    find(page, "#log .log-line", "shard 2")
    assert re.search(rf"p{pipeline_id}\b", text_of(page, ".facts"))


def test_a_failing_job_s_live_log(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        job_id = client.submit({"command": FAILING, "name": "breaks", "tags": {"os": "linux"}})
        page.navigate(f"{pool.url}/#/jobs/{job_id}")
        find(page, "#log .log-line", "it broke")
        assert client.get(job_id).state in ("running", "assigned")  # read while it runs
        assert text_of(page, "#log .ansi-fg2.ansi-bold") == "compiling"
        assert text_of(page, "#log .stderr .ansi-fg1") == "error:"
        style = page.evaluate(
            """(() => { const s = getComputedStyle(document.querySelector('#log .ansi-fg2'));
              return [s.color, s.fontWeight]; })()"""
        )
        assert style == ["rgb(63, 185, 80)", "700"]  # .ansi-fg2 and .ansi-bold in app.css
        assert "\x1b" not in text_of(page, "#log")
        assert "compiling step 1" in text_of(page, "#log")
        find(page, "#log .log-line", "last words")
        find(page, ".panel-head .badge.state-failed", "failed")
        find(page, 'table[aria-label="Attempts"] td', "3")
        attempts = text_of(page, 'table[aria-label="Attempts"]')
        assert re.search(r"w[12]", attempts)
        find(page, 'ol[aria-label="Events"] li', "failed")
        assert "last words" in text_of(page, "pre.command")
        screenshot(page, "job")
        assert wait_final(client, job_id).exit_code == 3


def test_cancel_a_running_job_from_its_page(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        job_id = client.submit({"command": "echo started; sleep 60", "name": "long"})
        wait_running(client, job_id)
        page.navigate(f"{pool.url}/#/jobs/{job_id}")
        find(page, "#log .log-line", "started")
        assert page.evaluate(RETRY_DISABLED) is True
        click(page, ".actions button.danger", "Cancel")
        find(page, ".panel-head .badge.state-cancelled", "cancelled")
        assert wait_final(client, job_id).state == "cancelled"
        click(page, ".actions button", "Retry")
        page.wait_for(
            f"/^#\\/jobs\\/\\d+$/.test(location.hash) && location.hash !== '#/jobs/{job_id}'",
            "the retried job's page",
        )
        retried = int(url_of(page).rsplit("/", 1)[1])
        again = client.get(retried)
        assert again.command == "echo started; sleep 60"
        assert again.labels["retry-of"] == str(job_id)
        client.cancel(retried)


RETRY_DISABLED = """[...document.querySelectorAll('.actions button')]
  .find((b) => b.textContent === 'Retry').disabled"""


def test_megabytes_of_log_keep_the_page_responsive(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    sign_in(page, pool)
    job_id = loud_job(pool)
    page.navigate(f"{pool.url}/#/jobs/{job_id}")
    page.wait_for(
        "document.querySelector('#log .log-line:last-child')?.textContent.startsWith('line 39999')",
        "the log's last line",
        timeout=40,
    )
    assert page.evaluate("document.querySelectorAll('#log .log-line').length") <= 5000
    assert "35000 earlier lines" in text_of(page, "#log .log-notice").replace(",", "")
    at_end = page.evaluate(
        "(() => { const l = document.getElementById('log');"
        " return l.scrollHeight - l.scrollTop - l.clientHeight < 30; })()"
    )
    assert at_end


def test_the_pool_page_drains_disables_and_enables(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    sign_in(page, pool)
    page.navigate(f"{pool.url}/#/pool")
    find(page, 'table[aria-label="Agents"] td', "w2")
    find(page, "main p", "autoscaling is off")
    screenshot(page, "pool")
    click(page, 'button[aria-label="Disable w1"]')
    find(page, 'button[aria-label="Enable w1"]')
    with Client(pool.url, pool.token) as client:
        agents_now = client.request("GET", "/api/v1/agents")["agents"]
        assert next(a for a in agents_now if a["name"] == "w1")["disabled"]
    click(page, 'button[aria-label="Enable w1"]')
    find(page, 'button[aria-label="Disable w1"]')
    click(page, 'button[aria-label="Drain w2"]')
    page.wait_for(
        """[...document.querySelectorAll('table[aria-label="Agents"] tr')]
          .some((tr) => tr.textContent.includes('w2')
            && /draining|offline/.test(tr.querySelector('.badge').textContent))""",
        "w2 draining (or gone offline)",
    )


def test_a_tenant_sees_only_its_own_tenant(firefox_page: Page, pool: ServerProcess) -> None:
    page = firefox_page
    tokens, theirs = two_tenants(pool)
    sign_in(page, pool, tokens["team-b"])
    assert text_of(page, "#who") == "tenant team-b"
    find(page, 'table[aria-label="Recent jobs"] td', "b's job")
    assert "a's job" not in text_of(page, 'table[aria-label="Recent jobs"]')
    page.navigate(f"{pool.url}/#/jobs/{theirs}")
    find(page, "main h1", "Job not found")
    assert f"There is no job #{theirs} you may see." in text_of(page, "[role=alert]")
    assert "secret" not in page.evaluate("document.documentElement.outerHTML")
    screenshot(page, "not-found")
    page.navigate(f"{pool.url}/#/pool")
    find(page, "main", "The pool's agents are shown to admin tokens.")
    # Hidden is not enough: the API itself refuses the tenant the admin's actions.
    refused = httpx.post(
        f"{pool.url}/api/v1/agents/w1/disable",
        headers={"Authorization": f"Bearer {tokens['team-b']}"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
