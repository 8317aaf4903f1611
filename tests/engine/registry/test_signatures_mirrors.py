"""Signatures come through the same sources as the image: ``resolve = true`` mirrors, then the upstream.

The upstream is a real docker-registry, or a closed port for air-gapped pulls; the mirror is a real
``gadgetstore serve`` (in a thread) holding the signed image, or a :class:`FaultProxy` that corrupts
the signature's blob on its way through.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gadgetstore.cli.main import cli
from gadgetstore.engine.descriptor import children, parse_document
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.mirrors_config import Mirror, RegistriesConfig
from gadgetstore.engine.registry.pull import pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.registry.signatures import SignatureRefused, VerifyPolicy
from gadgetstore.engine.signatures import verify_image
from gadgetstore.engine.signatures.locate import signature_artifacts
from gadgetstore.engine.signatures.sign import SIGN_FORMATS, sign_image
from gadgetstore.engine.signatures.signing_keys import SigningKey, generate_private_key, public_key_of
from gadgetstore.engine.store import Store
from tests.engine.serve.support import RunningServer, start_server
from tests.support.fakes import FakeServer, FaultProxy, Reply, Request
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, free_port, unique_repo

METHODS = {"legacy": "cosign legacy", "oci11": "cosign OCI 1.1", "bundle": "cosign bundle"}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_private_key("ecdsa-p256")


def resolving(address: str) -> Mirror:
    return Mirror(f"http://{address}", insecure=True, resolve=True)


def options(upstream: str, *mirrors: Mirror, **kw: object) -> TransferOptions:
    config = RegistriesConfig({upstream: mirrors})
    return TransferOptions(insecure_registries=frozenset({upstream}), registries=config, **kw)  # type: ignore[arg-type]


def signed(root: Path, image: str, key: SigningKey, formats: tuple[str, ...]) -> Store:
    src = Store.open(root)
    make_gadget_image(src, image, archs=("amd64",))
    for fmt in formats:
        sign_image(src, image, key, fmt)
    return src


def signature_blobs(src: Store, image: str) -> list[Digest]:
    """The config and layers of every signature manifest of ``image`` in ``src``."""
    digest = src.resolve(image).digest
    out: list[Digest] = []
    for name in src.tags():
        desc = src.lookup(name)
        if desc is not None and name.endswith(f"sha256-{digest.hex}.sig"):
            out.extend(k.digest for k in children(parse_document(src.blobs.read(desc.digest), "sig"), "sig"))
    return out


@dataclass
class AirGapped:
    image: str
    upstream: str  # a closed port
    peer: RunningServer


@pytest.fixture
async def airgapped_peer(tmp_path: Path, key: SigningKey, request: pytest.FixtureRequest) -> AsyncIterator[AirGapped]:
    formats: tuple[str, ...] = getattr(request, "param", ("legacy",))
    gone = f"127.0.0.1:{free_port()}"
    image = str(normalize(f"{gone}/{unique_repo('sigair')}:v1"))
    signed(tmp_path / "peer", image, key, formats)
    server = await trio.to_thread.run_sync(start_server, tmp_path / "peer")
    try:
        yield AirGapped(image, gone, server)
    finally:
        await trio.to_thread.run_sync(server.stop)


@pytest.mark.parametrize("airgapped_peer", [(fmt,) for fmt in SIGN_FORMATS] + [SIGN_FORMATS, ()],
                         indirect=True, ids=[*SIGN_FORMATS, "all", "unsigned"])
async def test_airgapped_pull_verify_gets_signatures_from_the_mirror(airgapped_peer: AirGapped, tmp_path: Path,
                                                                   key: SigningKey) -> None:
    peer, image = airgapped_peer.peer, airgapped_peer.image
    src = Store.open(tmp_path / "peer")
    legacy_tags = {t for t in src.tags() if t.endswith(".sig")}
    expected = len(signature_artifacts(src, src.resolve(image).digest))
    policy = VerifyPolicy((public_key_of(key),)) if expected else None
    dst = Store.open(tmp_path / "dst")
    started = time.monotonic()
    (result,) = await pull_images(dst, [image], options(airgapped_peer.upstream, resolving(peer.address)),
                                  verify=policy)
    elapsed = time.monotonic() - started
    assert result.error is None, result.error
    assert result.warnings == []
    assert elapsed < 2.0, f"air-gapped pull took {elapsed:.2f} s"
    assert result.signatures == expected
    assert set(result.sources) == {f"mirror http://{peer.address}"}
    assert {t for t in Store.open(tmp_path / "dst").tags() if t.endswith(".sig")} == legacy_tags
    verify_store(tmp_path / "dst")
    if expected:
        # offline: verify reads only the store
        verified = verify_image(Store.open(tmp_path / "dst"), image, [public_key_of(key)])
        assert verified.method in METHODS.values()


async def test_airgapped_mirror_without_the_signature_refuses_quickly(tmp_path: Path, key: SigningKey) -> None:
    """The mirror has the image but no signature: ``--verify`` refuses at once, without waiting on the upstream."""
    gone = f"127.0.0.1:{free_port()}"
    image = str(normalize(f"{gone}/{unique_repo('sigair')}:v1"))
    signed(tmp_path / "peer", image, key, ())
    peer = await trio.to_thread.run_sync(start_server, tmp_path / "peer")
    try:
        started = time.monotonic()
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], options(gone, resolving(peer.address)),
                                      verify=VerifyPolicy((public_key_of(key),)))
        elapsed = time.monotonic() - started
    finally:
        await trio.to_thread.run_sync(peer.stop)
    assert isinstance(result.error, SignatureRefused), result.error
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert "also:" not in str(result.error)  # no failed lookup: the mirror answered
    assert Store.open(tmp_path / "dst").lookup(image) is None
    verify_store(tmp_path / "dst")


async def test_lying_mirror_for_a_signature_blob_falls_back_to_upstream(anon_registry: RegistryServer,
                                                                       tmp_path: Path, key: SigningKey) -> None:
    image = str(normalize(anon_registry.ref(unique_repo("siglie"), "v1")))
    src = signed(tmp_path / "src", image, key, ("legacy",))
    await push_image(src, image, TransferOptions(insecure_registries=frozenset({anon_registry.host})))
    bad = signature_blobs(src, image)
    assert bad
    liar = FaultProxy(anon_registry.host)
    for digest in bad:
        liar.add(f"GET /v2/.*/blobs/{digest}", "corrupt", times=1000, at=10)
    try:
        dst = Store.open(tmp_path / "dst")
        (result,) = await pull_images(dst, [image], options(anon_registry.host, resolving(liar.host)),
                                      verify=VerifyPolicy((public_key_of(key),)))
    finally:
        liar.close()
    assert result.error is None, result.error
    assert result.signatures == 1
    # the mirror was asked for the signature tag and a signature blob, and lied about the blob
    asked = [path for _method, path, _headers in liar.requests]
    assert any(".sig" in p for p in asked)
    assert any(str(d) in p for p in asked for d in bad)
    verify_store(tmp_path / "dst")
    assert verify_image(Store.open(tmp_path / "dst"), image, [public_key_of(key)]).method == "cosign legacy"


async def test_lying_mirror_without_upstream_fails_clearly(tmp_path: Path, key: SigningKey) -> None:
    """Air-gapped and the only mirror corrupts the signature: refused, named, and no bad byte stored."""
    gone = f"127.0.0.1:{free_port()}"
    image = str(normalize(f"{gone}/{unique_repo('siglie')}:v1"))
    src = signed(tmp_path / "peer", image, key, ("legacy",))
    bad = signature_blobs(src, image)
    peer = await trio.to_thread.run_sync(start_server, tmp_path / "peer")
    liar = FaultProxy(peer.address)
    for digest in bad:
        liar.add(f"GET /v2/.*/blobs/{digest}", "corrupt", times=1000, at=10)
    # the lie comes first, and the mirror is skipped before the image's own blobs are asked for
    liar.add("GET /v2/.*/manifests/sha256:", "delay", times=1000, seconds=0.5)
    try:
        # the upstream is retried (and fails) for the blob the mirror lied about: keep that short here
        opts = options(gone, resolving(liar.host), retries=1, backoff_base=0.01)
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], opts,
                                      verify=VerifyPolicy((public_key_of(key),)))
    finally:
        liar.close()
        await trio.to_thread.run_sync(peer.stop)
    assert isinstance(result.error, SignatureRefused), result.error
    assert "could not fetch the cosign signature tag" in str(result.error)  # the failed fetch is named
    dst = Store.open(tmp_path / "dst")
    assert dst.lookup(image) is None
    assert not any(dst.blobs.has(d) for d in bad)
    verify_store(tmp_path / "dst")


async def test_mirror_without_the_image_leaves_signatures_to_the_upstream(anon_registry: RegistryServer,
                                                                         tmp_path: Path, key: SigningKey) -> None:
    """The peer has the repository but another image: its empty answers are not taken for the upstream's."""
    repo = unique_repo("sigpart")
    old, new = (str(normalize(anon_registry.ref(repo, tag))) for tag in ("v1", "v2"))
    make_gadget_image(Store.open(tmp_path / "peer"), old, archs=("amd64",))
    src = signed(tmp_path / "src", new, key, ("oci11",))
    await push_image(src, new, TransferOptions(insecure_registries=frozenset({anon_registry.host})))
    peer = await trio.to_thread.run_sync(start_server, tmp_path / "peer")
    try:
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [new],
                                      options(anon_registry.host, resolving(peer.address)),
                                      verify=VerifyPolicy((public_key_of(key),)))
    finally:
        await trio.to_thread.run_sync(peer.stop)
    assert result.error is None, result.error
    assert result.signatures == 1
    assert verify_image(Store.open(tmp_path / "dst"), new, [public_key_of(key)]).method == "cosign OCI 1.1"


