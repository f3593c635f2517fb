"""A taskbook as a declarative Jenkinsfile: stages in order, substages in `parallel`."""

from __future__ import annotations

from typing import Any

from o11n.core.taskbook import stages
from o11n.pipeline.exporters.common import script


def export(book: dict[str, Any]) -> str:
    """The Jenkinsfile text."""
    lines = ["pipeline {", "  agent none", "  stages {"]
    for name, stage in stages(book):
        keep_going = stage.get("on_failure") == "continue"
        lines += [f"    stage({_groovy(name)}) {{", "      parallel {"]
        for sub in stage["substages"]:
            lines += _substage(sub, keep_going)
        lines += ["      }", "    }"]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _substage(sub: dict[str, Any], keep_going: bool) -> list[str]:
    label = " && ".join(f"{k}={v}" for k, v in sub["tags"].items())
    agent = f"agent {{ label {_groovy(label)} }}" if label else "agent any"
    options = [f"timeout(time: {int(sub['timeout'])}, unit: 'SECONDS')"]
    if sub["retry"]["max_attempts"] > 1:
        options.append(f"retry({sub['retry']['max_attempts']})")
    lines = [
        f"        stage({_groovy(sub['substage_name'])}) {{",
        f"          {agent}",
        f"          options {{ {'; '.join(options)} }}",
    ]
    if sub["env"]:
        lines.append("          environment {")
        lines += [f"            {k} = {_groovy(v)}" for k, v in sub["env"].items()]
        lines.append("          }")
    step = f"sh {_groovy(script(sub))}"
    if sub["allow_failure"]:
        step = f"catchError(buildResult: 'SUCCESS', stageResult: 'UNSTABLE') {{ {step} }}"
    elif keep_going:
        step = f"catchError(buildResult: 'FAILURE', stageResult: 'FAILURE') {{ {step} }}"
    lines += ["          steps {", f"            {step}", "          }", "        }"]
    return lines


def _groovy(text: str) -> str:
    """A Groovy string literal: single-quoted, or triple-quoted when it has new lines."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'''{escaped}'''" if "\n" in text else f"'{escaped}'"
