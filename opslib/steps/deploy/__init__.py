"""Step 3 — build with Cloud Build, deploy to Cloud Run, route traffic to the new revision.

Owns `service` (a Cloud Run service: plan, build, deploy, IAM), `job` (a Cloud Run job from the
same image) and `preflight` (the routes live Scheduler jobs call, checked before a deploy).
May import `core`, `spec`, `cloud` and the other steps (`steps.endpoint`, `steps.secrets`).
"""
