"""Signatures on the wire: ``pull`` brings an image's signatures along, ``push`` sends them back.

One module per job:

* :mod:`.policy`: whether pulled images must verify, and with which keys (``--verify``,
  ``<store>/policy.json``);
* :mod:`.sources`: where one image's signatures are asked for (mirrors, the upstream, the batch's
  tag listings), as its image is;
* :mod:`.referrers`: the OCI 1.1 Referrers API and the referrers tag schema (listing, one probe per
  registry and batch, the index a push merges into);
* :mod:`.fetch`: the signatures of one image into the store's blobs, bounded and checked;
* :mod:`.settle`: recording them before the image tag, verifying, undoing a refusal;
* :mod:`.push`: sending the stored signatures after the image.

The signature tags' grammar is :mod:`gadgetstore.engine.reference`'s; the formats, finding
signatures in the store and verifying them are :mod:`gadgetstore.engine.signatures`.
"""

from __future__ import annotations

from .fetch import FetchedSignature, SignatureFetch
from .policy import POLICY_FILE, PolicyError, VerifyPolicy, load_policy
from .push import plan_signature_push, push_signatures
from .referrers import ReferrersApi
from .settle import SignatureOutcome, SignatureRefused, discard_refused, settle_signatures, stored_signatures

__all__ = [
    "POLICY_FILE",
    "FetchedSignature",
    "PolicyError",
    "ReferrersApi",
    "SignatureFetch",
    "SignatureOutcome",
    "SignatureRefused",
    "VerifyPolicy",
    "discard_refused",
    "load_policy",
    "plan_signature_push",
    "push_signatures",
    "settle_signatures",
    "stored_signatures",
]
