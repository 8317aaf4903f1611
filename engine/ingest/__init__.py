"""Ingest: how bytes become durable, visible blobs of a store (see :mod:`.service`)."""

from .service import Ingest

__all__ = ["Ingest"]
