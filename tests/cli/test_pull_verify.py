"""``image pull --verify``, the store policy file, and signatures through push/pull/export/import, via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store as run
from tests.support.images import make_gadget_image
from tests.support.registry import RegistryServer, unique_repo


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    """Two key pairs; returns the private key paths and public PEMs."""
    out: dict[str, str] = {}
    for name in ("good", "wrong"):
        prefix = tmp_path / "keys" / name
        prefix.parent.mkdir(exist_ok=True)
        assert run(tmp_path / "k", "key", "generate", str(prefix))[0] == 0
        out[f"{name}.key"] = f"{prefix}.key"
        out[f"{name}.pub"] = Path(f"{prefix}.pub").read_text()
    return out


@pytest.fixture
def pushed(anon_registry: RegistryServer, tmp_path: Path, keys: dict[str, str]) -> str:
    """A signed image (legacy + bundle) pushed with ``image push``; returns its reference."""
    src = tmp_path / "src"
    image = str(normalize(anon_registry.ref(unique_repo("cli"), "v1")))
    make_gadget_image(Store.open(src), image, archs=("amd64",))
    for fmt in ("legacy", "bundle"):
        code, _, err = run(src, "image", "sign", image, "--key", keys["good.key"], "--format", fmt)
        assert code == 0, err
    code, _, err = run(src, "image", "push", image, "--insecure-registries", anon_registry.host)
    assert code == 0, err
    assert "Pushed 2 signature(s) of sha256:" in err
    return image


def pull(store: Path, server: RegistryServer, *args: str) -> tuple[int, str, str]:
    return run(store, "image", "pull", "--insecure-registries", server.host, *args)


def test_pull_verify_then_offline_verify(anon_registry: RegistryServer, tmp_path: Path, keys: dict[str, str],
                                         pushed: str) -> None:
    dst = tmp_path / "dst"
    code, _, err = pull(dst, anon_registry, pushed, "--verify", "--public-keys", keys["good.pub"])
    assert code == 0, err
    assert "WARN" not in err and f"Successfully pulled {pushed.rsplit(':', 1)[0]}" in err
    code, out, err = run(dst, "image", "verify", pushed, "--public-keys", keys["good.pub"])
    assert code == 0, err
    assert out == f"Verifying image: {pushed}\nImage verified successfully!\n"


def test_pull_verify_with_wrong_key_leaves_nothing(anon_registry: RegistryServer, tmp_path: Path,
                                                   keys: dict[str, str], pushed: str) -> None:
    dst = tmp_path / "dst"
    code, _, err = pull(dst, anon_registry, pushed, "--verify", "--public-keys", keys["wrong.pub"])
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "WARN" not in err  # one line says why; no noise around it
    assert errors[0].startswith(f"Error: pulling {pushed}: signature verification failed (--verify), image not tagged")
    assert "does not verify with the trusted key" in errors[0]
    store = Store.open(dst)
    assert (store.tags(), store.pins(), list(store.blobs.iter_digests())) == ([], [], [])


def test_pull_verify_of_unsigned_image_fails_clearly(anon_registry: RegistryServer, tmp_path: Path,
                                                     keys: dict[str, str]) -> None:
    src = tmp_path / "src"
    image = str(normalize(anon_registry.ref(unique_repo("cli"), "v1")))
    make_gadget_image(Store.open(src), image, archs=("amd64",))
    assert run(src, "image", "push", image, "--insecure-registries", anon_registry.host)[0] == 0
    dst = tmp_path / "dst"
    code, _, err = pull(dst, anon_registry, image, "--verify")
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"Error: pulling {image}: signature verification failed (--verify)")
    assert "no cosign signature found" in errors[0]
    assert Store.open(dst).tags() == []
    code, _, err = pull(dst, anon_registry, image)  # without --verify an unsigned image is fine, and quiet
    assert code == 0 and "WARN" not in err and "Error" not in err


def test_store_policy_file(anon_registry: RegistryServer, tmp_path: Path, keys: dict[str, str],
                           pushed: str) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    policy = dst / "policy.json"
    policy.write_text(json.dumps({"verify": True, "publicKeys": [keys["wrong.pub"]]}))
    code, _, err = pull(dst, anon_registry, pushed)
    assert code != 0 and f"signature verification failed (store policy {policy})" in err
    assert Store.open(dst).tags() == []
    code, _, err = pull(dst, anon_registry, pushed, "--public-keys", keys["good.pub"])  # keys override the file's
    assert code == 0, err
    policy.write_text(json.dumps({"verify": True, "publicKeys": [keys["good.pub"]]}))
    assert pull(dst, anon_registry, pushed)[0] == 0
    policy.write_text(json.dumps({"verify": False}))
    assert pull(dst, anon_registry, pushed)[0] == 0

    policy.write_text('{"verify": "yes"}')
    code, _, err = pull(dst, anon_registry, pushed)
    assert code != 0 and err == f'Error: store policy {policy}: "verify" must be true or false\n'
    policy.write_text('{"verify": true, "keys": []}')
    code, _, err = pull(dst, anon_registry, pushed)
    assert code != 0 and "only \"verify\" and \"publicKeys\"" in err


def test_inspect_pulls_under_the_store_policy_too(anon_registry: RegistryServer, tmp_path: Path,
                                                  keys: dict[str, str], pushed: str) -> None:
    """``image inspect`` pulls a missing image; a store whose policy verifies gains no image that fails it."""
    dst = tmp_path / "dst"
    dst.mkdir()
    policy = dst / "policy.json"
    policy.write_text(json.dumps({"verify": True, "publicKeys": [keys["wrong.pub"]]}))
    code, out, err = run(dst, "image", "inspect", pushed, "--insecure-registries", anon_registry.host)
    assert code != 0 and out == ""
    assert f"signature verification failed (store policy {policy}), image not tagged" in err
    store = Store.open(dst)
    assert (store.tags(), store.pins(), list(store.blobs.iter_digests())) == ([], [], [])
    policy.write_text(json.dumps({"verify": True, "publicKeys": [keys["good.pub"]]}))
    code, out, err = run(dst, "image", "inspect", pushed, "--insecure-registries", anon_registry.host)
    assert "signature verification failed" not in err
    assert pushed in Store.open(dst).tags()  # (its made-up layers are no ELF for inspect to read)


def test_public_keys_without_verify_is_a_usage_error(anon_registry: RegistryServer, tmp_path: Path,
                                                     keys: dict[str, str]) -> None:
    code, _, err = pull(tmp_path / "dst", anon_registry, "example.com/x:v1", "--public-keys", keys["good.pub"])
    assert code == 2 and "--public-keys needs --verify" in err


def test_export_import_carries_pulled_signatures(anon_registry: RegistryServer, tmp_path: Path,
                                                 keys: dict[str, str], pushed: str) -> None:
    pulled, third = tmp_path / "pulled", tmp_path / "third"
    assert pull(pulled, anon_registry, pushed)[0] == 0
    archive = tmp_path / "signed.tar"
    assert run(pulled, "image", "export", pushed, str(archive))[0] == 0
    assert run(third, "image", "import", str(archive))[0] == 0
    code, out, err = run(third, "image", "verify", pushed, "--public-keys", keys["good.pub"])
    assert code == 0, err
    assert out.endswith("Image verified successfully!\n")
    code, _, err = run(third, "image", "verify", pushed, "--public-keys", keys["wrong.pub"])
    assert code != 0 and "does not verify" in err
