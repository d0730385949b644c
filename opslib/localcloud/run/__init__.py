"""Cloud Run Admin API v2 (`run.googleapis.com`): services, revisions, jobs, executions, tasks.

Owns the resources in their wire shape and Google's validation (`rules` Cloud Run's limits,
`services` and `jobs` the Service and Job models, `executions` the Execution and Task shapes),
their REST routes (`services_api`, `jobs_api`, `iam` the policy methods), their state and
long-running operations (`backend` services, revisions and every Run operation; `jobs_backend`
jobs, executions and tasks), and what runs behind them: `front` (one listener per service URL,
checking ID tokens and IAM, proxying through `upstream`), `instances` (a revision's container
as a process), `tasks` (a job's task attempts) and `container` (the command, environment and
log lines both share); `jobs_iam` says who may call a job's `:run`.

Uses, through the interfaces of `opslib.localcloud.cloud` only: `registry` (Cloud Build's
images, resolved and run), `secrets` (Secret Manager payloads for `secretKeyRef`), `logs`
(Cloud Logging: stdout/stderr, request logs, system logs). Scheduler calls it over HTTP.
May import `opslib.core` and the shared modules of `opslib.localcloud`, never another API.
"""
