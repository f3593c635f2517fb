"""Instance catalogs and workload traces: what loads, and where a bad one is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from o11n.autoscale.catalog import load_catalog, load_trace, parse_catalog, parse_tags, parse_trace
from o11n.errors import BadRequest, SpecError

EXAMPLES = Path(__file__).parents[2] / "examples" / "autoscale"
G = 2**30
ONE = """\
currency: CNY
types:
  - {name: ecs.c6.2xlarge, cpu: 8, memory: 16G, gpu: 0, arch: x86_64,
     zones: [cn-beijing-h, cn-beijing-i], price: 1.36, spot_price: 0.27,
     tags: {arch: x86_64, cores: 8, big: true}}
"""
BACKWARDS = "[{at_s: 9, price: 1}, {at_s: 1, price: 2}]"


def test_the_issue_format_loads_into_instance_types() -> None:
    catalog = parse_catalog(ONE)
    (kind,) = catalog.types
    assert catalog.currency == "CNY" and catalog.autoscale is None
    assert (kind.name, kind.cpu, kind.memory, kind.gpu) == ("ecs.c6.2xlarge", 8, 16 * G, 0)
    assert kind.zones == ("cn-beijing-h", "cn-beijing-i")
    assert (kind.price, kind.spot_price, kind.hourly(spot=True)) == (1.36, 0.27, 0.27)
    assert dict(kind.tags) == {"arch": "x86_64", "cores": "8", "big": "true"}


def test_the_examples_load_with_their_autoscale_settings() -> None:
    seed = load_catalog(EXAMPLES / "catalog.yaml")
    assert len(seed.types) == 8 and seed.currency == "CNY"
    assert seed.autoscale is not None and seed.autoscale.spot_duration_s == 3600
    assert seed.autoscale.spot_strategy == "follow_market"
    local = load_catalog(EXAMPLES / "local.yaml")
    assert all(dict(t.tags)["pool"] == "elastic" and t.cpu >= 1 for t in local.types)


def test_a_spot_history_sets_the_price_at_a_time() -> None:
    catalog = parse_catalog(
        "types:\n"
        "  - name: g6\n"
        "    cpu: 8\n"
        "    memory: 32G\n"
        "    price: 2.0\n"
        "    spot_price: 0.4\n"
        "    spot_history: [{at_s: 100, price: 0.84}, {at_s: 200, price: 0.5}]\n"
    )
    assert [catalog.at(t)[0].spot_price for t in (0, 99, 100, 150, 200, 1e9)] == [
        0.4, 0.4, 0.84, 0.84, 0.5, 0.5,
    ]  # fmt: skip
    assert catalog.at(150)[0].price == 2.0


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (ONE.replace("spot_price: 0.27,", ""), ":3:", "spot_price: Field required"),
        (ONE.replace("16G", "lots"), ":3:", "invalid size 'lots'"),
        (ONE.replace("gpu: 0", "gpus: 0"), ":3:", "unknown key 'gpus'"),
        (ONE + ONE.split("\n", 2)[2], ":6:", "two types are named 'ecs.c6.2xlarge'"),
        ("currency: CNY\ntypes: []\n", ":2:", "at least 1 item"),
        ("types: [\n", ":", "not valid YAML"),
        (
            ONE.replace(
                "tags:", "spot_history: [{at_s: 9, price: 1}, {at_s: 1, price: 2}],\n tags:"
            ),
            ":3:",
            "in order of at_s",
        ),
    ],
)
def test_a_bad_catalog_names_the_line(text: str, where: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_catalog(text, "c.yaml")
    assert caught.value.message.startswith("c.yaml" + where), caught.value.message


def test_a_missing_catalog_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the catalog"):
        load_catalog(tmp_path / "nope.yaml")


TRACE = """\
submit_s,cpu,memory,duration_s,tags,tenant
60,8,16G,900,pool=eci;arch=x86_64,agent
0,2,512M,30.5,,server
"""


def test_a_trace_loads_in_submit_order() -> None:
    first, second = parse_trace(TRACE)
    assert (first.submit_s, first.cpu, first.memory, first.duration_s) == (0, 2, 512 * 2**20, 30.5)
    assert first.tags == {} and first.tenant == "server"
    assert second.tags == {"pool": "eci", "arch": "x86_64"} and second.tenant == "agent"


def test_the_example_trace_is_the_seed_month() -> None:
    jobs = load_trace(EXAMPLES / "rust-ci.csv")
    assert len(jobs) == 1176
    assert jobs[0].submit_s >= 0 and jobs[-1].submit_s < 31 * 86400
    assert all(j.cpu == 8 and j.memory == 16 * G and j.tags == {"pool": "eci"} for j in jobs)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("submit,cpu\n1,2\n", ":1:", "header must be"),
        (TRACE + "x,1,1G,10,,t\n", ":4:", "submit_s 'x' is not a number"),
        (TRACE + "1,-2,1G,10,,t\n", ":4:", "cpu '-2' must be a number >= 0"),
        (TRACE + "1,2,1Q,10,,t\n", ":4:", "invalid size '1Q'"),
        (TRACE + "1,2,1G,10,pool,t\n", ":4:", "tag 'pool' must look like k=v"),
        (TRACE + "1,2,1G,10\n", ":4:", "expected 6 fields, got 4"),
        (TRACE.splitlines()[0] + "\n", ":1:", "no jobs"),
    ],
)
def test_a_bad_trace_names_the_line(text: str, where: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_trace(text, "t.csv")
    assert caught.value.message.startswith("t.csv" + where), caught.value.message


def test_tags_are_k_equals_v_separated_by_semicolons() -> None:
    assert parse_tags(" a=1 ; b = x=y ;") == {"a": "1", "b": "x=y"}
    with pytest.raises(BadRequest):
        parse_tags("=1")
