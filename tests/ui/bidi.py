"""A small WebDriver BiDi client: a headless Firefox with a fresh profile, and its pages.

Firefox speaks WebDriver BiDi itself (no geckodriver): started with
`--remote-debugging-port=0` it prints the port it listens on, and a client opens
`ws://127.0.0.1:PORT/session` and sends `session.new`. Only what the dashboard's tests use
is here: pages in isolated user contexts, navigate, evaluate, wait for a condition,
screenshot, and the page's uncaught JavaScript errors.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
# No first-run pages, update checks, telemetry or other calls home; Firefox's remote agent
# adds its own recommended automation prefs on top of these.
PREFS = {
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.safebrowsing.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


class BiDiError(Exception):
    """The browser answered a command with an error, or a script threw."""


class Firefox:
    """One WebDriver BiDi session with a running Firefox."""

    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.log_entries: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """Run one command and return its result; events that arrive meanwhile are kept."""
        command_id = next(self.ids)
        self.ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                message = json.loads(self.ws.recv(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                raise TimeoutError(f"Firefox did not answer {method} in time") from None
            if message.get("type") == "event" and message["method"] == "log.entryAdded":
                self.log_entries.append(message["params"])
            elif message.get("id") == command_id:
                if message["type"] == "error":
                    raise BiDiError(f"{method}: {message['error']}: {message['message']}")
                return message["result"]

    @contextlib.contextmanager
    def page(self, width: int = 1440, height: int = 900) -> Iterator[Page]:
        """A new tab in its own user context (empty storage and cookies), closed after."""
        user_context = self.send("browser.createUserContext", {})["userContext"]
        try:
            created = self.send(
                "browsingContext.create", {"type": "tab", "userContext": user_context}
            )
            page = Page(self, created["context"])
            viewport = {"width": width, "height": height}
            self.send(
                "browsingContext.setViewport", {"context": page.context, "viewport": viewport}
            )
            yield page
        finally:
            self.send("browser.removeUserContext", {"userContext": user_context})


class Page:
    """A top-level browsing context (a tab)."""

    def __init__(self, browser: Firefox, context: str) -> None:
        self.browser = browser
        self.context = context

    def navigate(self, url: str) -> None:
        """Go to `url` and wait for the document to load (a new hash only changes the hash)."""
        params = {"context": self.context, "url": url, "wait": "complete"}
        self.browser.send("browsingContext.navigate", params)

    def evaluate(self, script: str, *args: Any) -> Any:
        """The JSON value of a JavaScript expression, promises awaited; with `args`, `script`
        is a function, called with them (JSON values)."""
        if args:
            script = f"({script})(...{json.dumps(list(args))})"
        source = f"(async () => JSON.stringify(await ({script})) ?? 'null')()"
        params = {"expression": source, "target": {"context": self.context}, "awaitPromise": True}
        result = self.browser.send("script.evaluate", params)
        if result["type"] == "exception":
            raise BiDiError(f"{script}: {result['exceptionDetails']['text']}")
        return json.loads(result["result"]["value"])

    def wait_for(self, script: str, what: str, timeout: float = 20.0) -> Any:
        """Evaluate `script` until its value is truthy, and return that; else fail, saying
        `what` was awaited and what the page showed."""
        deadline = time.monotonic() + timeout
        error = ""
        while True:
            try:
                value, error = self.evaluate(script), ""
            except BiDiError as exc:  # a page in the middle of loading, or a broken script
                value, error = None, f"\nthe script threw: {exc}"
            if value:
                return value
            if time.monotonic() > deadline:
                shown = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(
                    f"not within {timeout:g}s: {what}\n({script}){error}\nthe page at "
                    f"{self.evaluate('location.href')} shows:\n{str(shown)[:1500]}"
                )
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        """Save the viewport as a PNG."""
        result = self.browser.send("browsingContext.captureScreenshot", {"context": self.context})
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def errors(self) -> list[str]:
        """The uncaught JavaScript errors (and unhandled rejections) of this page so far."""
        self.evaluate("0")  # a round trip, so that events already sent have arrived
        return [
            _described(entry)
            for entry in self.browser.log_entries
            if entry["type"] == "javascript" and entry["source"].get("context") == self.context
        ]


def _described(entry: dict[str, Any]) -> str:
    frames = entry.get("stackTrace", {}).get("callFrames", [])
    where = f" ({frames[0]['url']}:{frames[0]['lineNumber'] + 1})" if frames else ""
    return f"{entry.get('text')}{where}"


@contextlib.contextmanager
def launch(executable: str, timeout: float = 30.0) -> Iterator[Firefox]:
    """Start a headless Firefox on a fresh profile and open a BiDi session with it. On the
    way out, whatever happened, the browser and its child processes are stopped and the
    profile is removed."""
    with contextlib.ExitStack() as cleanup:
        home = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="o11n-firefox-")))
        profile = home / "profile"
        profile.mkdir()
        user_js = "".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()
        )
        (profile / "user.js").write_text(user_js)
        output = cleanup.enter_context((home / "firefox.log").open("wb"))
        argv = [executable, "--headless", "--no-remote", "--remote-debugging-port=0"]
        process = subprocess.Popen(
            [*argv, "--profile", str(profile), "about:blank"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
            start_new_session=True,  # its content processes share its process group
        )
        cleanup.callback(_stop, process)
        url = _listening_url(process, home / "firefox.log", timeout)
        ws = cleanup.enter_context(
            connect(f"{url}/session", proxy=None, max_size=None, ping_interval=None)
        )
        browser = Firefox(ws, timeout)
        browser.send("session.new", {"capabilities": {}})
        browser.send("session.subscribe", {"events": ["log.entryAdded"]})
        cleanup.callback(_close, browser)
        yield browser


def _listening_url(process: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not (found := LISTENING.search(log.read_text(errors="replace"))):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Firefox did not start its WebDriver BiDi server:\n{tail}")
        time.sleep(0.05)
    return found.group(1)


def _close(browser: Firefox) -> None:
    with contextlib.suppress(Exception):  # the browser may be gone already
        browser.send("browser.close", {}, timeout=5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
