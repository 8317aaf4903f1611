"""``image verify``: check a stored image's signatures with cosign keys and/or notation certificates.

As in ig: cosign runs whenever keys are given (ig's published key by default), notation only when
a policy document is given; the image is verified when any of them succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import GadgetStoreError
from ..reference import legacy_signature_tag, parse
from ..resolve import resolve
from ..store import Store
from . import constants as c
from .cosign import FORMATS, Candidate
from .errors import (
    MalformedSignature,
    NoSignatureFound,
    PayloadDigestMismatch,
    SignatureError,
    SignatureMismatch,
)
from .keys import PublicKey, default_public_keys
from .locate import layers_of, read_blob, read_manifest, referrers
from .notation import NotationOptions, select_policy, verify_envelope

MAX_NOTATION_SIGNATURES = 50


@dataclass(frozen=True)
class VerifyResult:
    """What was verified: the image digest, by which format, signature manifest and signer."""

    ref: str
    digest: Digest
    method: str
    signature: Digest
    signer: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


def verify_image(store: Store, ref: str, public_keys: Sequence[PublicKey] | None = None,
                 notation: NotationOptions | None = None, now: datetime | None = None) -> VerifyResult:
    """Verify the image ``ref`` names (a tag, a digest: see :mod:`..resolve`); raises a SignatureError
    on failure.

    ``public_keys=None`` means Inspektor Gadget's key; an empty list disables cosign.
    """
    found = resolve(store, ref)
    root = found.descriptor
    keys = default_public_keys() if public_keys is None else list(public_keys)
    if not keys and notation is None:
        raise SignatureError("nothing to verify with: give public keys or a notation policy document")
    failures: list[tuple[str, GadgetStoreError]] = []
    if keys:
        try:
            return verify_cosign(store, ref, root.digest, keys)
        except SignatureError as err:
            failures.append(("cosign", err))
    if notation is not None:
        try:
            return verify_notation(store, ref, root, notation, now,
                                   repository=found.repository("verify its notation signature"))
        except SignatureError as err:
            failures.append(("notation", err))
    raise _combine(failures)


def _combine(failures: list[tuple[str, GadgetStoreError]]) -> GadgetStoreError:
    if len(failures) == 1:
        return failures[0][1]
    specific = [err for _, err in failures if not isinstance(err, NoSignatureFound)]
    cls = type(specific[0]) if specific else NoSignatureFound
    return cls("; ".join(f"{name}: {err}" for name, err in failures))


def verify_cosign(store: Store, ref: str, digest: Digest, keys: Sequence[PublicKey]) -> VerifyResult:
    load_errors: list[GadgetStoreError] = []
    for _name, finder in FORMATS:
        try:
            candidates = finder(store, digest)
        except SignatureError as err:
            load_errors.append(err)
            continue
        if candidates:
            return _check_candidates(ref, digest, candidates, keys)
    if load_errors:
        raise load_errors[0]
    raise NoSignatureFound(
        f"no cosign signature found for {digest} (looked for tag {legacy_signature_tag(digest)}, "
        f"OCI 1.1 and bundle referrers)")


def _check_candidates(ref: str, digest: Digest, candidates: list[Candidate], keys: Sequence[PublicKey]
                      ) -> VerifyResult:
    mismatch: PayloadDigestMismatch | None = None
    for cand in candidates:
        for key in keys:
            if not key.verify(cand.signature, cand.signed_data):
                continue
            try:
                cand.check_payload()
            except PayloadDigestMismatch as err:
                mismatch = PayloadDigestMismatch(f"{cand.where}: {err}")
                break
            return VerifyResult(ref, digest, cand.format, cand.manifest, str(key))
    if mismatch is not None:
        raise mismatch
    first = candidates[0]
    names = ", ".join(str(k) for k in keys)
    raise SignatureMismatch(
        f"{first.where} ({first.format}) does not verify with the trusted key(s) {names}: "
        "signed by another key, or its payload was tampered with")


def verify_notation(store: Store, ref: str, root: Descriptor, options: NotationOptions,
                    now: datetime | None = None, repository: str | None = None) -> VerifyResult:
    """``repository`` selects the trust policy (default: ``ref``'s)."""
    repository = repository or parse(ref).repository
    policy = select_policy(options.policy_document, repository)
    if not options.certificates:
        raise SignatureError("notation verification needs --notation-certificates")
    found = referrers(store, root.digest, c.NOTATION_ARTIFACT)
    errors: list[GadgetStoreError] = []
    for referrer in found[:MAX_NOTATION_SIGNATURES]:
        where = f"notation signature {referrer.desc.digest}"
        try:
            layers = layers_of(read_manifest(store, referrer.desc, where), where)
            jws = [layer for layer in layers if layer.media_type == c.JWS_ENVELOPE]
            if not jws:
                kinds = ", ".join(layer.media_type for layer in layers) or "none"
                raise MalformedSignature(
                    f"{where} has no {c.JWS_ENVELOPE} envelope (found: {kinds}; COSE is not supported)")
            outcome = verify_envelope(read_blob(store, jws[0], where), root, policy, options.certificates, now)
        except SignatureError as err:
            errors.append(type(err)(f"{where}: {err}"))
            continue
        return VerifyResult(ref, root.digest, "notation", referrer.desc.digest, outcome.signer,
                            tuple(outcome.warnings))
    if errors:
        raise _most_specific(errors)
    raise NoSignatureFound(f"no notation signature found for {root.digest}")


def _most_specific(errors: list[GadgetStoreError]) -> GadgetStoreError:
    """Prefer a real verdict (expired, mismatch, untrusted) over a signature we could not parse."""
    for err in errors:
        if not isinstance(err, MalformedSignature):
            return err
    return errors[0]
