"""Bucket providers as AIS names them, and their SDK aliases."""
from __future__ import annotations

from .errors import InvalidProvider

# alias -> canonical name; "" is what an empty or absent `provider` means
PROVIDERS = {"": "ais", "ais": "ais", "aws": "aws", "s3": "aws", "gcp": "gcp", "gs": "gcp",
             "azure": "azure", "az": "azure", "oci": "oci", "oc": "oci", "ht": "ht"}


def normalize_provider(p: str | None) -> str:
    """The canonical provider for `p` (None and "" mean ais); InvalidProvider otherwise."""
    if p is None:
        return "ais"
    try:
        return PROVIDERS[p]
    except (KeyError, TypeError):
        raise InvalidProvider(p) from None
