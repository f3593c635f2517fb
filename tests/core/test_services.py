"""The service file: validation, the version that decides a roll-over, constraints."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from o11n.core.jobs import JobSpec, ServiceTask
from o11n.core.services import ServiceSpec, task_env, task_ports

BASE: dict[str, Any] = {"name": "distcc", "namespace": "build", "command": "distccd"}


def spec(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({**BASE, **fields})


def test_a_service_with_ports_constraints_and_metrics() -> None:
    svc = spec(
        instances=3,
        ports=[{"name": "SERVICE", "hostPort": 0}, {"name": "STATS", "hostPort": 3633}],
        constraints=[[{"name": "city", "operate": "LIKE", "value": "shenzhen|shanghai"}]],
        metrics={"port": "STATS", "path": "/", "frequency": "10s", "format": "distcc"},
    )
    assert svc.key == "build/distcc" and svc.metrics is not None
    assert svc.metrics.frequency == 10.0
    assert svc.placement().groups[0][0].operate == "LIKE"


def test_the_version_follows_what_tasks_run_but_not_the_count() -> None:
    assert spec(instances=1).version() == spec(instances=5).version()
    assert spec().version() != spec(env={"A": "1"}).version()
    assert spec().version() != spec(command="distccd --jobs 4").version()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"command": ""}, "command"),
        ({"instances": -1}, "instances"),
        ({"ports": [{"name": "A"}, {"name": "A"}]}, "same name"),
        ({"ports": [{"name": "A", "hostPort": 80}, {"name": "B", "hostPort": 80}]}, "hostPort"),
        ({"ports": [{"name": "A", "hostPort": 70000}]}, "hostPort"),
        ({"metrics": {"port": "NOPE"}}, "not one of the ports"),
        ({"constraints": [[{"name": "a", "operate": "LIK"}]]}, "unknown operator"),
        ({"constraints": [[{"name": "a", "operate": "MAXPER", "value": "x"}]]}, "MAXPER"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_service_files_are_refused_with_the_reason(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_task_ports_come_from_the_scheduler_set_field_never_from_env() -> None:
    task = ServiceTask(
        service="build/distcc", index=2, host_ip="10.0.0.5", ports={"SERVICE": 31000}
    )
    spec = JobSpec(command=["distccd"], service=task)
    assert task_ports(spec) == {"SERVICE": 31000}
    assert task_env(task) == {
        "PORT_SERVICE": "31000",
        "O11N_HOST_IP": "10.0.0.5",
        "O11N_SERVICE": "build/distcc",
        "O11N_TASK": "2",
    }
    forged = {"O11N_SERVICE": "build/distcc", "PORT_X": "80", "O11N_HOST_IP": "0.0.0.0"}
    assert task_ports(JobSpec(command=["sh"], env=forged)) == {}
    assert task_env(None) == {}
