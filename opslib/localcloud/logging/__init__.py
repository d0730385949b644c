"""Cloud Logging v2 (`logging.googleapis.com`): entries:write and entries:list.

Owns the log store (`store`: every entry localcloud records, in LogEntry's wire shape, kept in
`logs.jsonl`), the REST routes (`api`) and the filter language (`filter_parse` reads a filter,
`filter` compiles it into a predicate over entries).

Uses nothing of the other APIs; they write through the `LogWriter` interface of
`opslib.localcloud.cloud`, which `store.LogStore` is. May import `opslib.core` and the shared
modules of `opslib.localcloud`.
"""
