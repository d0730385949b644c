"""Step 5 — run the Scheduler job now and judge that one run from its logs.

Owns `service` (a route on a Cloud Run service: the attempt and its log lines) and `job` (a
Cloud Run job: its execution, one row per task). What failed is explained by `opslib.doctor`.
May import `core`, `spec`, `cloud` and `steps.logs`; never the doctor (it imports us).
"""
