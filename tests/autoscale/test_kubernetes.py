"""The Kubernetes provider: its Pod manifests (validated with kubernetes-validate) and its
API calls, made by the official client against FakeKubernetesApi, a fake API server
(no cluster can run on our machines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s

from o11n.autoscale.kubernetes import (
    WORKER_LABELS,
    KubernetesProvider,
    KubernetesSettings,
    pod_name,
    worker_pod,
)
from o11n.core.capacity import InstanceType, Launch, OutOfStock
from tests.autoscale.fake_kube import FakeKubernetesApi
from tests.clock import Clock

K8S_VERSION = "1.30"
GIB = 1024**3
C6 = InstanceType(
    "ecs.c6.2xlarge", 8, 16 * GIB, zones=("cn-beijing-h",), price=1.36, spot_price=0.27,
    tags=(("arch", "x86_64"),),
)  # fmt: skip
C5 = InstanceType("ecs.c5.2xlarge", 8, 16 * GIB, price=1.40, spot_price=0.30)
C7 = InstanceType("ecs.c7.3xlarge", 12, 24 * GIB, price=2.10, spot_price=0.42)
G6 = InstanceType("ecs.g6.2xlarge", 8, 32 * GIB, price=2.0, spot_price=0.4)
C6E = InstanceType("ecs.c6e.2xlarge", 8, 16 * GIB, price=1.5, spot_price=0.31)
GN6 = InstanceType("ecs.gn6i-c4g1.xlarge", 4, 15 * GIB, gpu=1, price=8.0)
SEED = (C6, C5, C7, G6, C6E)  # the seed's eci-use-specs
SETTINGS = KubernetesSettings(server_url="http://o11n-scheduler:8787", namespace="ci")
ECI = "k8s.aliyun.com/"

LAUNCHES = {
    "follow_market": Launch(SEED, "follow_market", tags=(("pool", "rust"),)),
    "price_limit": Launch((C6, G6), "price_limit", price_limit=0.25, spot_duration_s=7200),
    "on_demand": Launch((C6,), "none"),
    "gpu": Launch((GN6,), "none", tags=(("gpu", "t4"),)),
    "too_many": Launch((*SEED, GN6), "follow_market"),
}
VARIANTS = {
    "eci": SETTINGS,
    "plain": replace(SETTINGS, eci=False, cache_claim=None),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("launch", LAUNCHES)
def test_every_manifest_is_a_valid_pod(launch: str, variant: str) -> None:
    pod = worker_pod(LAUNCHES[launch], "w-1", VARIANTS[variant])
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_seed_launch_carries_the_eci_annotations() -> None:
    pod = worker_pod(LAUNCHES["follow_market"], "w-1", SETTINGS)
    notes = pod["metadata"]["annotations"]
    assert json.loads(notes.pop("o11n.dev/launch"))["candidates"][0] == "ecs.c6.2xlarge"
    assert notes == {
        f"{ECI}eci-use-specs": "ecs.c6.2xlarge,ecs.c5.2xlarge,ecs.c7.3xlarge,ecs.g6.2xlarge,"
        "ecs.c6e.2xlarge",
        f"{ECI}eci-spot-strategy": "SpotAsPriceGo",
        f"{ECI}eci-spot-duration": "1",
        f"{ECI}eci-image-cache": "true",
    }
    assert pod["metadata"]["labels"]["alibabacloud.com/eci"] == "true"
    assert pod["metadata"]["labels"]["o11n.dev/worker"] == "w-1"


def test_price_limit_and_protection_in_hours() -> None:
    notes = worker_pod(LAUNCHES["price_limit"], "w-1", SETTINGS)["metadata"]["annotations"]
    assert notes[f"{ECI}eci-spot-strategy"] == "SpotWithPriceLimit"
    assert notes[f"{ECI}eci-spot-price-limit"] == "0.250"
    assert notes[f"{ECI}eci-spot-duration"] == "2"
    assert notes[f"{ECI}eci-use-specs"] == "ecs.c6.2xlarge,ecs.g6.2xlarge"


def test_on_demand_has_no_spot_annotations_and_at_most_five_specs() -> None:
    notes = worker_pod(LAUNCHES["on_demand"], "w-1", SETTINGS)["metadata"]["annotations"]
    assert not any("spot" in key for key in notes)
    many = worker_pod(LAUNCHES["too_many"], "w-1", SETTINGS)["metadata"]["annotations"]
    assert many[f"{ECI}eci-use-specs"].count(",") == 4 and "gn6i" not in many[f"{ECI}eci-use-specs"]


def test_a_price_limit_launch_without_a_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="price_limit"):
        worker_pod(Launch((C6,), "price_limit"), "w-1", SETTINGS)


def test_the_worker_gets_its_types_resources_tags_and_gpus() -> None:
    container = worker_pod(LAUNCHES["gpu"], "w-1", SETTINGS)["spec"]["containers"][0]
    assert container["resources"]["limits"] == {
        "cpu": "4",
        "memory": str(15 * GIB),
        "nvidia.com/gpu": "1",
    }
    command = container["command"]
    assert command[:6] == [
        "o11n",
        "worker",
        "--server",
        "http://o11n-scheduler:8787",
        "--name",
        "w-1",
    ]
    assert "--tag=gpu=t4" in command and command[command.index("--gpus") + 1] == "1"


def test_a_worker_name_becomes_a_valid_pod_name() -> None:
    assert pod_name("Build_Box.7") == "o11n-build-box-7"
    assert len(pod_name("x" * 100)) == 63


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi() as api:
        yield api


@pytest.fixture
def api_client(fake: FakeKubernetesApi) -> Iterator[k8s.ApiClient]:
    client = k8s.ApiClient(k8s.Configuration(host=fake.url))
    yield client
    client.close()


def provider(api_client: k8s.ApiClient, **settings: Any) -> KubernetesProvider:
    fast = {"placement_timeout_s": 0.5, "poll_interval_s": 0.02, **settings}
    return KubernetesProvider(replace(SETTINGS, **fast), api_client, clock=Clock(1000.0))


def placed(spec: str) -> Any:
    """Play ECI: the instance is created at once, of type `spec`."""

    def on_create(pod: dict[str, Any]) -> None:
        pod["metadata"]["annotations"][f"{ECI}eci-instance-spec"] = spec
        pod["status"] = {
            "phase": "Running",
            "conditions": [{"type": "ContainerInstanceCreated", "status": "True"}],
        }

    return on_create


async def test_start_posts_the_worker_pod(fake: FakeKubernetesApi, api_client: Any) -> None:
    fake.on_create = placed("ecs.c6.2xlarge")
    instance = await provider(api_client).start(LAUNCHES["follow_market"], "w-1")
    post = next(r for r in fake.requests if r.method == "POST")
    assert post.path == "/api/v1/namespaces/ci/pods"
    assert post.body is not None
    notes, spec = post.body["metadata"]["annotations"], post.body["spec"]
    assert notes[f"{ECI}eci-use-specs"].startswith("ecs.c6.2xlarge,ecs.c5.2xlarge")
    assert notes[f"{ECI}eci-spot-strategy"] == "SpotAsPriceGo"
    container = spec["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "8", "memory": str(16 * GIB)}
    assert container["env"] == [
        {
            "name": "O11N_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "o11n-worker-token", "key": "token"}},
        }
    ]
    assert container["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert spec["volumes"] == [
        {"name": "cache", "persistentVolumeClaim": {"claimName": "o11n-cache"}}
    ]
    assert (instance.id, instance.worker, instance.type, instance.spot) == (
        "o11n-w-1",
        "w-1",
        C6,
        True,
    )
    assert (instance.hourly_price, instance.protected_until) == (0.27, 1000.0 + 3600)


async def test_start_records_the_type_eci_chose(fake: FakeKubernetesApi, api_client: Any) -> None:
    fake.on_create = placed("ecs.g6.2xlarge")
    instance = await provider(api_client).start(LAUNCHES["follow_market"], "w-1")
    assert (instance.type, instance.hourly_price) == (G6, 0.4)


async def test_unplaced_start_assumes_the_first_candidate(
    fake: FakeKubernetesApi, api_client: Any
) -> None:
    instance = await provider(api_client, placement_timeout_s=0.1).start(LAUNCHES["on_demand"], "w")
    assert (instance.type, instance.spot, instance.hourly_price) == (C6, False, 1.36)
    assert instance.labels["placed"] == "False"
    assert fake.pod("ci", "o11n-w")["status"]["phase"] == "Pending"  # ECI is still trying


async def test_no_stock_condition_is_out_of_stock(fake: FakeKubernetesApi, api_client: Any) -> None:
    message = "Create ECI failed because the specified instance is out of stock."

    def no_stock(pod: dict[str, Any]) -> None:
        condition = {"type": "ContainerInstanceCreated", "status": "False", "reason": "NoStock"}
        pod["status"]["conditions"] = [{**condition, "message": message}]

    fake.on_create = no_stock
    with pytest.raises(OutOfStock, match="out of stock"):
        await provider(api_client).start(LAUNCHES["follow_market"], "w-1")
    assert fake.pods == {}  # the Pending Pod is deleted, not left for ECI to retry


async def test_the_seeds_out_of_usage_event_is_out_of_stock(
    fake: FakeKubernetesApi, api_client: Any
) -> None:
    fake.on_create = lambda pod: fake.add_event(
        "ci", pod["metadata"]["name"], "ProviderCreateFailed", "The instanceTypes are out of usage."
    )
    with pytest.raises(OutOfStock, match="out of usage"):
        await provider(api_client).start(LAUNCHES["follow_market"], "w-1")
    events = [r for r in fake.requests if r.path.endswith("/events")]
    assert (
        events[0].query["fieldSelector"] == "involvedObject.kind=Pod,involvedObject.name=o11n-w-1"
    )
    assert fake.pods == {}


async def test_stop_deletes_the_pod(fake: FakeKubernetesApi, api_client: Any) -> None:
    fake.on_create = placed("ecs.c6.2xlarge")
    kube = provider(api_client)
    instance = await kube.start(LAUNCHES["follow_market"], "w-1")
    await kube.stop(instance)
    assert [(r.method, r.path) for r in fake.requests][-1] == (
        "DELETE",
        "/api/v1/namespaces/ci/pods/o11n-w-1",
    )
    assert fake.pods == {}
    await kube.stop(instance)  # already gone: not an error


async def test_a_reclaimed_pod_is_reported_once(fake: FakeKubernetesApi, api_client: Any) -> None:
    fake.on_create = placed("ecs.c6.2xlarge")
    kube = provider(api_client)
    for name in ("w-1", "w-2", "w-3"):
        await kube.start(LAUNCHES["follow_market"], name)
    fake.pod("ci", "o11n-w-1")["status"]["conditions"].append(
        {
            "type": "ContainerInstanceCreated",
            "status": "True",
            "reason": "SpotToBeReleased",
            "message": "Spot ECI will be released in 3 minutes",
        }
    )
    fake.pod("ci", "o11n-w-3")["status"] = {"phase": "Failed", "reason": "Expired"}
    assert await kube.reclaimed() == ["o11n-w-1", "o11n-w-3"]
    assert await kube.reclaimed() == []
    listing = [
        r for r in fake.requests if r.method == "GET" and r.path == "/api/v1/namespaces/ci/pods"
    ]
    selector = "app.kubernetes.io/name=o11n-worker,app.kubernetes.io/managed-by=o11n-autoscaler"
    assert listing[-1].query["labelSelector"] == selector


async def test_other_pods_are_never_reported(fake: FakeKubernetesApi, api_client: Any) -> None:
    fake.pods[("ci", "static-worker")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "static-worker", "labels": {"app.kubernetes.io/name": "o11n-worker"}},
        "status": {"phase": "Failed", "reason": "Expired"},
    }
    assert await provider(api_client).reclaimed() == []


async def test_a_later_provider_adopts_the_live_pods(
    fake: FakeKubernetesApi, api_client: Any
) -> None:
    """A scheduler that starts again finds the Pods an earlier one started, with the type
    ECI chose, the spot terms and the start time; ended Pods and others are left alone."""
    earlier = provider(api_client)  # its clock reads 1000
    fake.on_create = placed("ecs.g6.2xlarge")
    await earlier.start(LAUNCHES["follow_market"], "elastic-1")
    fake.on_create = lambda pod: None  # never placed: the first candidate is assumed
    await earlier.start(LAUNCHES["price_limit"], "elastic-2")
    await earlier.start(LAUNCHES["on_demand"], "elastic-3")
    fake.pod("ci", "o11n-elastic-3")["status"] = {"phase": "Failed", "reason": "Expired"}
    fake.pods[("ci", "hand-made")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hand-made", "labels": dict(WORKER_LABELS)},
        "status": {"phase": "Running"},
    }
    later = KubernetesProvider(SETTINGS, api_client, clock=Clock(9000.0))
    found = {i.worker: i for i in await later.existing([C6, G6])}  # C5 left the catalog
    assert sorted(found) == ["elastic-1", "elastic-2"]
    one, two = found["elastic-1"], found["elastic-2"]
    assert (one.id, one.type, one.spot, one.hourly_price) == ("o11n-elastic-1", G6, True, 0.4)
    assert (one.started_at, one.protected_until) == (1000.0, 1000.0 + 3600)
    assert (two.type, two.hourly_price, two.protected_until) == (C6, 0.27, 1000.0 + 7200)
