"""localcloud: an emulator of the Google Cloud REST APIs opslib uses, on 127.0.0.1.

It answers the official clients and gcloud unchanged, really runs deployed services, really
fires Scheduler jobs on their cron, and really records logs. One port serves every API;
control routes live under /_localcloud/. See docs/localcloud.md.

Owns one package per Google API, each with its resources' model and validation (its own
rules, written from Google's documented behaviour), its REST routes and what runs behind it:
`run`, `scheduler`, `logging`, `secretmanager`, `storage`, `cloudbuild`. The packages share
only the infrastructure at this level: `server` (the process and its control routes),
`router`, `store`, `backend` (a store-backed API's base), `resources` (names, NOT_FOUND,
paging), `schema` (request bodies as Google's JSON parser reads them), `clock`, `errors`,
`tokens` (the JWTs localcloud signs and checks), `cloud` (the shared context and the
interfaces through which one API drives another) and `control` (start/stop/registry).
May import `opslib.core` only: never `opslib.spec`, so that localcloud stays an independent
witness of opslib's mistakes, and never a step or the doctor.
"""
