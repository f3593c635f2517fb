"""deploy/: every Kubernetes manifest passes kubernetes-validate, and the image runs `o11n`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_the_expected_manifests_are_there() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "scheduler.yaml",
        "secret.example.yaml",
        "postgres.yaml",
        "workers.yaml",
        "autoscaler-rbac.yaml",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_document_is_valid(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_scheduler_reads_its_secrets_and_serves_both_ports() -> None:
    kinds = {doc["kind"]: doc for doc in documents(DEPLOY / "kubernetes" / "scheduler.yaml")}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert kinds["Deployment"]["spec"]["replicas"] == 1
    assert "--db=$(O11N_DB)" in container["args"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert secrets == {"O11N_DB": "o11n-secrets", "O11N_ADMIN_TOKEN": "o11n-secrets"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["port"] for p in kinds["Service"]["spec"]["ports"]} == {8787, 8980}
    assert pod["serviceAccountName"] == "o11n-scheduler"


def test_static_workers_mount_the_engine_socket() -> None:
    deployment = next(
        d for d in documents(DEPLOY / "kubernetes" / "workers.yaml") if d["kind"] == "Deployment"
    )
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"path": "/var/run/docker.sock", "type": "Socket"} in [
        v.get("hostPath") for v in volumes
    ]


def test_the_containerfile_runs_o11n() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoint is not None and json.loads(entrypoint.group(1)) == ["o11n"]
