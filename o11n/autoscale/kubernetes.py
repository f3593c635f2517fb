"""The Kubernetes provider: each instance is a worker Pod, with the Alibaba Cloud ECI
annotations that let ECI pick the cheapest in-stock type of up to five candidates, as spot.

`worker_pod` builds the manifest (a pure function); `KubernetesProvider` creates, deletes
and lists Pods with the official client, its blocking calls run in threads.

What we rely on from ECI (help.aliyun.com, "ECI Pod Annotation" and "Custom conditions of
ECI-based pods"):

- ECI, not o11n, walks the candidates of `k8s.aliyun.com/eci-use-specs` (in order) and
  their zones. When none is in stock the Pod stays Pending and its `ContainerInstanceCreated`
  condition has the reason `NoStock` (or `StockClose`), or an event says "The instanceTypes
  are out of usage" (the seed's case). `start` waits up to `placement_timeout_s` for the
  Pod to be placed and turns those answers into `OutOfStock` (deleting the Pod); after the
  wait it returns anyway, since ECI keeps trying.
- Once placed, ECI appends the annotation `k8s.aliyun.com/eci-instance-spec` with the type
  it chose. If `start` sees it, the Instance records that type; otherwise it records the
  first candidate, and its price (spot price when spot) is the assumed price.
- A spot Pod about to be reclaimed gets the condition reason `SpotToBeReleased` (about
  three minutes before); a reclaimed one ends in ECI's `Expired` state, which we assume
  Kubernetes shows as phase `Failed` with `status.reason` `Expired`. Either counts as
  reclaimed.

Each Pod also carries its launch as o11n's own annotation (`o11n.dev/launch`: worker,
candidate types, spot terms, start time), so that a scheduler that starts again adopts
the Pods it still finds (`existing`) instead of losing track of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from o11n.core.capacity import (
    MAX_CANDIDATES,
    Instance,
    InstanceType,
    Launch,
    OutOfStock,
    SpotStrategy,
    started,
)

log = logging.getLogger(__name__)
ECI = "k8s.aliyun.com/"
LAUNCH_NOTE = "o11n.dev/launch"
WORKER_LABELS = {
    "app.kubernetes.io/name": "o11n-worker",
    "app.kubernetes.io/managed-by": "o11n-autoscaler",
}
SELECTOR = ",".join(f"{k}={v}" for k, v in WORKER_LABELS.items())
SPOT_STRATEGIES = {"price_limit": "SpotWithPriceLimit", "follow_market": "SpotAsPriceGo"}
NO_STOCK_REASONS = frozenset({"NoStock", "StockClose"})
NO_STOCK_MESSAGES = ("out of usage", "out of stock")
RECLAIM_CONDITION_REASONS = frozenset({"SpotToBeReleased"})
RECLAIM_STATUS_REASONS = frozenset({"Expired"})

T = TypeVar("T")


@dataclass(frozen=True)
class KubernetesSettings:
    """Where worker Pods go and what they are made of."""

    server_url: str  # the scheduler, as the Pods reach it
    namespace: str = "o11n"
    image: str = "o11n:latest"
    token_secret: str = "o11n-worker-token"  # a Secret holding the worker token ...
    token_key: str = "token"  # ... under this key
    cache_claim: str | None = "o11n-cache"  # a shared PersistentVolumeClaim; None: none
    cache_path: str = "/cache"
    eci: bool = True  # the ECI label and annotations (spot, several types, image cache)
    image_cache: bool = True
    drain_timeout_s: float = 60.0  # the worker's, on SIGTERM; the Pod gets 30 s more
    placement_timeout_s: float = 30.0  # how long start waits to learn the placement
    poll_interval_s: float = 1.0


def pod_name(worker: str) -> str:
    """A valid Pod name (DNS-1123 label) for a worker name."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"o11n-{worker}".lower()).strip("-")
    return name[:63].rstrip("-")


def worker_pod(
    launch: Launch, worker: str, settings: KubernetesSettings, started_at: float = 0.0
) -> dict[str, Any]:
    """The Pod manifest of one worker for a Launch (its resources from the first candidate)."""
    kind = launch.candidates[0]
    notes = eci_annotations(launch) if settings.eci else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(worker),
            "namespace": settings.namespace,
            "labels": _labels(worker, settings),
            "annotations": {**notes, LAUNCH_NOTE: launch_note(launch, worker, started_at)},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": math.ceil(settings.drain_timeout_s) + 30,
            "containers": [_container(launch, worker, settings, kind)],
            "volumes": _volumes(settings),
        },
    }


