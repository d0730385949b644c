"""Cloud Scheduler v1 (`cloudscheduler.googleapis.com`): HTTP jobs that really fire.

Owns the Job resource in its wire shape with Google's validation and defaults (`rules` the
cron, time-zone, location, deadline and retry limits; `jobs` the model and its store), the
REST routes (`api`: jobs, pause/resume/run, locations) and the firing loop (`runner`: cron on
the job's wall clock, OIDC/OAuth tokens, attempt deadline, retries, `clock:advance`).

Uses: `logs` of `opslib.localcloud.cloud` (AttemptStarted/AttemptFinished entries) and, for a
target on run.googleapis.com, localcloud's own Cloud Run API over HTTP, as Scheduler calls Run
on Google. May import `opslib.core` and the shared modules of `opslib.localcloud`.
"""
