"""A taskbook as an Argo Workflow: one `steps` template, one parallel group per stage."""

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

RETRY_POLICY = {  # o11n's `when` -> Argo's retryPolicy
    frozenset({"failure"}): "OnFailure",
    frozenset({"lost"}): "OnError",
    frozenset({"error"}): "OnError",
}


def export(book: dict[str, Any]) -> str:
    """The Workflow as YAML."""
    groups, templates = [], []
    for _, stage in stages(book):
        keep_going = stage.get("on_failure") == "continue"
        group = []
        for sub in stage["substages"]:
            step: dict[str, Any] = {
                "name": slug(sub["substage_name"]),
                "template": slug(sub["substage_name"]),
            }
            if keep_going or sub["allow_failure"]:
                step["continueOn"] = {"failed": True}
            group.append(step)
            templates.append(_template(sub))
        groups.append(group)
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": slug(pipeline_name(book), 50) + "-"},
        "spec": {
            "entrypoint": "pipeline",
            "templates": [{"name": "pipeline", "steps": groups}, *templates],
        },
    }
    return dump_yaml(workflow)


def _template(sub: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "image": sub["image"] or DEFAULT_IMAGE,
        "command": argv(sub),
        "resources": k8s_resources(sub),
    }
    if sub["env"]:
        container["env"] = k8s_env(sub)
    template: dict[str, Any] = {
        "name": slug(sub["substage_name"]),
        "activeDeadlineSeconds": int(sub["timeout"]),
        "container": container,
    }
    if sub["tags"]:
        template["nodeSelector"] = dict(sub["tags"])
    retries = sub["retry"]["max_attempts"] - 1
    if retries:
        policy = RETRY_POLICY.get(frozenset(sub["retry"]["when"]), "Always")
        template["retryStrategy"] = {"limit": str(retries), "retryPolicy": policy}
    return template