def eci_annotations(launch: Launch) -> dict[str, str]:
    """ECI's annotations: the candidate types, the spot terms, the image cache."""
    specs = ",".join(kind.name for kind in launch.candidates[:MAX_CANDIDATES])
    notes = {f"{ECI}eci-use-specs": specs, f"{ECI}eci-image-cache": "true"}
    if launch.spot_strategy == "none":
        return notes
    notes[f"{ECI}eci-spot-strategy"] = SPOT_STRATEGIES[launch.spot_strategy]
    if launch.spot_strategy == "price_limit":
        if launch.price_limit is None:
            raise ValueError("the price_limit spot strategy needs a price_limit")
        notes[f"{ECI}eci-spot-price-limit"] = f"{launch.price_limit:.3f}"
    # ECI takes whole hours; rounding up never shortens the protection the policy counts on.
    notes[f"{ECI}eci-spot-duration"] = str(math.ceil(launch.spot_duration_s / 3600))
    return notes


def launch_note(launch: Launch, worker: str, started_at: float) -> str:
    """What a later scheduler needs to adopt the Pod, as JSON."""
    return json.dumps(
        {
            "worker": worker,
            "candidates": [kind.name for kind in launch.candidates[:MAX_CANDIDATES]],
            "spot_strategy": launch.spot_strategy,
            "spot_duration_s": launch.spot_duration_s,
            "started_at": started_at,
        },
        sort_keys=True,
    )


def _labels(worker: str, settings: KubernetesSettings) -> dict[str, str]:
    labels = {**WORKER_LABELS, "o11n.dev/worker": pod_name(worker).removeprefix("o11n-")}
    if settings.eci:
        labels["alibabacloud.com/eci"] = "true"
    return labels


def _container(
    launch: Launch, worker: str, settings: KubernetesSettings, kind: InstanceType
) -> dict[str, Any]:
    resources = {"cpu": f"{kind.cpu:g}", "memory": str(kind.memory)}
    if kind.gpu:
        resources["nvidia.com/gpu"] = str(kind.gpu)
    container: dict[str, Any] = {
        "name": "worker",
        "image": settings.image,
        "command": worker_command(launch, worker, settings, kind),
        "env": [
            {
                "name": "O11N_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": settings.token_secret, "key": settings.token_key}
                },
            }
        ],
        "resources": {"requests": resources, "limits": dict(resources)},
    }
    if settings.cache_claim:
        container["volumeMounts"] = [{"name": "cache", "mountPath": settings.cache_path}]
    return container


def worker_command(
    launch: Launch, worker: str, settings: KubernetesSettings, kind: InstanceType
) -> list[str]:
    """`o11n worker ...` with the type's resources and tags plus the demand's tags."""
    tags = dict((*kind.tags, *launch.tags))
    argv = ["o11n", "worker", "--server", settings.server_url, "--name", worker]
    argv += [f"--tag={key}={value}" for key, value in tags.items()]
    argv += ["--cpus", f"{kind.cpu:g}", "--memory", str(kind.memory)]
    if kind.gpu:
        argv += ["--gpus", str(kind.gpu)]
    return [*argv, "--drain-timeout", f"{settings.drain_timeout_s:g}"]


def _volumes(settings: KubernetesSettings) -> list[dict[str, Any]]:
    if not settings.cache_claim:
        return []
    return [{"name": "cache", "persistentVolumeClaim": {"claimName": settings.cache_claim}}]


def default_api_client() -> k8s.ApiClient:
    """A client configured from inside the cluster, else from ~/.kube/config."""
    # kubernetes.config, unlike kubernetes.client, has no annotations.
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


