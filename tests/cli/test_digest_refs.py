"""Digest references on the command line (name@sha256:…, sha256:…, unique prefixes) and untagged images."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store as run
from tests.support.images import ArchivedImage, make_gadget_image
from tests.support.registry import RegistryServer, unique_repo

UNREACHABLE = "127.0.0.1:9/app"  # the discard port: any pull from here fails at once


@pytest.fixture
def imported(tmp_path: Path, gadget_tar: Path) -> Path:
    """A store with the suite's image, also tagged under a registry that cannot be reached."""
    root = tmp_path / "store"
    assert run(root, "image", "import", str(gadget_tar))[0] == 0
    assert run(root, "image", "tag", "trace_demo", f"{UNREACHABLE}:v1")[0] == 0
    return root


def _snapshot(root: Path) -> tuple[bytes, bytes, list[str]]:
    return (root / "index.json").read_bytes(), (root / "index.journal").read_bytes(), Store.open(root).tags()


@pytest.mark.parametrize("form", ["name@digest", "name:tag@digest", "digest", "prefix", "bare-prefix"])
def test_inspect_by_digest_is_local_and_writes_no_tag(imported: Path, gadget_image: ArchivedImage,
                                                      form: str) -> None:
    """A digest in the store is read locally: no pull, and no tag like ``…app@sha256:…`` is written."""
    digest = gadget_image.root.digest
    typed = {"name@digest": f"{UNREACHABLE}@{digest}", "name:tag@digest": f"{UNREACHABLE}:other@{digest}",
             "digest": str(digest), "prefix": f"sha256:{digest.hex[:12]}", "bare-prefix": digest.hex[:16]}[form]
    before = _snapshot(imported)
    code, out, err = run(imported, "image", "inspect", typed, "--extra-info", "oci.created")
    assert (code, out, err) == (0, f"{gadget_image.created}\n", "")
    code, out, _ = run(imported, "image", "inspect", typed, "--extra-info", "oci.repository")
    assert out == ("127.0.0.1:9/app\n" if form.startswith("name") else
                   f"{digest.hex[:16]}\n" if form == "bare-prefix" else "\n")
    assert _snapshot(imported) == before


def test_a_bare_digest_is_never_pulled_nor_taken_for_an_official_image(imported: Path) -> None:
    absent = "sha256:" + "0" * 64
    code, _, err = run(imported, "image", "inspect", absent)
    assert (code, err) == (1, f"Error: image '{absent}' not found in the store (a digest alone cannot be pulled: "
                              "give NAME@DIGEST)\n")
    code, _, err = run(imported, "image", "pull", absent)
    assert (code, err) == (1, f"Error: invalid reference '{absent}': a digest alone names no repository; "
                              "give NAME@DIGEST\n")
    code, _, err = run(imported, "image", "inspect", absent, "--pull", "always")
    assert code == 2 and "--pull always needs a name to pull from" in err
    code, _, err = run(imported, "image", "inspect", "sha256:abc")
    assert (code, err) == (1, "Error: digest prefix 'sha256:abc' is too short: give at least 12 hex digits\n")


def test_tag_export_and_import_by_digest(imported: Path, gadget_image: ArchivedImage, tmp_path: Path) -> None:
    digest = gadget_image.root.digest
    code, _, err = run(imported, "image", "tag", digest.hex[:12], "x.io/copy:v2")
    assert (code, err) == (0, f"Successfully tagged with x.io/copy:v2@{digest}\n")
    archive = tmp_path / "by-digest.tar"
    assert run(imported, "image", "export", str(digest), str(archive))[0] == 0
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        entries = json.loads(member.read())["manifests"]
    assert [e for e in entries if e["digest"] == str(digest)] == [
        {"mediaType": gadget_image.root.media_type, "digest": str(digest), "size": gadget_image.root.size}]
    other = tmp_path / "other"
    code, out, _ = run(other, "image", "import", str(archive))
    assert (code, out) == (0, f"Successfully imported images:\n  @{digest}\n")
    assert Store.open(other).tags() == []
    code, out, _ = run(other, "image", "list", "--all")
    assert out == f"REPOSITORY TAG DIGEST CREATED\n<none> <none> {digest} {gadget_image.created}\n"
    assert run(other, "image", "list")[1] == "REPOSITORY TAG DIGEST CREATED\n"


def test_remove_by_digest_untags_or_refuses_several_tags(imported: Path, gadget_image: ArchivedImage) -> None:
    digest = gadget_image.root.digest
    before = _snapshot(imported)
    code, _, err = run(imported, "image", "remove", str(digest))
    assert code == 1
    assert err == (f"Error: image '{digest}' is tagged 2 times (127.0.0.1:9/app:v1, "
                   "ghcr.io/inspektor-gadget/gadget/trace_demo:latest); remove the tags one by one\n")
    assert _snapshot(imported) == before
    code, _, err = run(imported, "image", "remove", f"x.io/elsewhere@{digest}")
    assert code == 1 and err.startswith(f"Error: image 'x.io/elsewhere@{digest}': {digest} is not tagged in "
                                        "x.io/elsewhere")
    code, _, err = run(imported, "image", "remove", f"{UNREACHABLE}@{digest}")
    assert (code, err) == (0, f"Successfully removed {UNREACHABLE}@{digest}\n")
    assert Store.open(imported).tags() == ["ghcr.io/inspektor-gadget/gadget/trace_demo:latest"]
    code, _, err = run(imported, "image", "rm", f"sha256:{digest.hex[:12]}")
    assert (code, err) == (0, f"Successfully removed sha256:{digest.hex[:12]}\n")
    assert Store.open(imported).tags() == []
    assert list((imported / "blobs" / "sha256").iterdir()) == []


