"""The gRPC face of Cloud Monitoring, for the official `google-cloud-monitoring` client.

That client has no REST transport, so localcloud also listens for gRPC (insecure, on a port of
127.0.0.1 that `/_localcloud/health` reports as `grpc`). Each method turns the request message
into the same JSON the REST routes take (protobuf's JSON mapping), runs the same backend
method on the server's event loop, and turns the answer back; Google's errors keep their code.
Methods localcloud does not serve answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.cloud.monitoring_v3.types import alert as alert_types
from google.cloud.monitoring_v3.types import alert_service, notification_service
from google.cloud.monitoring_v3.types import notification as channel_types
from google.protobuf import empty_pb2, json_format

from opslib.localcloud.errors import ApiError
from opslib.localcloud.monitoring import api
from opslib.localcloud.monitoring.backend import Monitoring
from opslib.localcloud.schema import camel

Handler = Callable[[Any], Any]
VERBS = {"Create": "POST", "Update": "PATCH", "Delete": "DELETE"}


def _json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _proto(cls: Any, data: dict[str, Any]) -> Any:
    return json_format.ParseDict(data, cls.pb()(), ignore_unknown_fields=False)


def _mask(request: Any) -> list[str]:
    return [camel(p) for p in request.update_mask.paths]


def _project(cloud: Any, name: str) -> str:
    return cloud.project_id(name.split("/")[1])


def _page(key: str, items: list[Any], request: Any) -> dict[str, Any]:
    query = {"pageSize": str(request.page_size), "pageToken": request.page_token}
    return api.page(key, items, query)


def _methods(backend: Monitoring) -> dict[str, tuple[Any, Any, Handler]]:
    """`Service/Method` -> (request class, response class, handler of the request message)."""
    cloud = backend.cloud

    def channels(request: Any) -> dict:
        prefix = f"projects/{_project(cloud, request.name)}/"
        items = [backend.shown_channel(c) for n, c in sorted(backend.channels.items())]
        return _page(
            "notificationChannels", [c for c in items if c["name"].startswith(prefix)], request
        )

    def policies(request: Any) -> dict:
        prefix = f"projects/{_project(cloud, request.name)}/"
        items = [p for n, p in sorted(backend.policies.items()) if n.startswith(prefix)]
        return _page("alertPolicies", items, request)

    def create_policy(request: Any) -> dict:
        body = api.policy_body(_json(request.alert_policy))
        return backend.create_policy(_project(cloud, request.name), body)

    def update_policy(request: Any) -> dict:
        body = api.policy_body(_json(request.alert_policy))
        return backend.patch_policy(request.alert_policy.name, body, _mask(request))

    ns, a = notification_service, alert_service
    chan, pol = "NotificationChannelService/", "AlertPolicyService/"
    return {
        chan + "ListNotificationChannels": (
            ns.ListNotificationChannelsRequest,
            ns.ListNotificationChannelsResponse,
            channels,
        ),
        chan + "GetNotificationChannel": (
            ns.GetNotificationChannelRequest,
            channel_types.NotificationChannel,
            lambda r: backend.shown_channel(backend.channel(r.name)),
        ),
        chan + "CreateNotificationChannel": (
            ns.CreateNotificationChannelRequest,
            channel_types.NotificationChannel,
            lambda r: backend.create_channel(
                _project(cloud, r.name), _json(r.notification_channel)
            ),
        ),
        chan + "UpdateNotificationChannel": (
            ns.UpdateNotificationChannelRequest,
            channel_types.NotificationChannel,
            lambda r: backend.patch_channel(
                r.notification_channel.name, _json(r.notification_channel), _mask(r)
            ),
        ),
        chan + "DeleteNotificationChannel": (
            ns.DeleteNotificationChannelRequest,
            None,
            lambda r: backend.delete_channel(r.name, r.force),
        ),
        pol + "ListAlertPolicies": (
            a.ListAlertPoliciesRequest,
            a.ListAlertPoliciesResponse,
            policies,
        ),
        pol + "GetAlertPolicy": (
            a.GetAlertPolicyRequest,
            alert_types.AlertPolicy,
            lambda r: backend.policy(r.name),
        ),
        pol + "CreateAlertPolicy": (
            a.CreateAlertPolicyRequest,
            alert_types.AlertPolicy,
            create_policy,
        ),
        pol + "UpdateAlertPolicy": (
            a.UpdateAlertPolicyRequest,
            alert_types.AlertPolicy,
            update_policy,
        ),
        pol + "DeleteAlertPolicy": (
            a.DeleteAlertPolicyRequest,
            None,
            lambda r: backend.delete_policy(r.name),
        ),
    }


class Front:
    """A gRPC server on 127.0.0.1 whose methods run the backend on the server's event loop."""

    def __init__(
        self, backend: Monitoring, loop: asyncio.AbstractEventLoop, calls: list[tuple[str, str]]
    ) -> None:
        self.backend, self.loop, self.calls = backend, loop, calls
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {}
        for full, (request_cls, response_cls, handler) in _methods(backend).items():
            service, method = full.split("/")
            handlers.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._wrap(handler, response_cls, full),
                request_deserializer=request_cls.pb().FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        self.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(f"google.monitoring.v3.{service}", methods)
                for service, methods in handlers.items()
            ]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _wrap(self, handler: Handler, response_cls: Any, full: str) -> Callable[[Any, Any], Any]:
        """The method on the loop; recorded in the calls list as its REST verb would be."""
        name = full.split("/")[1]
        verb = next((v for p, v in VERBS.items() if name.startswith(p)), "GET")

        def method(request: Any, context: grpc.ServicerContext) -> Any:
            async def run() -> Any:
                self.calls.append((verb, f"/google.monitoring.v3.{full}"))
                return handler(request)

            try:
                answer = asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)
            except ApiError as exc:
                context.abort(getattr(grpc.StatusCode, exc.status), exc.message)
            if response_cls is None:
                return empty_pb2.Empty()
            return _proto(response_cls, answer)

        return method

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=0)
