"""Cloud Monitoring v3 (`monitoring.googleapis.com`): notification channels, alert policies
with log-match conditions, the incidents they open and the notifications they deliver.

Owns the NotificationChannel and AlertPolicy resources in their wire shape with Google's
validation (`rules`), their store and the incidents (`backend`), the REST routes (`api`), the
gRPC service the official `google-cloud-monitoring` client speaks (`grpc_front`: that client
has no REST transport), and delivery (`delivery`: a real HTTP POST of Google's webhook JSON,
version 1.2, to webhook channels; e-mail to `outbox.jsonl` in the state directory).

Uses: the `logs` interface of `opslib.localcloud.cloud` (every entry Logging stores is matched
against the log-match conditions as it is written; `matcher` compiles a condition's filter in
Logging's own filter language). May import `opslib.core` and the shared modules of
`opslib.localcloud`.
"""