def test_sign_and_verify_by_digest(imported: Path, gadget_image: ArchivedImage, tmp_path: Path) -> None:
    digest = gadget_image.root.digest
    assert run(imported, "key", "generate", str(tmp_path / "k"))[0] == 0
    code, _, err = run(imported, "image", "sign", str(digest), "--key", str(tmp_path / "k.key"))
    assert code == 1 and err.startswith(f"Error: image {digest} is tagged in several repositories (127.0.0.1:9/app, "
                                        "ghcr.io/inspektor-gadget/gadget/trace_demo); give NAME@")
    code, _, err = run(imported, "image", "sign", f"{UNREACHABLE}@{digest}", "--key", str(tmp_path / "k.key"))
    assert code == 0 and err.startswith(f"Signed {UNREACHABLE}@{digest} (legacy): sha256-{digest.hex}.sig")
    assert run(imported, "image", "remove", "trace_demo")[0] == 0  # one repository left: a digest alone will do
    key = str(tmp_path / "k.key")
    code, _, err = run(imported, "image", "sign", digest.hex[:12], "--key", key, "--format", "oci11")
    assert code == 0 and err.startswith(f"Signed {UNREACHABLE}@{digest} (oci11): referrer sha256:")
    pem = (tmp_path / "k.pub").read_text()
    for typed in (str(digest), digest.hex[:12], f"x.io/any@{digest}"):
        code, out, err = run(imported, "image", "verify", typed, "--public-keys", pem)
        assert (code, out) == (0, f"Verifying image: {typed}\nImage verified successfully!\n"), err


def test_untagged_images_list_remove_and_prune(store: Store) -> None:
    tagged = make_gadget_image(store, "x.io/kept:v1", seed="kept")
    first = make_gadget_image(store, "x.io/a:1", seed="a", untagged=True)
    second = make_gadget_image(store, "x.io/b:1", seed="b", untagged=True)
    code, out, _ = run(store.root, "image", "list", "-a", "-o", "json")
    rows = json.loads(out)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [
        ("x.io/kept", "v1", str(tagged.digest)),
        *sorted((("<none>", "<none>", str(d.digest)) for d in (first, second)), key=lambda r: r[2])]
    code, _, err = run(store.root, "image", "remove", str(first.digest))
    assert (code, err) == (0, f"Successfully removed {first.digest}\n")
    assert not store.blobs.has(first.digest)
    assert sorted(store.blobs.iter_digests()) == sorted(store.walk([second, tagged])), "only its own blobs went"
    code, out, _ = run(store.root, "gc", "--untagged")
    assert code == 0 and out.startswith("removed 1 untagged images\nremoved ")
    fresh = Store.open(store.root)
    assert fresh.pins() == [] and fresh.tags() == ["x.io/kept:v1"]
    assert not fresh.blobs.has(second.digest) and fresh.blobs.has(tagged.digest)
    assert sorted(fresh.blobs.iter_digests()) == sorted(fresh.walk([tagged]))


def test_gc_untagged_keeps_signatures_of_tagged_images_and_drops_those_of_untagged(
        imported: Path, tmp_path: Path) -> None:
    store = Store.open(imported)
    untagged = make_gadget_image(store, "x.io/u:1", seed="u", untagged=True)
    assert run(imported, "key", "generate", str(tmp_path / "k"))[0] == 0
    for image in (f"x.io/u@{untagged.digest}", "trace_demo"):
        assert run(imported, "image", "sign", image, "--key", str(tmp_path / "k.key"), "--format", "oci11")[0] == 0
    assert len(Store.open(imported).pins()) == 3
    assert run(imported, "gc", "--untagged")[0] == 0
    (left,) = Store.open(imported).pins()  # trace_demo's signature
    assert Store.open(imported).subject_of(left) != untagged.digest
    assert run(imported, "image", "verify", "trace_demo", "--public-keys", (tmp_path / "k.pub").read_text())[0] == 0


def test_push_by_digest_and_pull_by_digest_stay_untagged(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    repo = unique_repo("digest")
    root = make_gadget_image(src, "x.io/local:v1")
    by_digest = f"{anon_registry.host}/{repo}@{root.digest}"
    insecure = ("--insecure-registries", anon_registry.host)
    code, _, err = run(src.root, "image", "push", by_digest, *insecure)
    assert code == 0 and err.splitlines()[-1] == f"Successfully pushed {anon_registry.host}/{repo}@{root.digest}"
    dst = tmp_path / "dst"
    code, _, err = run(dst, "image", "pull", by_digest, *insecure)
    assert code == 0, err
    pulled = Store.open(dst)
    assert pulled.tags() == [] and [p.digest for p in pulled.pins()] == [root.digest]
    assert run(dst, "image", "list", "--all", "-o", "json")[1] == (
        '[{"Repository":"\\u003cnone\\u003e","Tag":"\\u003cnone\\u003e",'
        f'"Digest":"{root.digest}","Created":"2026-01-01T00:00:00Z"}}]')
    assert Digest.parse(str(root.digest)) in set(pulled.blobs.iter_digests())
