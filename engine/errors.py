"""One exception hierarchy, with messages meant for users.

    GadgetStoreError            exit code 1, message printed as ``Error: <message>``
    ├── InvalidDigest           a digest string that is not ``alg:hex`` of a known algorithm
    ├── InvalidReference        an image reference that cannot be normalised
    ├── ImageNotFound           a reference with no tag in the store
    ├── IntegrityError          bytes whose size or digest differ from what was promised
    │   └── DigestMismatch
    ├── InvalidArchive          an import archive that is truncated, hostile or inconsistent
    ├── InvalidManifest         a manifest or index that cannot be parsed or is too large
    ├── StoreError              the store directory itself is unusable (locked, damaged, not a store)
    │   ├── NotEnoughSpace      an import would not fit in the free space (refused before writing)
    │   └── IndexJsonBehind     a change is in the journal, but index.json could not be rewritten
    └── AnalysisError           an ELF/BTF/wasm layer that cannot be decoded
"""

from __future__ import annotations


class GadgetStoreError(Exception):
    """Base of every error the user may see; ``str(err)`` is a complete one-line message."""

    exit_code = 1


class InvalidDigest(GadgetStoreError):
    pass


class InvalidReference(GadgetStoreError):
    pass


class ImageNotFound(GadgetStoreError):
    pass


class IntegrityError(GadgetStoreError):
    pass


class DigestMismatch(IntegrityError):
    pass


class InvalidArchive(GadgetStoreError):
    pass


class InvalidManifest(GadgetStoreError):
    pass


class StoreError(GadgetStoreError):
    pass


class NotEnoughSpace(StoreError):
    pass


class IndexJsonBehind(StoreError):
    """The change is recorded (the journal is the truth); only index.json, for other tools, lags."""


class AnalysisError(GadgetStoreError):
    pass
