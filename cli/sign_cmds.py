"""``image verify``, ``image sign`` and ``key generate``: signatures of images in the local store."""

from __future__ import annotations

from pathlib import Path

import click

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.resolve import resolve
from gadgetstore.engine.signatures.keys import DEFAULT_PUBLIC_KEY_PEM, load_public_keys
from gadgetstore.engine.signatures.notation import NotationOptions, load_certificates
from gadgetstore.engine.signatures.sign import SIGN_FORMATS, sign_image
from gadgetstore.engine.signatures.signing_keys import (
    KEY_TYPES,
    generate_private_key,
    load_private_key,
    write_key_pair,
)
from gadgetstore.engine.signatures.verify import verify_image
from gadgetstore.engine.store import Store

from .context import AppContext, pass_app, user_errors


@click.command("verify")
@click.argument("image")
@click.option(
    "--public-keys", "public_keys", multiple=True, default=[DEFAULT_PUBLIC_KEY_PEM], show_default=False,
    help="Public keys (inline PEM, comma-separated) to verify cosign signatures with "
         "(default: Inspektor Gadget's key; pass '' to disable cosign).",
)
@click.option("--notation-certificates", "certificates", multiple=True,
              help="Trusted certificates (inline PEM, comma-separated) for notation signatures.")
@click.option("--notation-policy-document", "policy", default="",
              help="Notation trust policy (JSON text, not a path); enables notation verification.")
@pass_app
@user_errors
def verify_cmd(app: AppContext, image: str, public_keys: tuple[str, ...], certificates: tuple[str, ...],
               policy: str) -> None:
    """Verify the signature of IMAGE in the local store (a name, NAME@DIGEST, a digest or a 12+ digit prefix)."""
    click.echo(f"Verifying image: {image}")
    keys = load_public_keys(public_keys)
    notation = NotationOptions(load_certificates(certificates), policy) if policy.strip() else None
    result = verify_image(app.store(), image, keys, notation)
    for warning in result.warnings:
        click.echo(f"WARN: {warning}", err=True)
    click.echo(f"Verified {result.method} signature {result.signature} of {result.digest} "
               f"(signer: {result.signer})", err=True)
    click.echo("Image verified successfully!")


@click.command("sign")
@click.argument("image")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="Private key (unencrypted PEM, e.g. made by 'gadgetstore key generate'; '-' is stdin).")
@click.option("--format", "fmt", type=click.Choice(SIGN_FORMATS), default="legacy", show_default=True,
              help="legacy: cosign 'sha256-<hex>.sig' tag; oci11: OCI 1.1 referrer; bundle: Sigstore bundle v0.3.")
@pass_app
@user_errors
def sign_cmd(app: AppContext, image: str, key_path: Path, fmt: str) -> None:
    """Sign IMAGE in the local store with a cosign-compatible signature.

    IMAGE may be a digest (sha256:..., a 12+ digit prefix, NAME@sha256:...); the signed payload names
    the image's repository: NAME's, or for a digest alone the one repository that tags it.
    """
    key = load_private_key(key_path)
    store = app.store()
    result = sign_image(store, image, key, fmt)
    where = result.tag if result.tag is not None else f"referrer {result.signature.digest}"
    click.echo(f"Signed {_signed_name(store, image)}@{result.digest} ({fmt}): {where}", err=True)


def _signed_name(store: Store, image: str) -> str:
    """The name as typed and normalised, or for a digest alone the repository it was signed for."""
    found = resolve(store, image)
    if found.reference is not None:
        return str(found.reference).split("@", 1)[0]
    try:
        return found.repository("sign")
    except GadgetStoreError:
        return ""  # a bundle names no repository


@click.group("key")
def key_group() -> None:
    """Manage signing keys."""


@key_group.command("generate")
@click.argument("prefix", type=click.Path(path_type=Path))
@click.option("--type", "kind", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True)
@click.option("--force", is_flag=True, help="Replace existing PREFIX.key / PREFIX.pub.")
@user_errors
def generate_cmd(prefix: Path, kind: str, force: bool) -> None:
    """Write a new key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub.

    A symlink is followed and a device or pipe written into; only a regular file needs --force.
    """
    key_path, pub_path = write_key_pair(prefix, generate_private_key(kind), force=force)
    click.echo(f"Private key written to {key_path}", err=True)
    click.echo(f"Public key written to {pub_path}", err=True)
