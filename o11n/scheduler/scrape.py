"""Scraping services' tasks: their metrics pages read on a schedule, re-exported on /metrics.

A service's `metrics` section names one of its ports, a path, a frequency, a
timeout and a format: `prometheus` (the text exposition format) or `distcc`
(distccd's stats page: a `<distccstats>` block of `name value` lines, some
values strings). The latest samples of every running task are kept and
exported with `service`, `task` and `agent` labels, next to `o11n_scrape_up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from o11n.core.services import MetricsSpec

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5
MAX_PAGE_BYTES = 4 * 1024 * 1024
DISTCC_BLOCK = re.compile(r"<distccstats>\s*\n(.*?)</distccstats>", re.DOTALL)
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(frozen=True, slots=True)
class Sample:
    """One value read from a task."""

    name: str
    labels: dict[str, str]
    value: float
    kind: str = "gauge"


@dataclass(frozen=True, slots=True)
class Target:
    """A running task to scrape."""

    service: str
    task: int
    agent: str
    url: str
    spec: MetricsSpec


@dataclass
class Scraped:
    """What the last scrape of a task found."""

    target: Target
    up: bool = False
    at: float = 0.0
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)
    strings: dict[str, str] = field(default_factory=dict)


def parse_distcc(text: str) -> tuple[list[Sample], dict[str, str]]:
    """distccd's stats page: numeric values as samples, the others as strings."""
    match = DISTCC_BLOCK.search(text)
    if match is None:
        raise ValueError("no <distccstats> block in the page")
    samples, strings = [], {}
    for line in match.group(1).splitlines():
        key, _, value = line.strip().partition(" ")
        if not key or not NAME.match(key):
            continue
        try:
            samples.append(Sample(key, {}, float(value)))
        except ValueError:
            strings[key] = value.strip()
    return samples, strings


def parse_prometheus(text: str) -> list[Sample]:
    """The Prometheus text format, as samples (histogram and summary parts included)."""
    return [
        Sample(s.name, dict(s.labels), float(s.value), family.type)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


class Scraper:
    """Reads every target on its own schedule; keeps the latest of each."""

    def __init__(self, targets: Callable[[], list[Target]]) -> None:
        self._targets = targets
        self.latest: dict[tuple[str, int], Scraped] = {}
        self._due: dict[tuple[str, int], float] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        """Scrape until cancelled."""
        self._client = httpx.AsyncClient()
        try:
            while True:
                self._tick()
                await asyncio.sleep(TICK_SECONDS)
        finally:
            for task in self._running:
                task.cancel()
            await self._client.aclose()

    def _tick(self) -> None:
        now = time.monotonic()
        targets = {(t.service, t.task): t for t in self._targets()}
        for key in [k for k in self.latest if k not in targets]:
            del self.latest[key]  # the task is gone: so are its samples
            self._due.pop(key, None)
        for key, target in targets.items():
            if now >= self._due.get(key, 0.0):
                self._due[key] = now + target.spec.frequency
                task = asyncio.create_task(self._scrape(target))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _scrape(self, target: Target) -> None:
        assert self._client is not None
        found = Scraped(target, at=time.time())
        try:
            response = await self._client.get(
                target.url, headers=target.spec.headers, timeout=target.spec.timeout
            )
            response.raise_for_status()
            if len(response.content) > MAX_PAGE_BYTES:
                raise ValueError(f"the page is larger than {MAX_PAGE_BYTES} bytes")
            if target.spec.format == "distcc":
                found.samples, found.strings = parse_distcc(response.text)
            else:
                found.samples = parse_prometheus(response.text)
            found.up = True
        except (httpx.HTTPError, ValueError) as exc:
            found.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if (target.service, target.task) in self._due:  # not gone meanwhile
            self.latest[(target.service, target.task)] = found


class ScrapeCollector(Collector):
    """The latest scraped samples, and `o11n_scrape_up`, for /metrics."""

    def __init__(self, scraper: Scraper) -> None:
        self._scraper = scraper

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "o11n_scrape_up",
            "1 when the last scrape of a service task succeeded, else 0.",
            labels=["service", "task", "agent"],
        )
        families: dict[str, Metric] = {}
        for (service, index), found in sorted(self._scraper.latest.items()):
            base = {"service": service, "task": str(index), "agent": found.target.agent}
            up.add_metric([service, str(index), found.target.agent], 1.0 if found.up else 0.0)
            for s in found.samples:
                family = families.get(s.name)
                if family is None:
                    family = families[s.name] = Metric(
                        s.name, "Scraped from service tasks.", "untyped"
                    )
                with contextlib.suppress(ValueError):
                    family.add_sample(s.name, {**s.labels, **base}, s.value)
        yield up
        yield from families.values()
