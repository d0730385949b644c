"""Cloud Storage JSON API (`storage.googleapis.com`): buckets and objects, with preconditions.

Owns the Bucket and Object resources in their wire shape (`backend`: metadata, bytes on disk,
generations and preconditions) and the REST routes (`api`: buckets, objects, downloads,
media/multipart/resumable uploads). Serves Cloud Build as the `ObjectReader` interface of
`opslib.localcloud.cloud`.

Uses no other API. May import `opslib.core` and the shared modules of `opslib.localcloud`.
"""
