"""``image sign``, ``image verify`` and ``key generate`` through the command line."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.engine.signatures.helpers import Image, attach, make_cert, make_jws, policy, target_of
from tests.support.cli import run_cli
from tests.support.cli import run_in_store as run
from tests.support.images import DEMO_IMAGE, ArchivedImage
from tests.support.special_files import FifoReader, char_device, is_dev_null


@pytest.fixture
def store(tmp_path: Path, gadget_tar: Path) -> Path:
    root = tmp_path / "store"
    assert run(root, "image", "import", str(gadget_tar))[0] == 0
    return root


@pytest.fixture
def digest(gadget_image: ArchivedImage) -> str:
    """The digest of the image in ``store``."""
    return str(gadget_image.root.digest)


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa", "ed25519"])
def test_key_generate_writes_private_pkcs8_and_public(tmp_path: Path, kind: str) -> None:
    tmp_path = tmp_path / "keys"
    tmp_path.mkdir()
    code, out, err = run(tmp_path / "s", "key", "generate", "--type", kind, str(tmp_path / "k"))
    assert code == 0 and out == ""
    assert err == f"Private key written to {tmp_path}/k.key\nPublic key written to {tmp_path}/k.pub\n"
    private = (tmp_path / "k.key").read_bytes()
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert stat.S_IMODE(os.stat(tmp_path / "k.key").st_mode) == 0o600
    key = serialization.load_pem_private_key(private, None)
    public = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes())
    assert key.public_key() == public
    assert sorted(os.listdir(tmp_path)) == ["k.key", "k.pub"], "no temporary files left behind"


def test_key_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "k.key").write_text("precious")
    code, _, err = run(tmp_path / "s", "key", "generate", str(tmp_path / "k"))
    assert code != 0 and err == f"Error: {tmp_path}/k.key already exists; use --force to replace it\n"
    assert (tmp_path / "k.key").read_text() == "precious"
    assert run(tmp_path / "s", "key", "generate", "--force", str(tmp_path / "k"))[0] == 0


@pytest.mark.parametrize("fmt", ["legacy", "oci11", "bundle"])
def test_sign_then_verify(store: Path, digest: str, tmp_path: Path, fmt: str) -> None:
    assert run(store, "key", "generate", "--type", "ed25519", str(tmp_path / "k"))[0] == 0
    code, out, err = run(store, "image", "sign", "trace_demo", "--key", str(tmp_path / "k.key"), "--format", fmt)
    assert code == 0 and out == ""
    assert err.startswith(f"Signed {DEMO_IMAGE}@{digest} ({fmt}): ")
    pub = (tmp_path / "k.pub").read_text()
    code, out, err = run(store, "image", "verify", "trace_demo", "--public-keys", pub)
    assert code == 0, err
    assert out == "Verifying image: trace_demo\nImage verified successfully!\n"
    assert "Verified cosign" in err


def test_verify_failures_are_one_line_errors(store: Path, digest: str, tmp_path: Path) -> None:
    code, out, err = run(store, "image", "verify", "trace_demo")
    assert code != 0
    assert out == "Verifying image: trace_demo\n"
    assert err == (f"Error: no cosign signature found for {digest} (looked for tag "
                   f"sha256-{digest[7:]}.sig, OCI 1.1 and bundle referrers)\n")
    run(store, "key", "generate", str(tmp_path / "a"))
    run(store, "key", "generate", str(tmp_path / "b"))
    assert run(store, "image", "sign", "trace_demo", "--key", str(tmp_path / "a.key"))[0] == 0
    code, out, err = run(store, "image", "verify", "trace_demo")  # default key: Inspektor Gadget's
    assert code != 0 and "does not verify with the trusted key(s) ECDSA P-256" in err and err.count("\n") == 1
    both = (tmp_path / "b.pub").read_text() + "," + (tmp_path / "a.pub").read_text()
    assert run(store, "image", "verify", "trace_demo", "--public-keys", both)[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["image", "verify", "nope"], "Error: image 'nope' not found in the store"),
    (["image", "verify", "trace_demo", "--public-keys", "not a pem"], "Error: expected PEM text"),
    (["image", "verify", "trace_demo", "--public-keys", ""], "Error: nothing to verify with"),
    (["image", "verify", "trace_demo", "--public-keys", "", "--notation-policy-document", "{"],
     "Error: notation policy document is not valid JSON"),
    (["image", "sign", "trace_demo", "--key", "/nonexistent.key"],
     "Error: private key /nonexistent.key does not exist"),
    (["image", "sign", "missing", "--key", "/nonexistent.key"], "Error: private key"),
    (["image", "verify", "trace_demo", "--public-keys", "", "--notation-policy-document", "[" * 100_000],
     "Error: notation policy document is not valid JSON"),
])
def test_usage_errors(store: Path, args: list[str], message: str) -> None:
    code, _, err = run(store, *args)
    assert code != 0 and err.startswith(message), err


def test_encrypted_or_cosign_keys_are_refused_clearly(store: Path, tmp_path: Path) -> None:
    (tmp_path / "cosign.key").write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAA\n"
                                         "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    code, _, err = run(store, "image", "sign", "trace_demo", "--key", str(tmp_path / "cosign.key"))
    assert code != 0 and "password-encrypted cosign key" in err


@pytest.mark.leaves_damaged_store
def test_tampered_signature_through_cli(store: Path, digest: str, tmp_path: Path) -> None:
    run(store, "key", "generate", "--type", "rsa", str(tmp_path / "k"))
    run(store, "image", "sign", "trace_demo", "--key", str(tmp_path / "k.key"))
    index = json.loads((store / "index.json").read_bytes())
    (sig,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"].endswith(".sig")]
    manifest = store / "blobs" / "sha256" / sig["digest"][7:]
    payload_digest = json.loads(manifest.read_bytes())["layers"][0]["digest"]
    os.unlink(store / "blobs" / "sha256" / payload_digest[7:])
    code, _, err = run(store, "image", "verify", "trace_demo", "--public-keys", (tmp_path / "k.pub").read_text())
    assert code != 0 and err == (f"Error: signature sha256-{digest[7:]}.sig payload: blob {payload_digest} "
                                 "is missing from the store\n")


def _image(store: Path) -> Image:
    opened = Store.open(store)
    return Image(opened, DEMO_IMAGE, opened.resolve(DEMO_IMAGE))


def test_hostile_bundle_through_cli(store: Path, tmp_path: Path) -> None:
    run(store, "key", "generate", str(tmp_path / "k"))
    run(store, "image", "sign", "trace_demo", "--key", str(tmp_path / "k.key"), "--format", "bundle")
    image = _image(store)
    (pin,) = image.store.pins()
    manifest = json.loads(image.store.blobs.read(pin.digest))
    layer = manifest["layers"][0]
    bundle = json.loads(image.store.blobs.read(Digest.parse(layer["digest"])))
    bundle["dsseEnvelope"]["signatures"] *= 2
    data = json.dumps(bundle).encode()
    layer.update(digest=str(image.store.blobs.put(data)), size=len(data))
    new = canonical_json(manifest)
    with image.store.transaction() as txn:
        txn.unpin(pin.digest)
        txn.pin(Descriptor(pin.media_type, image.store.blobs.put(new), len(new)))
    code, out, err = run(store, "image", "verify", "trace_demo", "--public-keys", (tmp_path / "k.pub").read_text())
    assert code != 0 and out == "Verifying image: trace_demo\n"
    assert err == "Error: DSSE envelope must hold exactly one signature, it holds 2\n"


def test_notation_through_cli(store: Path) -> None:
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    valid = (now - timedelta(hours=1), now + timedelta(hours=1))
    leaf = make_cert("gadgets.example", key, None, key, ca=False, valid=valid)
    image = _image(store)
    attach(image, make_jws(key, [leaf], target_of(image), alg="ES256"))
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    args = ["image", "verify", "trace_demo", "--notation-certificates", pem, "--notation-policy-document", policy()]
    code, out, err = run(store, *args)
    assert code == 0, err
    assert out == "Verifying image: trace_demo\nImage verified successfully!\n"
    assert "Verified notation signature" in err
    code, out, err = run(store, *args[:-1], policy(identities=["x509.subject: CN=other, O=Notary, C=US"]))
    assert code != 0 and err.startswith("Error: cosign: no cosign signature found") and "not a trusted identity" in err


# -- key files, named as tar -f names them ----------------------------------------------------------


def test_key_generate_follows_symlinks_and_writes_into_fifos(tmp_path: Path) -> None:
    keys, elsewhere = tmp_path / "keys", tmp_path / "elsewhere"
    keys.mkdir()
    elsewhere.mkdir()
    (keys / "k.key").symlink_to(elsewhere / "private.pem")  # dangling: its target is created
    reader = FifoReader(keys / "k.pub")
    code, _, err = run(tmp_path / "s", "key", "generate", str(keys / "k"))
    assert code == 0, err
    public = serialization.load_pem_public_key(reader.join())
    assert os.readlink(keys / "k.key") == str(elsewhere / "private.pem")
    assert stat.S_IMODE(os.stat(elsewhere / "private.pem").st_mode) == 0o600
    assert serialization.load_pem_private_key((elsewhere / "private.pem").read_bytes(), None).public_key() == public
    assert stat.S_ISFIFO(os.lstat(keys / "k.pub").st_mode)
    assert sorted(os.listdir(keys)) == ["k.key", "k.pub"] and os.listdir(elsewhere) == ["private.pem"]


def test_key_generate_into_a_device_needs_no_force(tmp_path: Path) -> None:
    null = char_device(tmp_path / "k.key")
    (tmp_path / "k.pub").symlink_to(null)
    code, _, err = run(tmp_path / "s", "key", "generate", str(tmp_path / "k"))
    assert code == 0, err
    assert is_dev_null(null) and (tmp_path / "k.pub").is_symlink()


def test_key_generate_replaces_a_symlinked_key_only_with_force(tmp_path: Path) -> None:
    (tmp_path / "real.key").write_text("precious")
    os.chmod(tmp_path / "real.key", 0o644)
    (tmp_path / "k.key").symlink_to("real.key")
    code, _, err = run(tmp_path / "s", "key", "generate", str(tmp_path / "k"))
    assert (code, err) == (1, f"Error: {tmp_path}/k.key already exists; use --force to replace it\n")
    assert (tmp_path / "real.key").read_text() == "precious" and not (tmp_path / "k.pub").exists()
    assert run(tmp_path / "s", "key", "generate", "--force", str(tmp_path / "k"))[0] == 0
    assert (tmp_path / "k.key").is_symlink()
    assert (tmp_path / "real.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert stat.S_IMODE(os.stat(tmp_path / "real.key").st_mode) == 0o600, "a replaced key is 0600 too"


def test_key_generate_refuses_a_directory_before_writing_anything(tmp_path: Path) -> None:
    (tmp_path / "k.pub").mkdir()
    code, _, err = run(tmp_path / "s", "key", "generate", "--force", str(tmp_path / "k"))
    assert (code, err) == (1, f"Error: cannot write {tmp_path}/k.pub: it is a directory\n")
    assert not (tmp_path / "k.key").exists()


def test_sign_reads_the_key_from_stdin(tmp_path: Path, gadget_tar: Path) -> None:
    store = tmp_path / "store"
    assert run(store, "image", "import", str(gadget_tar))[0] == 0
    assert run(store, "key", "generate", str(tmp_path / "k"))[0] == 0
    code, _, err = run_cli("--store", str(store), "image", "sign", "trace_demo", "--key", "-",
                           input=(tmp_path / "k.key").read_text())
    assert code == 0 and err.startswith("Signed ghcr.io/inspektor-gadget/gadget/trace_demo:latest@"), err
    pub = (tmp_path / "k.pub").read_text()
    assert run(store, "image", "verify", "trace_demo", "--public-keys", pub)[0] == 0
    code, _, err = run_cli("--store", str(store), "image", "sign", "trace_demo", "--key", "-", input="not a key")
    assert code == 1 and err.startswith("Error: cannot load private key standard input: ") and err.count("\n") == 1
