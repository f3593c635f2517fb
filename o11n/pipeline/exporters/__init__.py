"""Exporters: a taskbook as another engine's file (Argo, Jenkins, Kubernetes, GitLab CI).

Each takes the taskbook (the compiler's output, the one contract between o11n
and other engines) and returns the text of the other engine's file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from o11n.pipeline.exporters import argo, gitlab, jenkins, k8s

Exporter = Callable[[dict[str, Any]], str]

FORMATS: dict[str, Exporter] = {
    "taskbook": lambda book: json.dumps(book, indent=2) + "\n",
    "argo": argo.export,
    "jenkins": jenkins.export,
    "k8s": k8s.export,
    "gitlab": gitlab.export,
}
