"""Image signatures: cosign (legacy tag, OCI 1.1 referrer, Sigstore bundle) and notation JWS.

Pure format modules (``simplesigning``, ``dsse``, ``bundle``, ``jws``, ``notation``, ``keys``) know
nothing of the store; ``locate``, ``cosign``, ``verify`` and ``sign`` walk it.

For the registry code: :func:`signature_refs` names the tags to fetch next to an image,
:data:`SIGNATURE_ARTIFACT_TYPES` the referrer types to keep, :func:`record_pulled_signature` keeps a
pulled one alive, :func:`signature_artifacts` lists what to push, :func:`verify_image` verifies.
"""

from .constants import SIGNATURE_ARTIFACT_TYPES
from .errors import SignatureError
from .keys import PublicKey, default_public_keys, load_public_keys
from .locate import SignatureArtifact, record_pulled_signature, signature_artifacts, signature_refs
from .notation import NotationOptions, load_certificates
from .verify import VerifyResult, verify_image

__all__ = [
    "SIGNATURE_ARTIFACT_TYPES",
    "NotationOptions",
    "PublicKey",
    "SignatureArtifact",
    "SignatureError",
    "VerifyResult",
    "default_public_keys",
    "load_certificates",
    "load_public_keys",
    "record_pulled_signature",
    "signature_artifacts",
    "signature_refs",
    "verify_image",
]
