"""Secret Manager v1 (`secretmanager.googleapis.com`): secrets, versions and payloads.

Owns the Secret and SecretVersion resources in their wire shape with Google's rules (`backend`:
the model and its store, names with the project number, CRC32C checks) and the REST routes
(`api`). Serves Cloud Run as the `SecretReader` interface of `opslib.localcloud.cloud`
(`backend.SecretManager.access`).

Uses no other API. May import `opslib.core` and the shared modules of `opslib.localcloud`.
"""