@dataclass
class KubernetesProvider:
    """Starts and stops worker Pods in one namespace (see the module docstring for ECI)."""

    settings: KubernetesSettings
    api_client: k8s.ApiClient = field(default_factory=default_api_client)
    clock: Callable[[], float] = time.time
    _reported: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._core = k8s.CoreV1Api(self.api_client)

    async def start(self, launch: Launch, worker: str) -> Instance:
        """Create the worker's Pod and wait (a while) to learn where ECI placed it."""
        manifest = worker_pod(launch, worker, self.settings, self.clock())
        try:
            await self._call(
                self._core.create_namespaced_pod,
                self.settings.namespace,
                k8s.V1Pod.from_dict(manifest),
            )
        except ApiException as exc:
            if _says_no_stock(exc.body or ""):
                raise OutOfStock(exc.body) from exc
            raise
        pod = await self._placed(manifest["metadata"]["name"])
        return self._instance(launch, worker, pod)

    async def stop(self, instance: Instance) -> None:
        """Delete the Pod: its worker gets SIGTERM and the Pod's grace period to drain."""
        with contextlib.suppress(_NotFound):
            await self._call_found(
                self._core.delete_namespaced_pod, instance.id, self.settings.namespace
            )

    async def reclaimed(self) -> list[str]:
        """The Pods of this provider that ECI reclaims or reclaimed, each reported once."""
        pods = await self._call(
            self._core.list_namespaced_pod, self.settings.namespace, label_selector=SELECTOR
        )
        taken = {p.metadata.name for p in pods.items if p.metadata and _is_reclaimed(p)}
        names = {name for name in taken if name}
        fresh = sorted(names - self._reported)
        self._reported = names  # forget Pods that are gone, so a new Pod of that name counts
        return fresh

    async def existing(self, types: Sequence[InstanceType]) -> list[Instance]:
        """The live Pods of this provider, as instances to adopt: their types from `types`
        by name (one the catalog no longer has is priced at 0). Pods being deleted or
        ended, and Pods without o11n's launch annotation, are left alone."""
        pods = await self._call(
            self._core.list_namespaced_pod, self.settings.namespace, label_selector=SELECTOR
        )
        known = {kind.name: kind for kind in types}
        found = []
        for pod in pods.items:
            meta, status = pod.metadata, pod.status
            if meta is None or meta.deletion_timestamp is not None:
                continue
            if status is not None and status.phase in ("Succeeded", "Failed"):
                continue
            try:
                note = json.loads((meta.annotations or {})[LAUNCH_NOTE])
                names = [str(name) for name in note["candidates"]] or ["unknown"]
                if note["spot_strategy"] not in get_args(SpotStrategy):
                    raise ValueError(f"spot strategy {note['spot_strategy']!r}")
                launch = Launch(
                    tuple(known.get(name) or InstanceType(name, 0.0, 0) for name in names),
                    spot_strategy=note["spot_strategy"],
                    spot_duration_s=float(note["spot_duration_s"]),
                )
                found.append(
                    self._instance(launch, str(note["worker"]), pod, now=float(note["started_at"]))
                )
            except (KeyError, TypeError, ValueError):
                log.warning("pod %s: no usable %s annotation, left alone", meta.name, LAUNCH_NOTE)
        return found

    async def _placed(self, name: str) -> k8s.V1Pod | None:
        """The Pod once ECI created its instance; OutOfStock when ECI has none of the types;
        None when it did not say within placement_timeout_s."""
        tries = math.ceil(self.settings.placement_timeout_s / self.settings.poll_interval_s)
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(self.settings.poll_interval_s)
            pod = await self._call(self._core.read_namespaced_pod, name, self.settings.namespace)
            message = _no_stock(pod) or await self._no_stock_event(name)
            if message:
                with contextlib.suppress(_NotFound):
                    await self._call_found(
                        self._core.delete_namespaced_pod, name, self.settings.namespace
                    )
                raise OutOfStock(message)
            if _instance_created(pod):
                return pod
        return None

    async def _no_stock_event(self, name: str) -> str | None:
        events = await self._call(
            self._core.list_namespaced_event,
            self.settings.namespace,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}",
        )
        return next((e.message for e in events.items if _says_no_stock(e.message or "")), None)

    def _instance(
        self, launch: Launch, worker: str, pod: k8s.V1Pod | None, now: float | None = None
    ) -> Instance:
        kind = _placed_type(launch.candidates, pod)
        return started(
            launch,
            kind,
            id=pod_name(worker),
            worker=worker,
            zone=kind.zones[0] if kind.zones else "",
            now=self.clock() if now is None else now,
            labels={"namespace": self.settings.namespace, "placed": str(pod is not None)},
        )

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _call_found(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._call(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise _NotFound from exc
            raise


class _NotFound(Exception):
    """The Pod is already gone."""


def _conditions(pod: k8s.V1Pod) -> Iterable[k8s.V1PodCondition]:
    return (pod.status.conditions or []) if pod.status else []


def _no_stock(pod: k8s.V1Pod) -> str | None:
    """ECI's message when none of the candidates is in stock, from the Pod's status."""
    for cond in _conditions(pod):
        if cond.reason in NO_STOCK_REASONS or _says_no_stock(cond.message or ""):
            return cond.message or cond.reason
    status = pod.status
    if status and _says_no_stock(status.message or ""):
        return status.message
    return None


def _says_no_stock(text: str) -> bool:
    lowered = text.lower()
    return any(phrase in lowered for phrase in NO_STOCK_MESSAGES)


def _instance_created(pod: k8s.V1Pod) -> bool:
    return any(
        c.type == "ContainerInstanceCreated" and c.status == "True" for c in _conditions(pod)
    )


def _is_reclaimed(pod: k8s.V1Pod) -> bool:
    if any(c.reason in RECLAIM_CONDITION_REASONS for c in _conditions(pod)):
        return True
    status = pod.status
    return bool(status and status.phase == "Failed" and status.reason in RECLAIM_STATUS_REASONS)


def _placed_type(candidates: tuple[InstanceType, ...], pod: k8s.V1Pod | None) -> InstanceType:
    """The candidate ECI reports it chose, else the first (whose price is then assumed)."""
    notes = (pod.metadata.annotations or {}) if pod and pod.metadata else {}
    chosen = notes.get(f"{ECI}eci-instance-spec")
    return next((kind for kind in candidates if kind.name == chosen), candidates[0])
