"""A taskbook as Kubernetes Jobs, one per substage (the stages' order is left to the caller)."""

from __future__ import annotations

from typing import Any

from o11n.core.taskbook import stages
from o11n.pipeline.exporters.common import (
    DEFAULT_IMAGE,
    argv,
    dump_yaml,
    k8s_env,
    k8s_resources,
    pipeline_name,
    slug,
)


def export(book: dict[str, Any]) -> str:
    """The Jobs as a multi-document YAML stream, in stage order."""
    name = pipeline_name(book)
    jobs = [
        _job(name, stage_name, sub)
        for stage_name, stage in stages(book)
        for sub in stage["substages"]
    ]
    return "---\n".join(dump_yaml(job) for job in jobs)


def _job(pipeline: str, stage: str, sub: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": slug(sub["substage_name"]),
        "image": sub["image"] or DEFAULT_IMAGE,
        "command": argv(sub),
        "resources": k8s_resources(sub),
    }
    if sub["env"]:
        container["env"] = k8s_env(sub)
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if sub["tags"]:
        pod["nodeSelector"] = dict(sub["tags"])
    labels = {
        "o11n/pipeline": slug(pipeline),
        "o11n/stage": slug(stage),
        "o11n/substage": slug(sub["substage_name"]),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": slug(f"{pipeline}-{sub['substage_name']}"), "labels": labels},
        "spec": {
            "backoffLimit": sub["retry"]["max_attempts"] - 1,
            "activeDeadlineSeconds": int(sub["timeout"]),
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
