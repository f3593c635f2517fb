"""What every exporter needs from a taskbook: its stages, names fit for other engines."""

from __future__ import annotations

import re
from typing import Any

import yaml

from o11n.core.taskbook import stages

DEFAULT_IMAGE = "debian:bookworm-slim"  # for substages that name no image, on container engines


def pipeline_name(book: dict[str, Any]) -> str:
    """The pipeline's name (every substage carries it as build_cate)."""
    for _, stage in stages(book):
        for sub in stage["substages"]:
            return str(sub["build_cate"])
    return "pipeline"


def slug(name: str, limit: int = 63) -> str:
    """A DNS-1123 label: lower case letters, digits and '-'."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:limit].rstrip("-") or "x"


def argv(sub: dict[str, Any]) -> list[str]:
    """The substage's command as an argv list (a script runs under `sh -e`)."""
    command = sub["command"]
    return ["sh", "-e", "-c", command] if isinstance(command, str) else list(command)


def script(sub: dict[str, Any]) -> str:
    """The substage's command as shell text."""
    command = sub["command"]
    if isinstance(command, str):
        return command
    return " ".join(_quote(part) for part in command)


def k8s_resources(sub: dict[str, Any]) -> dict[str, Any]:
    """Requests (and the GPU limit) in Kubernetes quantities."""
    res = sub["resources"]
    requests: dict[str, str] = {"cpu": f"{res['cpu']:g}"}
    if res["memory"]:
        requests["memory"] = str(res["memory"])
    out: dict[str, Any] = {"requests": requests}
    if res["gpu"]:
        out["limits"] = {"nvidia.com/gpu": str(res["gpu"])}
    return out


def k8s_env(sub: dict[str, Any]) -> list[dict[str, str]]:
    """The substage's env as a container's env list."""
    return [{"name": k, "value": v} for k, v in sub["env"].items()]


def dump_yaml(data: Any) -> str:
    """YAML text, block style, keys in the order given."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: engines differ on them
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _str)


def _quote(part: str) -> str:
    return (
        part
        if re.fullmatch(r"[A-Za-z0-9_./=:@%+-]+", part)
        else "'" + part.replace("'", "'\\''") + "'"
    )
