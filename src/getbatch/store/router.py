"""Storage: routes every bucket to its backend by provider, in one place.

Only `ais` buckets have a backend today (the local data directory). A valid provider with
no backend configured on this node is a missing bucket (404, AIS's "remote bucket does not
exist" class); a name that is no provider at all is a 400 (`InvalidProvider`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import BucketNotFound
from .providers import normalize_provider

if TYPE_CHECKING:
    from .backend import Backend


class Storage:
    def __init__(self, backends: Mapping[str, Backend]) -> None:
        """`backends`: {canonical provider: Backend}."""
        self.backends = dict(backends)

    def backend(self, provider: str, bucket: str) -> Backend:
        """The Backend holding `provider://bucket`; BucketNotFound when no backend serves
        that provider here, InvalidProvider when `provider` is not a provider name."""
        p = normalize_provider(provider)
        b = self.backends.get(p)
        if b is None:
            raise BucketNotFound(bucket, p, f" (no {p} backend is configured on this node)")
        return b

    def providers(self) -> list[str]:
        return sorted(self.backends)
