"""The one place that builds Google Cloud clients; no other module knows which target it is on.

`gcp`: the official clients with Application Default Credentials and Google's endpoints.
`local`: the same clients pointed at localcloud's one port with anonymous credentials.
Every client speaks REST (the Logging client through its JSON API), so both targets take the
same code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from opslib.core.errors import OpslibError
from opslib.spec.model import Spec


def localcloud_url() -> str:
    """The running localcloud's address ($OPSLIB_LOCALCLOUD_URL, else its state directory)."""
    if os.environ.get("OPSLIB_LOCALCLOUD_URL"):
        return os.environ["OPSLIB_LOCALCLOUD_URL"].rstrip("/")
    from opslib.localcloud import control

    running = control.read(control.DEFAULT_STATE)
    if running is None:
        raise OpslibError(
            "target local",
            f"no localcloud is running (state {control.DEFAULT_STATE})",
            "start it with: opslib localcloud start --detach",
        )
    return running.url


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
    def run(self) -> Any:
        from google.cloud import run_v2

        return run_v2.ServicesClient(**self._kwargs())

    @cached_property
    def revisions(self) -> Any:
        from google.cloud import run_v2

        return run_v2.RevisionsClient(**self._kwargs())

    @cached_property
    def jobs(self) -> Any:
        from google.cloud import run_v2

        return run_v2.JobsClient(**self._kwargs())

    @cached_property
    def executions(self) -> Any:
        from google.cloud import run_v2

        return run_v2.ExecutionsClient(**self._kwargs())

    @cached_property
    def tasks(self) -> Any:
        from google.cloud import run_v2

        return run_v2.TasksClient(**self._kwargs())

    @cached_property
    def scheduler(self) -> Any:
        from google.cloud import scheduler_v1

        return scheduler_v1.CloudSchedulerClient(**self._kwargs())

    @cached_property
    def secrets(self) -> Any:
        from google.cloud import secretmanager_v1

        return secretmanager_v1.SecretManagerServiceClient(**self._kwargs())

    @cached_property
    def build(self) -> Any:
        from google.cloud.devtools import cloudbuild_v1

        return cloudbuild_v1.CloudBuildClient(**self._kwargs())

    @cached_property
    def storage(self) -> Any:
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
    def logging(self) -> Any:
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


def clients_for(spec: Spec) -> Clients:
    """The clients for a spec's target and project."""
    endpoint = localcloud_url() if spec.target == "local" else None
    return Clients(spec.target, spec.project, endpoint)
