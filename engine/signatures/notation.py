"""Notation verification of one JWS envelope against ``--notation-certificates`` and a trust policy.

Implemented (notation trust-policy spec, ``notary.x509`` scheme):
* policy document ``version`` 1.0; the first policy whose ``registryScopes`` has ``*`` or the
  image repository applies; exactly one trust store of type ``ca`` (filled by the given certificates);
* ``signatureVerification.level`` ``strict`` (everything enforced) or ``permissive`` (signature and
  certificate expiry only warned about), ``trustedIdentities`` ``*`` or ``x509.subject: <DN>``
  (every attribute given must equal the leaf's);
* integrity (JWS signature with the leaf key, alg matching the key), authenticity (x5c chain, each
  certificate issued by the next, CA constraints, anchored in a trusted certificate), validity periods
  at verification time, ``io.cncf.notary.expiry``, and the signed ``targetArtifact`` descriptor.
Not implemented: levels ``audit``/``skip``, ``override``, revocation (OCSP/CRL), RFC 3161 timestamps
and the ``notary.x509.signingAuthority`` scheme, ``tsa``/``signingAuthority`` stores, plugins, COSE
envelopes, escaped commas in DNs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..descriptor import Descriptor
from ..gojson import go_loads
from .errors import CertificateError, PayloadDigestMismatch, SignatureExpired, TrustPolicyError
from .jws import EXPIRY, JwsEnvelope, parse_jws, verify_jws_signature
from .keys import split_pem_list

_DN_NAMES = {
    NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E", NameOID.SERIAL_NUMBER: "SERIALNUMBER",
}


@dataclass(frozen=True)
class TrustPolicy:
    name: str
    level: str
    trusted_identities: list[str]


@dataclass(frozen=True)
class NotationOptions:
    """``--notation-certificates`` (PEM) and ``--notation-policy-document`` (JSON text)."""

    certificates: list[x509.Certificate]
    policy_document: str


@dataclass
class NotationOutcome:
    signer: str
    warnings: list[str] = field(default_factory=list)


def load_certificates(values: list[str] | tuple[str, ...]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for pem in (p for v in values for p in split_pem_list(v)):
        try:
            certs.append(x509.load_pem_x509_certificate(pem.encode()))
        except ValueError as err:
            raise CertificateError(f"cannot load notation certificate: {err}") from None
    return certs


def select_policy(document: str, repository: str) -> TrustPolicy:
    try:
        doc = go_loads(document)
    except ValueError:
        raise TrustPolicyError("notation policy document is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != "1.0":
        raise TrustPolicyError("notation policy document must be an object with \"version\": \"1.0\"")
    policies = doc.get("trustPolicies")
    if not isinstance(policies, list) or not policies:
        raise TrustPolicyError("notation policy document has no trustPolicies")
    for raw in policies:
        if not isinstance(raw, dict):
            raise TrustPolicyError("a notation trust policy is not an object")
        scopes = raw.get("registryScopes")
        if isinstance(scopes, list) and ("*" in scopes or repository in scopes):
            return _parse_policy(raw)
    raise TrustPolicyError(f"no notation trust policy applies to {repository}")


def _parse_policy(raw: dict[str, Any]) -> TrustPolicy:
    name = str(raw.get("name", ""))
    verification = raw.get("signatureVerification")
    level = verification.get("level") if isinstance(verification, dict) else None
    if level not in ("strict", "permissive"):
        raise TrustPolicyError(f"trust policy {name!r}: level {level!r} is not supported (strict, permissive)")
    if isinstance(verification, dict) and "override" in verification:
        raise TrustPolicyError(f"trust policy {name!r}: signatureVerification.override is not supported")
    stores = raw.get("trustStores")
    if not isinstance(stores, list) or len(stores) != 1:
        raise TrustPolicyError(f"trust policy {name!r} must name exactly one trust store")
    if not isinstance(stores[0], str) or not stores[0].startswith("ca:"):
        raise TrustPolicyError(f"trust policy {name!r}: only 'ca:' trust stores are supported, got {stores[0]!r}")
    identities = raw.get("trustedIdentities")
    if not isinstance(identities, list) or not identities or not all(isinstance(i, str) for i in identities):
        raise TrustPolicyError(f"trust policy {name!r} has no trustedIdentities")
    return TrustPolicy(name, str(level), list(identities))


def dn_attributes(name: x509.Name) -> dict[str, str]:
    return {_DN_NAMES.get(attr.oid, attr.oid.dotted_string): str(attr.value) for attr in name}


def parse_dn(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip():
            raise TrustPolicyError(f"cannot parse distinguished name {text!r}")
        out[key.strip().upper()] = value.strip()
    return out


def _identity_trusted(policy: TrustPolicy, leaf: x509.Certificate) -> bool:
    subject = dn_attributes(leaf.subject)
    for identity in policy.trusted_identities:
        if identity.strip() == "*":
            return True
        kind, sep, value = identity.partition(":")
        if sep and kind.strip() == "x509.subject":
            wanted = parse_dn(value)
            if all(subject.get(k) == v for k, v in wanted.items()):
                return True
    return False


def _check_validity(cert: x509.Certificate, now: datetime, which: str, warnings: list[str] | None) -> None:
    if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return
    when = "expired on" if now > cert.not_valid_after_utc else "is not valid before"
    stamp = cert.not_valid_after_utc if now > cert.not_valid_after_utc else cert.not_valid_before_utc
    message = f"{which} certificate {cert.subject.rfc4514_string()} {when} {stamp.isoformat()}"
    if warnings is None:
        raise CertificateError(message)
    warnings.append(message)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_chain(chain: list[x509.Certificate], trusted: list[x509.Certificate], now: datetime,
                 warnings: list[str] | None) -> None:
    """x5c (leaf first) must link certificate by certificate and end in a trusted certificate."""
    leaf = chain[0]
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise CertificateError("signing certificate's key usage does not allow digital signatures")
    except x509.ExtensionNotFound:
        pass
    try:
        ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING not in ekus:
            raise CertificateError("signing certificate's extended key usage does not include code signing")
    except x509.ExtensionNotFound:
        pass
    for i, cert in enumerate(chain):
        _check_validity(cert, now, "signing" if i == 0 else "chain", warnings)
        if i + 1 < len(chain):
            issuer = chain[i + 1]
            if not _is_ca(issuer):
                raise CertificateError(f"certificate {issuer.subject.rfc4514_string()} in x5c is not a CA")
            if not _issued_by(cert, issuer):
                raise CertificateError(f"x5c[{i}] is not issued by x5c[{i + 1}]")
    top = chain[-1]
    trusted_ders = {t.public_bytes(Encoding.DER) for t in trusted}
    if top.public_bytes(Encoding.DER) in trusted_ders:
        return
    for anchor in trusted:
        if _issued_by(top, anchor) and (_is_ca(anchor) or anchor.subject == anchor.issuer):
            _check_validity(anchor, now, "trusted", warnings)
            return
    raise CertificateError("the signing certificate chain does not lead to any of the notation certificates given")


def check_target(payload: dict[str, Any], root: Descriptor) -> None:
    target = payload.get("targetArtifact")
    if not isinstance(target, dict):
        raise PayloadDigestMismatch("notation payload has no targetArtifact")
    if target.get("digest") != str(root.digest):
        raise PayloadDigestMismatch(
            f"notation payload names {target.get('digest')}, not the image digest {root.digest}")
    if target.get("size") != root.size:
        raise PayloadDigestMismatch(f"notation payload size {target.get('size')} differs from the image ({root.size})")
    if target.get("mediaType") != root.media_type:
        raise PayloadDigestMismatch(
            f"notation payload media type {target.get('mediaType')!r} differs from the image ({root.media_type})")


def verify_envelope(data: bytes, root: Descriptor, policy: TrustPolicy, trusted: list[x509.Certificate],
                    now: datetime | None = None) -> NotationOutcome:
    """Integrity, then authenticity, then expiry; ``permissive`` turns expiry failures into warnings."""
    now = now or datetime.now(UTC)
    env: JwsEnvelope = parse_jws(data)
    verify_jws_signature(env)
    check_target(env.payload, root)
    outcome = NotationOutcome(signer=env.certificates[0].subject.rfc4514_string())
    lenient = outcome.warnings if policy.level == "permissive" else None
    verify_chain(env.certificates, trusted, now, lenient)
    if not _identity_trusted(policy, env.certificates[0]):
        raise CertificateError(f"signer {outcome.signer} is not a trusted identity of policy {policy.name!r}")
    expiry = env.time_header(EXPIRY)
    if expiry is not None and now > expiry:
        message = f"notation signature expired on {expiry.isoformat()}"
        if lenient is None:
            raise SignatureExpired(message)
        lenient.append(message)
    return outcome
