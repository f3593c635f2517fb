"""Platform properties as o11n requirements; the Action's platform wins over the Command's."""

from __future__ import annotations

import pytest

from o11n.errors import BadRequest
from o11n.reapi import platform
from o11n.reapi.protos import re_pb2


def props(**values: str) -> re_pb2.Platform:
    found = re_pb2.Platform()
    for name, value in values.items():
        found.properties.add(name=name.replace("_", "-"), value=value)
    return found


def test_the_actions_platform_is_used_when_it_has_one() -> None:
    action = re_pb2.Action(platform=props(pool="a"))
    command = re_pb2.Command(platform=props(pool="b"))
    assert platform.chosen(action, command) == props(pool="a")
    assert platform.chosen(re_pb2.Action(), command) == props(pool="b")


def test_known_properties_become_image_tags_and_resources() -> None:
    needs = platform.requirements(
        props(
            container_image="docker://reg:5000/img:1",
            OSFamily="Linux",
            ISA="x86-64",
            min_cores="2",
            min_mem="1G",
            network="on",
        )
    )
    assert needs.image == "reg:5000/img:1"
    assert needs.tags == {"os": "linux", "arch": "x86_64"}
    assert (needs.cpu, needs.memory, needs.network) == (2.0, 1024**3, True)


def test_unknown_properties_are_required_tags_or_ignored_by_policy() -> None:
    assert platform.requirements(props(pool="gpu")).tags == {"pool": "gpu"}
    assert platform.requirements(props(pool="gpu"), "ignore").tags == {}


@pytest.mark.parametrize(
    "bad", [props(pool="has space"), props(min_cores="many"), props(min_cores="-1")]
)
def test_unusable_values_are_bad_requests(bad: re_pb2.Platform) -> None:
    with pytest.raises(BadRequest):
        platform.requirements(bad)
