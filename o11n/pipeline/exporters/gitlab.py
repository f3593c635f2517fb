"""A taskbook as a `.gitlab-ci.yml`.

GitLab runs a stage only when the stages before it succeeded; o11n's
`on_failure: continue` becomes `when: always` on the jobs of a stage when every
stage before it is `continue`. (Behind an `abort` stage GitLab cannot tell a
failed `continue` stage from a failed `abort` one, so such jobs keep GitLab's
default and stop on either.)
"""

from __future__ import annotations

from typing import Any

from o11n.core.taskbook import stages
from o11n.pipeline.exporters.common import dump_yaml

RETRY_WHEN = {  # o11n's `when` -> GitLab's retry:when
    "lost": "runner_system_failure",
    "timeout": "stuck_or_timeout_failure",
    "failure": "script_failure",
    "error": "unknown_failure",
}


def export(book: dict[str, Any]) -> str:
    """The `.gitlab-ci.yml` text."""
    doc: dict[str, Any] = {"stages": [name for name, _ in stages(book)]}
    before: list[str] = []  # the on_failure of the stages so far
    for name, stage in stages(book):
        always = bool(before) and all(policy == "continue" for policy in before)
        for sub in stage["substages"]:
            doc[sub["substage_name"]] = _job(name, sub, always)
        before.append(stage.get("on_failure", "abort"))
    return dump_yaml(doc)


def _job(stage: str, sub: dict[str, Any], always: bool) -> dict[str, Any]:
    command = sub["command"]
    script = command.splitlines() if isinstance(command, str) else [" ".join(command)]
    job: dict[str, Any] = {"stage": stage, "script": [line for line in script if line.strip()]}
    if sub["image"]:
        job["image"] = sub["image"]
    if sub["env"]:
        job["variables"] = dict(sub["env"])
    if sub["tags"]:
        job["tags"] = [f"{k}={v}" for k, v in sub["tags"].items()]
    job["timeout"] = f"{int(sub['timeout'])} seconds"
    retries = sub["retry"]["max_attempts"] - 1
    if retries:
        retry: dict[str, Any] = {
            "max": min(retries, 2),
            "when": [RETRY_WHEN[w] for w in sub["retry"]["when"]],
        }
        if sub["retry"]["exit_codes"]:
            retry["exit_codes"] = sub["retry"]["exit_codes"]
        job["retry"] = retry
    if sub["artifacts"]:
        job["artifacts"] = {"paths": list(sub["artifacts"])}
    if sub["allow_failure"]:
        job["allow_failure"] = True
    if always:
        job["when"] = "always"
    return job