async def test_a_mirror_lacking_one_repository_still_serves_the_next_images_referrers(tmp_path: Path,
                                                                                    key: SigningKey) -> None:
    """Air-gapped batch, two peers: the first lacks the first image's repository (its Referrers API says
    404 there) yet holds the second image, whose OCI 1.1 signature it must still list."""
    gone = f"127.0.0.1:{free_port()}"
    only_b, on_a = (str(normalize(f"{gone}/{unique_repo(p)}:v1")) for p in ("sigb", "siga"))
    signed(tmp_path / "b", only_b, key, ("oci11",))
    signed(tmp_path / "a", on_a, key, ("oci11",))
    a = await trio.to_thread.run_sync(start_server, tmp_path / "a")
    b = await trio.to_thread.run_sync(start_server, tmp_path / "b")
    try:
        opts = options(gone, resolving(a.address), resolving(b.address), max_concurrent_images=1)  # in order
        started = time.monotonic()
        results = await pull_images(Store.open(tmp_path / "dst"), [only_b, on_a], opts,
                                    verify=VerifyPolicy((public_key_of(key),)))
        elapsed = time.monotonic() - started
    finally:
        await trio.to_thread.run_sync(a.stop)
        await trio.to_thread.run_sync(b.stop)
    assert [r.error for r in results] == [None, None]
    assert [r.signatures for r in results] == [1, 1]
    assert all(r.warnings == [] for r in results)
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


