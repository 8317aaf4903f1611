"""The shape of extra-info, in a module light enough for the store side to import without the decoders."""

from __future__ import annotations

ExtraInfo = dict[str, tuple[str, bytes]]
"""Key (``ebpf.maps``, ``oci.created``, …) → ``(contentType, content)``, as IG's inspect addendum holds it."""
