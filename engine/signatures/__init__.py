"""Image signatures: cosign (legacy tag, OCI 1.1 referrer, Sigstore bundle) and notation JWS.

Pure format modules (``simplesigning``, ``dsse``, ``bundle``, ``jws``, ``notation``, ``keys``) know
nothing of the store; ``locate``, ``cosign``, ``verify`` and ``sign`` walk it.

For the registry code: :func:`signature_refs` names the tags to fetch next to an image,
:data:`SIGNATURE_ARTIFACT_TYPES` the referrer types to keep, :func:`record_pulled_signature` keeps a
pulled one alive, :func:`signature_artifacts` lists what to push, :func:`verify_image` verifies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .constants import SIGNATURE_ARTIFACT_TYPES
    from .errors import SignatureError
    from .keys import PublicKey, default_public_keys, load_public_keys
    from .locate import SignatureArtifact, record_pulled_signature, signature_artifacts, signature_refs
    from .notation import NotationOptions, load_certificates
    from .verify import VerifyResult, verify_image

# Loaded on first use: a module that needs only ``constants`` or ``locate`` (a pull of unsigned
# images) does not pay for cryptography and x509.
_HOMES = {
    "SIGNATURE_ARTIFACT_TYPES": "constants", "SignatureError": "errors", "PublicKey": "keys",
    "default_public_keys": "keys", "load_public_keys": "keys", "SignatureArtifact": "locate",
    "record_pulled_signature": "locate", "signature_artifacts": "locate", "signature_refs": "locate",
    "NotationOptions": "notation", "load_certificates": "notation", "VerifyResult": "verify",
    "verify_image": "verify",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)


# The names above, and the modules the registry code and the CLI use.
__all__ = [
    "SIGNATURE_ARTIFACT_TYPES",
    "NotationOptions",
    "PublicKey",
    "SignatureArtifact",
    "SignatureError",
    "VerifyResult",
    "constants",
    "default_public_keys",
    "encoding",
    "errors",
    "keys",
    "load_certificates",
    "load_public_keys",
    "locate",
    "notation",
    "record_pulled_signature",
    "sign",
    "signature_artifacts",
    "signature_refs",
    "signing_keys",
    "verify",
    "verify_image",
]
