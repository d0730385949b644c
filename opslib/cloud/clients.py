"""The one place that builds Google Cloud clients; no other module knows which target it is on.

`gcp`: the official clients with Application Default Credentials and Google's endpoints.
`local`: the same clients pointed at localcloud's one port with anonymous credentials.
Every client speaks REST (the Logging client through its JSON API) except Monitoring's, which
has only gRPC: localcloud answers it on the gRPC port its health route names. Both targets take
the same code path. A session (`opslib.cloud.session`) is the one way to get them: it finds the
project, starts localcloud when needed and shares one `Clients` per target and project.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import logging as cloud_logging
    from google.cloud import monitoring_v3, run_v2, scheduler_v1, secretmanager_v1
    from google.cloud import storage as gcs
    from google.cloud.devtools import cloudbuild_v1


@dataclass(frozen=True)
class Clients:
    """Lazily built clients for one project, on one target."""

    target: str
    project: str
    endpoint: str | None = None

    def _kwargs(self) -> dict[str, Any]:
        if self.endpoint is None:
            return {"transport": "rest"}
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return {
            "transport": "rest",
            "client_options": ClientOptions(api_endpoint=self.endpoint),
            "credentials": AnonymousCredentials(),
        }

    @cached_property
    def run(self) -> run_v2.ServicesClient:
        from google.cloud import run_v2

        return run_v2.ServicesClient(**self._kwargs())

    @cached_property
    def revisions(self) -> run_v2.RevisionsClient:
        from google.cloud import run_v2

        return run_v2.RevisionsClient(**self._kwargs())

    @cached_property
    def jobs(self) -> run_v2.JobsClient:
        from google.cloud import run_v2

        return run_v2.JobsClient(**self._kwargs())

    @cached_property
    def executions(self) -> run_v2.ExecutionsClient:
        from google.cloud import run_v2

        return run_v2.ExecutionsClient(**self._kwargs())

    @cached_property
    def tasks(self) -> run_v2.TasksClient:
        from google.cloud import run_v2

        return run_v2.TasksClient(**self._kwargs())

    @cached_property
    def scheduler(self) -> scheduler_v1.CloudSchedulerClient:
        from google.cloud import scheduler_v1

        return scheduler_v1.CloudSchedulerClient(**self._kwargs())

    @cached_property
    def secrets(self) -> secretmanager_v1.SecretManagerServiceClient:
        from google.cloud import secretmanager_v1

        return secretmanager_v1.SecretManagerServiceClient(**self._kwargs())

    @cached_property
    def build(self) -> cloudbuild_v1.CloudBuildClient:
        from google.cloud.devtools import cloudbuild_v1

        return cloudbuild_v1.CloudBuildClient(**self._kwargs())

    @cached_property
    def storage(self) -> gcs.Client:
        from google.cloud import storage

        if self.endpoint is None:
            return storage.Client(project=self.project)
        kwargs = self._kwargs()
        return storage.Client(
            project=self.project,
            credentials=kwargs["credentials"],
            client_options={"api_endpoint": self.endpoint},
        )

    @cached_property
    def logging(self) -> cloud_logging.Client:
        from google.cloud import logging as cloud_logging

        if self.endpoint is None:
            return cloud_logging.Client(project=self.project, _use_grpc=False)
        kwargs = self._kwargs()
        return cloud_logging.Client(
            project=self.project,
            credentials=kwargs["credentials"],
            _use_grpc=False,
            client_options={"api_endpoint": self.endpoint},
        )

    def _grpc_transport(self, transport_cls: Any) -> Any:
        """Monitoring's client speaks gRPC only: Google's endpoint, or localcloud's gRPC port."""
        if self.endpoint is None:
            return None
        import json
        import time
        from urllib.request import urlopen

        import grpc

        deadline = time.monotonic() + 30  # localcloud starts its gRPC face just after it listens
        while True:
            with urlopen(f"{self.endpoint}/_localcloud/health", timeout=10) as answer:
                address = json.loads(answer.read()).get("grpc")
            if address or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not address:
            from opslib.core.errors import OpslibError

            raise OpslibError(
                f"localcloud at {self.endpoint}",
                "it serves no gRPC, which Cloud Monitoring's client needs",
                "restart it with this version of opslib: opslib localcloud stop, then rerun",
            )
        return transport_cls(channel=grpc.insecure_channel(address))

    @cached_property
    def alert_policies(self) -> monitoring_v3.AlertPolicyServiceClient:
        from google.cloud import monitoring_v3
        from google.cloud.monitoring_v3.services.alert_policy_service.transports import (
            AlertPolicyServiceGrpcTransport,
        )

        transport = self._grpc_transport(AlertPolicyServiceGrpcTransport)
        return monitoring_v3.AlertPolicyServiceClient(transport=transport)

    @cached_property
    def channels(self) -> monitoring_v3.NotificationChannelServiceClient:
        from google.cloud import monitoring_v3
        from google.cloud.monitoring_v3.services.notification_channel_service.transports import (
            NotificationChannelServiceGrpcTransport,
        )

        transport = self._grpc_transport(NotificationChannelServiceGrpcTransport)
        return monitoring_v3.NotificationChannelServiceClient(transport=transport)

    @cached_property
    def monitoring_http(self) -> tuple[Any, str]:
        """Monitoring's REST API and its base URL: its incidents (`projects.alerts`) have no
        method in the Python client, so they are read as JSON."""
        if self.endpoint is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            scope = "https://www.googleapis.com/auth/cloud-platform"
            credentials, _ = google.auth.default(scopes=[scope])
            return AuthorizedSession(credentials), "https://monitoring.googleapis.com"
        import requests

        return requests.Session(), self.endpoint
