"""Step 2 — the Flask endpoint: read it, patch it (libcst), lint it, check it locally.

Owns `source` (the endpoint as routes), `patch` (add a job), `remove` (take one out), `lint`,
`check` (step 2's local run under gunicorn via `serve`) and `folder` (a new service's folder).
May import `core`, `spec`, `cloud` and `opslib.steps.scaffold` (the route template).
"""
