"""What an action's platform properties ask of a worker.

Per REAPI v2.2 the Action's platform is used when it has one and the
Command's otherwise (Buildfarm 2.10.2 read only the Command's, which is how
an image set on the Action was ignored). The properties become o11n
requirements:

- `container-image`: the job's image (a `docker://` prefix is stripped);
- `OSFamily` and `ISA`: the worker tags `os` and `arch` (lower case; `x86-64`
  reads as `x86_64`, as workers tag themselves);
- `min-cores`, `min-mem`: the job's cpu and memory (Buildfarm's names; a
  `min-cores` below o11n's floor of 0.01 cores reads as 0.01);
- `network`: `on`/`true` gives a container job a network;
- any other key, by policy: `require` (default) makes it a tag the worker
  must have with that value; `ignore` drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from o11n.core.jobs import MIN_CPU
from o11n.core.units import parse_size
from o11n.errors import BadRequest
from o11n.reapi.protos import re_pb2

TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.\-/:+@]{1,255}$")
POLICIES = ("require", "ignore")
ISA_NAMES = {"x86-64": "x86_64", "amd64": "x86_64", "arm64": "aarch64"}


@dataclass
class Requirements:
    """What the job of an action needs."""

    tags: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    cpu: float | None = None
    memory: int | None = None
    network: bool = False


def chosen(action: re_pb2.Action, command: re_pb2.Command) -> re_pb2.Platform:
    """The Action's platform when it has properties, else the Command's."""
    return action.platform if action.platform.properties else command.platform


def requirements(platform: re_pb2.Platform, unknown: str = "require") -> Requirements:
    """The requirements of a platform; BadRequest for a value o11n cannot use."""
    needs = Requirements()
    for prop in platform.properties:
        _apply(needs, prop.name, prop.value, unknown)
    return needs


def _apply(needs: Requirements, name: str, value: str, unknown: str) -> None:
    if name == "container-image":
        needs.image = value.removeprefix("docker://") or None
    elif name == "OSFamily":
        needs.tags["os"] = _tag_value(name, value.lower())
    elif name == "ISA":
        needs.tags["arch"] = _tag_value(name, ISA_NAMES.get(value.lower(), value.lower()))
    elif name == "min-cores":
        needs.cpu = max(MIN_CPU, _number(name, value))  # 0 asks for no floor: the smallest
    elif name == "min-mem":
        needs.memory = parse_size(value)
    elif name == "network":
        needs.network = value.lower() in ("on", "true", "1", "yes")
    elif unknown == "require":
        if not TAG_KEY.match(name):
            raise BadRequest(f"platform property {name[:80]!r} cannot be a worker tag")
        needs.tags[name] = _tag_value(name, value)


def _tag_value(name: str, value: str) -> str:
    if not TAG_VALUE.match(value):
        raise BadRequest(f"platform property {name}={value[:80]!r} cannot be a tag value")
    return value


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"platform property {name}={value[:40]!r} is not a number") from None
    if not 0 <= number <= 4096:
        raise BadRequest(f"platform property {name}={value[:40]!r} is out of range")
    return number
