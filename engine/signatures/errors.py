"""Signature errors: each names the check that failed, so ``image verify`` can say why in one line.

    SignatureError              base (a GadgetStoreError: ``Error: …``, exit 1)
    ├── NoSignatureFound        nothing signature-like is attached to the image digest
    ├── SignatureMismatch       the signature does not verify with any trusted key (wrong key, tampered payload)
    ├── PayloadDigestMismatch   the signed payload names another image digest, size or media type
    ├── MalformedSignature      a signature artifact that cannot be parsed, or is hostile
    ├── SignatureBlobMissing    a blob of the signature artifact is not in the store
    ├── CertificateError        notation: untrusted, invalid or expired certificate chain
    ├── SignatureExpired        notation: the signature's own expiry has passed
    ├── TrustPolicyError        notation: a trust policy we cannot apply (or that rejects the image)
    └── InvalidKey              a public or private key that cannot be loaded or is unsupported
"""

from __future__ import annotations

from ..errors import GadgetStoreError


class SignatureError(GadgetStoreError):
    pass


class NoSignatureFound(SignatureError):
    pass


class SignatureMismatch(SignatureError):
    pass


class PayloadDigestMismatch(SignatureError):
    pass


class MalformedSignature(SignatureError):
    pass


class SignatureBlobMissing(SignatureError):
    pass


class CertificateError(SignatureError):
    pass


class SignatureExpired(SignatureError):
    pass


class TrustPolicyError(SignatureError):
    pass


class InvalidKey(SignatureError):
    pass
