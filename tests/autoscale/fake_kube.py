"""FakeKubernetesApi: a FAKE Kubernetes API server for the Kubernetes provider's tests.

It is a fake because no Kubernetes cluster can run on our machines. It is a real HTTP
server on 127.0.0.1 (a thread), so the official client really serialises, sends and parses;
but it speaks only the few REST endpoints the provider uses, with the API's shapes and
status codes: create, read, delete and list Pods in a namespace (list filtered by
`labelSelector` of the form k=v,k=v), and list Events (filtered by `fieldSelector`
`involvedObject.name=`). It schedules nothing: a test plays ECI by changing a Pod's status
or annotations, or adding Events. Every request is recorded.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
PREFIX = "/api/v1/namespaces/"


@dataclass(frozen=True)
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: Json | None


class FakeKubernetesApi:
    """A fake API server holding Pods and Events in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], Json] = {}
        self.events: list[Json] = []
        self.requests: list[Request] = []
        self.on_create: Callable[[Json], None] = lambda pod: None  # plays the scheduler
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKubernetesApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def pod(self, namespace: str, name: str) -> Json:
        """A stored Pod (to read or change its status, as ECI would)."""
        return self.pods[(namespace, name)]

    def add_event(self, namespace: str, pod: str, reason: str, message: str) -> None:
        """An Event about a Pod, as ECI's virtual node reports one."""
        self.events.append(
            {
                "metadata": {"name": f"{pod}.{uuid.uuid4().hex[:8]}", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                "reason": reason,
                "message": message,
                "type": "Warning",
            }
        )

    def handle(self, method: str, target: str, body: Json | None) -> tuple[int, Json]:
        """Serve one request: (status, JSON body)."""
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(Request(method, parts.path, query, body))
            if not parts.path.startswith(PREFIX):
                return _status(404, "NotFound", f"the fake does not serve {parts.path}")
            namespace, _, rest = parts.path.removeprefix(PREFIX).partition("/")
            return self._route(method, namespace, rest.split("/"), query, body)

    def _route(
        self, method: str, namespace: str, rest: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Json]:
        match method, rest:
            case "POST", ["pods"]:
                return self._create(namespace, body)
            case "GET", ["pods"]:
                return 200, self._list_pods(namespace, query.get("labelSelector", ""))
            case "GET", ["pods", name]:
                return self._found(namespace, name, remove=False)
            case "DELETE", ["pods", name]:
                return self._found(namespace, name, remove=True)
            case "GET", ["events"]:
                return 200, self._list_events(namespace, query.get("fieldSelector", ""))
        return _status(405, "MethodNotAllowed", f"the fake does not serve {method} {rest}")

    def _create(self, namespace: str, pod: Json) -> tuple[int, Json]:
        name = pod["metadata"]["name"]
        if (namespace, name) in self.pods:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists')
        stored = copy.deepcopy(pod)
        stored["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()))
        stored["status"] = {"phase": "Pending"}
        self.on_create(stored)
        self.pods[(namespace, name)] = stored
        return 201, stored

    def _found(self, namespace: str, name: str, remove: bool) -> tuple[int, Json]:
        pod = self.pods.pop((namespace, name), None) if remove else self.pods.get((namespace, name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        return 200, pod

    def _list_pods(self, namespace: str, selector: str) -> Json:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = [
            pod
            for (ns, _), pod in self.pods.items()
            if ns == namespace and wanted.items() <= pod["metadata"].get("labels", {}).items()
        ]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def _list_events(self, namespace: str, selector: str) -> Json:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = [
            event
            for event in self.events
            if event["metadata"]["namespace"] == namespace
            and all(event["involvedObject"].get(k.split(".", 1)[1]) == v for k, v in wanted.items())
        ]
        return {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}


def _status(code: int, reason: str, message: str) -> tuple[int, Json]:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    return code, {**body, "reason": reason, "message": message, "code": code}


def _handler(api: FakeKubernetesApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            code, answer = api.handle(self.command, self.path, json.loads(raw) if raw else None)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
