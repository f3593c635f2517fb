"""Parsing scraped pages, and re-exporting them with service, task and agent labels."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from o11n.core.services import MetricsSpec
from o11n.scheduler.scrape import (
    ScrapeCollector,
    Scraped,
    Scraper,
    Target,
    parse_distcc,
    parse_prometheus,
)
from tests.e2e.distcc_farm import SAMPLE_STATS as DISTCC_PAGE


def test_distcc_pages_give_numbers_as_samples_and_the_rest_as_strings() -> None:
    samples, strings = parse_distcc(DISTCC_PAGE)
    values = {s.name: s.value for s in samples}
    assert values == {
        "dcc_tcp_accept": 12.0,
        "dcc_compile_ok": 12.0,
        "dcc_longest_job_time_msecs": -1.0,
        "dcc_load1": 1.67,
    }
    assert strings == {
        "dcc_longest_job": "lapi.c",
        "dcc_max_RSS_name": "(python)",
        "dcc_free_space": "80971 MB",
    }
    with pytest.raises(ValueError, match="distccstats"):
        parse_distcc("argv /distccd\n")


def test_prometheus_pages_keep_labels_and_types() -> None:
    samples = parse_prometheus('# TYPE builds_total counter\nbuilds_total{kind="c"} 3\ntemp 21.5\n')
    assert [(s.name, s.labels, s.value, s.kind) for s in samples] == [
        ("builds_total", {"kind": "c"}, 3.0, "counter"),
        ("temp", {}, 21.5, "unknown"),
    ]
    with pytest.raises(ValueError):
        parse_prometheus("this is { not prometheus\n")


def test_the_collector_exports_up_and_samples_per_task() -> None:
    spec = MetricsSpec(port="STATS", format="distcc")
    scraper = Scraper(list)
    good = Target("build/distcc", 0, "w1", "http://127.0.0.2:1/", spec)
    bad = Target("build/distcc", 1, "w2", "http://127.0.0.3:1/", spec)
    samples, strings = parse_distcc(DISTCC_PAGE)
    scraper.latest[("build/distcc", 0)] = Scraped(good, True, 1.0, None, samples, strings)
    scraper.latest[("build/distcc", 1)] = Scraped(bad, False, 1.0, "ReadError")
    registry = CollectorRegistry()
    registry.register(ScrapeCollector(scraper))
    text = generate_latest(registry).decode()
    assert 'o11n_scrape_up{agent="w1",service="build/distcc",task="0"} 1.0' in text
    assert 'o11n_scrape_up{agent="w2",service="build/distcc",task="1"} 0.0' in text
    assert 'dcc_compile_ok{agent="w1",service="build/distcc",task="0"} 12.0' in text
    assert 'task="1"} 12' not in text  # a task that is down has no samples
