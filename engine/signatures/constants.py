"""Media types and annotation keys of cosign, Sigstore bundles and notation (their tag names are
in :mod:`gadgetstore.engine.reference`, with the rest of the tag grammar)."""

from __future__ import annotations

from ..digest import Digest

# cosign
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

# Sigstore bundle
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_V03_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3"
BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"

# notation
NOTATION_ARTIFACT = "application/vnd.cncf.notary.signature"
JWS_ENVELOPE = "application/jose+json"
COSE_ENVELOPE = "application/cose"
NOTATION_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"

# OCI empty descriptor (image-spec 1.1): the two bytes ``{}``
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = Digest.of_bytes(EMPTY_JSON)

SIGNATURE_ARTIFACT_TYPES = (COSIGN_SIG_ARTIFACT, BUNDLE_V03, NOTATION_ARTIFACT)