async def test_signature_lookups_at_a_mirror_carry_no_upstream_credentials(token_registry: RegistryServer,
                                                                          tmp_path: Path, key: SigningKey) -> None:
    image = str(normalize(token_registry.ref(unique_repo("sigcred"), "v1")))
    src = signed(tmp_path / "src", image, key, ("legacy", "oci11"))
    creds = {token_registry.host: Credentials(TEST_USER, TEST_PASSWORD)}
    await push_image(src, image, TransferOptions(credentials=creds, plain_http=frozenset({token_registry.host})))

    def not_found(_req: Request) -> Reply:
        return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    fake = FakeServer(not_found)
    try:
        config = RegistriesConfig({token_registry.host: (resolving(fake.host),)})
        opts = TransferOptions(credentials=creds, plain_http=frozenset({token_registry.host}), registries=config)
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], opts,
                                      verify=VerifyPolicy((public_key_of(key),)))
    finally:
        fake.close()
    assert result.error is None, result.error
    assert result.signatures == 2
    paths = [r.path for r in fake.requests]
    assert any(".sig" in p for p in paths) and any("/referrers/" in p for p in paths)
    assert all("authorization" not in r.headers for r in fake.requests)
    assert not any(TEST_USER in p or TEST_PASSWORD in p for p in paths)


def test_cli_airgapped_pull_verify_then_offline_verify(tmp_path: Path, key: SigningKey) -> None:
    """``image pull --verify`` through a resolving peer, upstream unreachable; then ``image verify`` offline."""
    gone = f"127.0.0.1:{free_port()}"
    image = str(normalize(f"{gone}/{unique_repo('sigcli')}:v1"))
    signed(tmp_path / "peer", image, key, ("legacy", "bundle"))
    pem = public_key_of(key).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    peer = start_server(tmp_path / "peer")
    try:
        toml = tmp_path / "registries.toml"
        toml.write_text(f'[[registry."{gone}".mirror]]\nurl = "http://{peer.address}"\n'
                        'insecure = true\nresolve = true\n')
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--store", str(tmp_path / "dst"), "image", "pull", "--registries-config",
                                          str(toml), "--insecure-registries", gone, "--verify",
                                          "--public-keys", pem, image])
        elapsed = time.monotonic() - started
    finally:
        peer.stop()
    assert result.exit_code == 0, result.stderr
    assert "WARN" not in result.stderr
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    verified = CliRunner().invoke(cli, ["--store", str(tmp_path / "dst"), "image", "verify", image,
                                        "--public-keys", pem])
    assert verified.exit_code == 0, verified.stderr
    assert verified.stdout.endswith("Image verified successfully!\n")
