"""One exception hierarchy, with messages meant for users.

Every error that can reach the user is a :class:`GadgetStoreError`: ``cli/context.py:user_errors``
prints ``Error: <message>`` and exits with its ``exit_code`` (1 unless said otherwise). The whole
tree, with the module of each class defined elsewhere::

    GadgetStoreError            exit code 1, message printed as ``Error: <message>``
    ├── InvalidDigest           a digest string that is not ``alg:hex`` of a known algorithm
    ├── InvalidReference        an image reference that cannot be normalised
    │   └── AmbiguousReference  a digest prefix (or a bare digest's name) that fits more than one image
    ├── ImageNotFound           a reference with no tag in the store
    │   └── BlobNotFound        (blobstore) a blob that is not in the store
    ├── IntegrityError          bytes whose size or digest differ from what was promised
    │   └── DigestMismatch
    ├── InvalidArchive          an import archive that is truncated, hostile or inconsistent
    ├── InvalidManifest         a manifest or index that cannot be parsed or is too large
    │   └── GraphTooLarge       an image graph deeper or larger than the limits of descriptor.GraphBudget
    ├── StoreError              the store directory itself is unusable (locked, damaged, not a store)
    │   ├── NotEnoughSpace      an import would not fit in the free space (refused before writing)
    │   ├── IndexJsonBehind     a change is in the journal, but index.json could not be rewritten
    │   └── BlobsMissing        (layoutindex) an index change naming blobs the store lacks
    ├── UserPathError           a file the user named cannot be read or written
    ├── AnalysisError           an ELF/BTF/wasm layer that cannot be decoded
    ├── BuildError              (buildspec) a gadget that cannot be built
    ├── RegistryError           (registry/errors, the tree of registry transfers)
    ├── AuthFileError           (registry/authfile) an auth file that cannot be read or written
    ├── CredentialHelperError   (registry/credhelper) a credential helper that failed
    ├── RegistriesConfigError   (registry/mirrors_config) a registries.toml that cannot be used
    ├── PolicyError             (registry/signatures/policy) a --verify policy that cannot be used
    ├── SignatureError          (signatures/errors, the tree of signature checks)
    │   └── SignatureRefused    (registry/signatures/settle) a pulled image its policy refused
    ├── MountError              (fusefs/runner) the kernel refused the mount
    ├── ImageListError          (cli/bulk_pull) a --file list of images that cannot be read
    ├── InspectError            (cli/inspect_cmd) extra info that cannot be decoded or encoded
    └── CommandTimedOut         (cli/deadline) exit code 124: --timeout ran out

Exceptions outside this tree never reach the user: each is internal control flow, caught in its
own package, and its docstring says where (``tests/test_error_tree.py`` holds the list).
"""

from __future__ import annotations


def exception_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception in ``group`` and its nested groups, in order."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(exception_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


class GadgetStoreError(Exception):
    """Base of every error the user may see; ``str(err)`` is a complete one-line message."""

    exit_code = 1


class InvalidDigest(GadgetStoreError):
    pass


class InvalidReference(GadgetStoreError):
    pass


class AmbiguousReference(InvalidReference):
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


class GraphTooLarge(InvalidManifest):
    pass


class StoreError(GadgetStoreError):
    pass


class UserPathError(GadgetStoreError):
    pass


class NotEnoughSpace(StoreError):
    pass


class IndexJsonBehind(StoreError):
    """The change is recorded (the journal is the truth); only index.json, for other tools, lags."""


class AnalysisError(GadgetStoreError):
    pass
