"""The base of an API backend whose state is one store collection of named maps.

Cloud Build, Secret Manager, Cloud Storage and Cloud Run (services, jobs) each loaded their
collection, made its maps and saved it by name in the same lines; `/_localcloud/reset` relies on
`init` making the maps again after the store empties them. One class keeps that contract.
"""

from __future__ import annotations

from typing import Any, ClassVar

from opslib.localcloud.cloud import Cloud


class CollectionBackend:
    """An API's resources: the maps `MAPS` in the store collection `COLLECTION`."""

    COLLECTION: ClassVar[str]
    MAPS: ClassVar[tuple[str, ...]]

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.data: dict[str, Any] = cloud.store.collection(self.COLLECTION)
        self.init()

    def init(self) -> None:
        """Make the missing maps: at start, and again after a reset has emptied the collection."""
        for key in self.MAPS:
            self.data.setdefault(key, {})

    def save(self) -> None:
        """Write the collection (atomically) after a change."""
        self.cloud.store.save(self.COLLECTION)
