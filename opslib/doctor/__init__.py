"""Troubleshooting: read what happened (logs, jobs, revisions) and name the cause and fix.

Owns `diagnose` (the entry point), `facts` (one read of the cloud), the checks (`checks`,
`calls`, `timing`, `overlap`, `routes`), `pricing`, and `explain` (the doctor on a failed verify).
May import `core`, `spec`, `cloud` and `steps`; never the fleet or `opslib.notebook`.
"""
