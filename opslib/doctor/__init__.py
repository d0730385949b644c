"""Troubleshooting: read what happened (logs, jobs, executions, revisions) and name the cause
and fix.

Owns `diagnose` (the entry point and the checks of each runtime), `facts` (one read of the
cloud), the checks (`checks`: the Scheduler job and what all checks share; `service`, `routes`,
`timing` for a route; `jobs` for a Cloud Run job; `auth`, `calls`, `overlap` for both), and
`explain` (the doctor on a failed verify).
May import `core`, `spec`, `cloud` and `steps`; never the fleet or `opslib.notebook`.
"""
