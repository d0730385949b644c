"""The one place that builds Google Cloud clients; no other module knows which target it is on.

`gcp`: the official clients with Application Default Credentials and Google's endpoints.
`local`: the same clients pointed at localcloud's one port with anonymous credentials.
Every client speaks REST (the Logging client through its JSON API), so both targets take the
same code path. A session (`opslib.cloud.session`) is the one way to get them: it finds the
project, starts localcloud when needed and shares one `Clients` per target and project.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import logging as cloud_logging
    from google.cloud import run_v2, scheduler_v1, secretmanager_v1
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
