"""Whether pulled images must verify before they are tagged, and with which cosign keys.

``--verify`` asks for one pull; ``<store>/policy.json`` asks for every pull into that store, so an
air-gapped store can never gain an unverified image by a forgotten flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import GadgetStoreError
from ...gojson import go_loads

if TYPE_CHECKING:  # keys load cryptography: only when a signature is checked
    from ...signatures.keys import PublicKey

POLICY_FILE = "policy.json"


class PolicyError(GadgetStoreError):
    pass


@dataclass(frozen=True)
class VerifyPolicy:
    """Verify pulled images with these cosign keys (``None``: Inspektor Gadget's key) before tagging."""

    keys: tuple[PublicKey, ...] | None = None
    source: str = "--verify"

    def public_keys(self) -> list[PublicKey]:
        from ...signatures.keys import default_public_keys

        return default_public_keys() if self.keys is None else list(self.keys)


def load_policy(store_root: Path) -> VerifyPolicy | None:
    """``<store>/policy.json``: ``{"verify": true, "publicKeys": ["<PEM>", …]}``; None when off or absent."""
    path = store_root / POLICY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PolicyError(f"cannot read store policy {path}: {err.strerror or err}") from None
    try:
        doc = go_loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise PolicyError(f"store policy {path} is not valid JSON ({err})") from None
    if not isinstance(doc, dict) or set(doc) - {"verify", "publicKeys"}:
        raise PolicyError(f'store policy {path} must be an object with only "verify" and "publicKeys"')
    verify = doc.get("verify", False)
    pems = doc.get("publicKeys")
    if not isinstance(verify, bool):
        raise PolicyError(f'store policy {path}: "verify" must be true or false')
    if pems is not None and (not isinstance(pems, list) or not all(isinstance(p, str) for p in pems)):
        raise PolicyError(f'store policy {path}: "publicKeys" must be a list of PEM strings')
    if not verify:
        return None
    from ...signatures.keys import load_public_keys

    keys = None if pems is None else tuple(load_public_keys(pems))
    if keys is not None and not keys:
        raise PolicyError(f'store policy {path}: "publicKeys" is empty; nothing could ever verify')
    return VerifyPolicy(keys, f"store policy {path}")
