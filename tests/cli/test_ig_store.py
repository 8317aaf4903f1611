"""The CLI on a store ig made: reading commands write nothing (as root and as a user who can only
read it), writing commands keep every entry they do not change and add what ig would, and ig's
own list (``ig_list``, written from ig's code) sees the result.

Stores come from tests/support/igstore.py: ig's captured store, plus what ig's untagged build and
ig's gc leave behind.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import tarfile
from pathlib import Path

import pytest

from gadgetstore.engine.store import Store
from tests.support.asuser import NOBODY, open_path_to, popen_cli_as, run_cli_as
from tests.support.cli import run_in_store
from tests.support.igstore import (
    CAPTURED_REF,
    IgStore,
    captured_store,
    entry_texts,
    go_descriptor,
    go_json,
    ig_list,
    other_gadget,
    tree,
)
from tests.support.images import ArchivedImage
from tests.support.registry import RegistryServer, unique_repo

X_ROOT = "sha256:793046c55399dec2908a34df342fcd6c5312d23d2661f107349904a3cd6cad30"
X_ROW = f"127.0.0.1:55841/x v1 {X_ROOT} 2023-11-14T22:13:20Z"
MISSING = "sha256:" + "d" * 64
IG_FILES = {"blobs", "index.json", "index.json.lock", "ingest", "oci-layout"}


def blobs_of(image: ArchivedImage) -> dict[str, bytes]:
    return {str(digest): data for digest, data in image.blobs.items()}


def make_store(tmp_path: Path, kind: str) -> Path:
    """``plain``: ig's captured store. ``busy``: plus an untagged ``ig image build`` of another
    gadget, an untagged entry whose blob ig's gc deleted, and an annotation of index.json's own."""
    (tmp_path / kind).mkdir()
    store = captured_store(tmp_path / kind / "oci-store")
    if kind == "busy":
        store.build_untagged(*other_gadget())
        store.entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": MISSING,
                              "size": 9})
        store.annotations = {"io.example.owner": "someone else"}
        store.save()
    return store.root


READING = [
    ("list", ["image", "list"], 0),
    ("list-no-trunc", ["image", "list", "--no-trunc"], 0),
    ("list-json", ["image", "list", "-o", "json"], 0),
    ("inspect", ["image", "inspect", CAPTURED_REF, "--arch", "amd64", "--pull", "never"], 0),
    ("inspect-extra", ["image", "inspect", CAPTURED_REF, "--arch", "arm64", "--extra-info", "ebpf.maps"], 0),
    ("verify", ["image", "verify", CAPTURED_REF], 1),  # unsigned: refused, and still nothing written
    ("export", ["image", "export", CAPTURED_REF, "-"], 0),
    ("fsck", ["fsck"], 0),
]


@pytest.mark.parametrize("kind", ["plain", "busy"])
def test_reading_commands_leave_an_ig_store_as_it_was(tmp_path: Path, kind: str) -> None:
    root = make_store(tmp_path, kind)
    before = tree(root)
    for name, args, code in READING:
        got, out, err = run_in_store(root, *args)
        assert got == code, (name, err)
        assert tree(root) == before, f"{name} changed the store"
        if name == "list-no-trunc":
            assert out == ig_list(root) == f"REPOSITORY TAG DIGEST CREATED\n{X_ROW}\n"
    cached = [p for p in (tmp_path / "xdg-cache").rglob("*") if p.is_file()]
    assert cached, "inspect's analyses are cached outside the store"


def exported_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name for member in tar.getmembers()}


@pytest.mark.parametrize("kind", ["plain", "busy"])
def test_reading_commands_work_for_a_user_who_can_only_read_the_store(tmp_path: Path, kind: str) -> None:
    """ig makes its store 0700; an admin opens it (0755) to users. ig's index.json.lock stays root's
    and 0600, so such a user cannot even open it: it reads index.json without the lock."""
    root = make_store(tmp_path, kind)
    os.chmod(root, 0o755)
    open_path_to(root)
    before = tree(root)
    for name, args, code in READING:
        done = run_cli_as(NOBODY, root, *args)
        stderr = done.stderr.decode()
        assert done.returncode == code, (name, stderr)
        assert "Traceback" not in stderr and "Permission denied" not in stderr, (name, stderr)
        assert tree(root) == before, f"{name} as uid {NOBODY} changed the store"
        if name == "export":
            assert "index.json" in exported_names(done.stdout)
        else:
            assert done.stdout.decode() == run_in_store(root, *args)[1], f"{name}: not root's answer"


@pytest.mark.parametrize("uid", [0, NOBODY], ids=["root", "nobody"])
def test_serve_reads_an_ig_store_without_writing(tmp_path: Path, uid: int) -> None:
    root = make_store(tmp_path, "busy")
    os.chmod(root, 0o755)
    open_path_to(root)
    before = tree(root)
    proc = popen_cli_as(uid, root, "serve", "--listen", "127.0.0.1:0", "-q")
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline().decode()]
        while (match := re.search(r"http://127\.0\.0\.1:(\d+)/v2/", lines[-1])) is None and lines[-1]:
            lines.append(proc.stderr.readline().decode())  # a warning about the dangling entry comes first
        assert match, lines
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        conn.request("GET", "/v2/x/manifests/v1", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Docker-Content-Digest") == X_ROOT
        response.read()
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert tree(root) == before


def test_tag_import_remove_in_an_ig_store_keep_every_foreign_entry(tmp_path: Path, gadget_image: ArchivedImage,
                                                                  gadget_tar: Path) -> None:
    root = make_store(tmp_path, "busy")
    foreign = entry_texts(root)[3:]  # the untagged build of another gadget, and the dangling entry

    def keeps_foreign() -> None:
        texts = entry_texts(root)
        assert all(text in texts for text in foreign)
        assert json.loads((root / "index.json").read_bytes())["annotations"] == {"io.example.owner": "someone else"}
        assert {p.name for p in root.iterdir()} == IG_FILES

    code, _, err = run_in_store(root, "image", "tag", CAPTURED_REF, "trace_demo:mine")
    assert code == 0 and err == f"Successfully tagged with ghcr.io/inspektor-gadget/gadget/trace_demo:mine@{X_ROOT}\n"
    keeps_foreign()
    code, _, err = run_in_store(root, "image", "import", str(gadget_tar))
    assert code == 0, err
    keeps_foreign()
    rows = ig_list(root).splitlines()[1:]
    assert rows == [X_ROW, f"trace_demo latest {gadget_image.root.digest} {gadget_image.created}",
                    f"trace_demo mine {X_ROOT} 2023-11-14T22:13:20Z"]
    for image in (CAPTURED_REF, "trace_demo:mine"):
        code, _, err = run_in_store(root, "image", "remove", image)
        assert code == 0, err
        keeps_foreign()
    assert X_ROOT not in (root / "index.json").read_text()
    assert not (root / "blobs" / "sha256" / X_ROOT[7:]).exists()
    assert ig_list(root).splitlines()[1:] == [f"trace_demo latest {gadget_image.root.digest} {gadget_image.created}"]


def test_gc_in_an_ig_store_says_what_it_kept(tmp_path: Path) -> None:
    root = make_store(tmp_path, "plain")
    IgStore(root).put(b"fetched by ig a moment ago")
    code, out, _ = run_in_store(root, "gc")
    assert code == 0 and out == ("removed 0 blobs (0 bytes) and 0 ingest files\n"
                                 "kept 1 unreferenced blob(s) younger than the grace period "
                                 "(another tool may be about to name them)\n")
    code, out, _ = run_in_store(root, "gc", "--grace", "0m")  # any zero duration: none
    assert code == 0 and out == "removed 1 blobs (26 bytes) and 0 ingest files\n"
    code, _, err = run_in_store(root, "gc", "--grace", "soon")
    assert code == 2 and "'soon' is not a duration" in err


def test_fsck_and_repair_of_an_ig_store(tmp_path: Path) -> None:
    root = make_store(tmp_path, "busy")
    code, out, _ = run_in_store(root, "fsck")
    lines = out.splitlines()
    assert code == 0 and lines[0] == (f"note: untagged entry {MISSING}: its blob is missing (ig's image remove "
                                      "leaves such entries, and they stop ig's own gc); fsck --repair drops it")
    assert lines[-1].startswith("checked 12 blobs") and lines[-1].endswith("no problems found")
    before = entry_texts(root)
    code, out, _ = run_in_store(root, "fsck", "--repair")
    assert code == 0 and out.splitlines()[0] == f"repaired: removed the untagged entry {MISSING} (its blob is missing)"
    assert entry_texts(root) == before[:-1]
    assert run_in_store(root, "fsck")[1].startswith("checked 12 blobs")


def test_pull_into_an_ig_store_writes_what_igs_pull_writes(tmp_path: Path, gadget_image: ArchivedImage,
                                                            gadget_tar: Path, anon_registry: RegistryServer) -> None:
    """gadgetstore's pull, then ig's list: the image is there, and index.json holds what ig's own
    pull writes (IgStore.pull; oras.Copy skips blobs the store has, with their subtree)."""
    src = tmp_path / "src"
    assert run_in_store(src, "image", "import", str(gadget_tar))[0] == 0
    image = anon_registry.ref(unique_repo("igpull"), "v1")
    assert run_in_store(src, "image", "tag", gadget_image.reference, image)[0] == 0
    assert run_in_store(src, "image", "push", image, "--insecure-registries", anon_registry.host)[0] == 0
    root_entry = {"mediaType": gadget_image.root.media_type, "digest": str(gadget_image.root.digest),
                  "size": gadget_image.root.size, "annotations": {"org.opencontainers.image.ref.name": image}}

    (tmp_path / "by-ig").mkdir()
    by_ig = captured_store(tmp_path / "by-ig" / "oci-store")
    by_ig.pull(blobs_of(gadget_image), gadget_image.root.to_json(), image)
    plain = make_store(tmp_path, "plain")
    code, _, err = run_in_store(plain, "image", "pull", image, "--insecure-registries", anon_registry.host)
    assert code == 0 and "Successfully pulled" in err, err
    assert (plain / "index.json").read_bytes() == (by_ig.root / "index.json").read_bytes()
    assert ig_list(plain).splitlines()[1:] == sorted([  # ig sorts by reference; the registry's port varies
        f"{image.rsplit(':', 1)[0]} v1 {gadget_image.root.digest} {gadget_image.created}", X_ROW])
    assert {p.name for p in plain.iterdir()} == IG_FILES

    # the same image, once more: ig skips what it has, so it adds the tagged entry alone
    code, _, err = run_in_store(plain, "image", "pull", image, "--insecure-registries", anon_registry.host)
    assert code == 0 and (plain / "index.json").read_bytes() == (by_ig.root / "index.json").read_bytes()
    assert Store.open(plain, readonly=True).lookup(image) is not None
    assert root_entry == json.loads(entry_texts(plain)[1])


def test_build_into_an_ig_store_adds_what_igs_build_adds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ig's build (pkg/oci/build.go) pushes the root index, annotated, and each per-arch manifest;
    without ``-t`` all stay untagged, with it the root is tagged (its annotations kept)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    gadget = tmp_path / "gadget"
    gadget.mkdir()
    (gadget / "gadget.yaml").write_bytes(b"name: metadata only\n")
    root = make_store(tmp_path, "busy")
    before = entry_texts(root)
    code, _, err = run_in_store(root, "image", "build", str(gadget))
    assert code == 0, err
    digest = err.strip().rsplit("@", 1)[1]
    index = json.loads((root / "blobs" / "sha256" / digest[7:]).read_bytes())
    built = {"mediaType": index["mediaType"], "digest": digest,
             "size": (root / "blobs" / "sha256" / digest[7:]).stat().st_size, "annotations": index["annotations"]}
    expected = IgStore(tmp_path / "unused")
    expected.add_untagged([*index["manifests"], built])
    expected_texts = entry_texts_of(expected.index_bytes())
    assert entry_texts(root)[:len(before)] == before
    assert sorted(entry_texts(root)[len(before):]) == sorted(expected_texts)
    assert ig_list(root).splitlines()[1:] == [X_ROW]  # untagged: not listed

    code, _, err = run_in_store(root, "image", "build", "-t", "metadata_only:v1", str(gadget))
    assert code == 0, err
    tagged = go_descriptor({**built, "annotations": {**index["annotations"],
                                                     "org.opencontainers.image.ref.name":
                                                     "ghcr.io/inspektor-gadget/gadget/metadata_only:v1"}})
    texts = entry_texts(root)
    assert texts[1] == go_json(tagged).decode() and go_json(go_descriptor(built)).decode() not in texts
    assert sorted(texts[2:]) == sorted([*before[1:], *expected_texts[:-1]])


def entry_texts_of(data: bytes) -> list[str]:
    scratch = Path(os.environ["TMPDIR"]) / "index-scratch"
    scratch.mkdir(exist_ok=True)
    (scratch / "index.json").write_bytes(data)
    return entry_texts(scratch)
