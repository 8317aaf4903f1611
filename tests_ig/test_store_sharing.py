"""The real ig and gadgetstore sharing one store (``make test-ig IG=/path/to/ig``; not in ``make test``).

ig keeps its store at /var/lib/ig/oci-store and nothing moves it, so each ig command runs in a
private mount namespace where a tmpfs covers /var/lib (and /run, for its wasm cache) and the
test's directory is bound at /var/lib/ig: the host's /var/lib is never touched. Needs root, the
``docker-registry`` binary (the suite's local registry) and clang (the suite's gadget image).

What is checked, as the issue asks:
- ig pulls from the local registry; gadgetstore's reading commands then leave the store
  byte-identical (as root, and as a user who can only read it);
- gadgetstore pulls; ``ig image list`` and ``ig image inspect`` then show the image exactly as
  after ig's own pull of it;
- ig's ``image remove`` (whose gc deletes every blob index.json does not reach) and gadgetstore's
  ``gc`` and pulls, interleaved, lose nothing the other still references.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_images
from gadgetstore.engine.store import Store
from tests.support.asuser import NOBODY, open_path_to, run_cli_as
from tests.support.cli import run_in_store
from tests.support.igstore import entry_texts, tree
from tests.support.images import ArchivedImage, build_demo_archive, make_gadget_image, read_archived_image
from tests.support.registry import RegistryServer, anon_registry, unique_repo  # noqa: F401  (a fixture)

IG = os.environ.get("IG", "")
pytestmark = [
    pytest.mark.skipif(not IG, reason="set IG to an ig binary: make test-ig IG=/path/to/ig"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ig's store is moved with a mount namespace: needs root"),
]
_NAMESPACE = ('mount -t tmpfs -o mode=0755 igvarlib /var/lib && mkdir /var/lib/ig && '
              'mount --bind "$IG_VARLIB" /var/lib/ig && mount -t tmpfs -o mode=0755 igrun /run && '
              'exec "$IG_BIN" "$@"')


def ig(varlib: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ig with ``varlib`` as its /var/lib/ig (its store: ``varlib/oci-store``)."""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _NAMESPACE, "ig", *args],
                          env={**os.environ, "IG_VARLIB": str(varlib), "IG_BIN": IG}, capture_output=True,
                          text=True, timeout=300, check=False)
    if check:
        assert done.returncode == 0, f"ig {' '.join(args)}: {done.stderr}"
    return done


def ig_inspect(varlib: Path, image: str) -> dict[str, object]:
    """``ig image inspect``'s extra info. ig lists maps, programs and variables in Go's map order,
    which changes from run to run: JSON lists are compared as sets."""
    out = ig(varlib, "image", "inspect", "--auto-mount-filesystems", "--verify-image=false", image).stdout
    info = json.loads(out)
    return {key: (value["contentType"], _unordered(value["content"], value["contentType"]))
            for key, value in info.items()}


def _unordered(content: str, content_type: str) -> object:
    if content_type != "application/json":
        return content
    value = json.loads(content)
    if isinstance(value, list):
        return sorted(json.dumps(item, sort_keys=True) for item in value)
    return value


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GADGETSTORE_ROOT", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY",
                 "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def gadget(tmp_path_factory: pytest.TempPathFactory) -> ArchivedImage:
    """The suite's real gadget image (examples/trace_demo built with clang)."""
    return read_archived_image(build_demo_archive(tmp_path_factory.mktemp("demo-image")))


@pytest.fixture(scope="session")
def published(anon_registry: RegistryServer, gadget: ArchivedImage,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images in the local registry: ``real`` (the gadget), ``other`` and ``third`` (synthetic gadgets
    with blobs of their own: ig lists them, but cannot run them)."""
    src = tmp_path_factory.mktemp("publisher") / "store"
    repo = unique_repo("sharing")
    images = {"real": anon_registry.ref(repo, "real"), "other": anon_registry.ref(repo, "other"),
              "third": anon_registry.ref(repo, "third")}
    assert run_in_store(src, "image", "import", str(gadget.path))[0] == 0
    assert run_in_store(src, "image", "tag", gadget.reference, images["real"])[0] == 0
    make_gadget_image(Store.open(src), images["other"], seed="other")
    make_gadget_image(Store.open(src), images["third"], seed="third")
    for image in images.values():
        code, _, err = run_in_store(src, "image", "push", image, "--insecure-registries", anon_registry.host)
        assert code == 0, err
    return images


def ig_pull(varlib: Path, registry: RegistryServer, image: str) -> None:
    ig(varlib, "image", "pull", "--insecure-registries", registry.host, image)


def gs_pull(store: Path, registry: RegistryServer, *images: str) -> None:
    code, _, err = run_in_store(store, "image", "pull", *images, "--insecure-registries", registry.host)
    assert code == 0, err


def new_varlib(tmp_path: Path, name: str) -> Path:
    varlib = tmp_path / name / ".ig"  # so that the store is <…>/.ig/oci-store, a path where ig keeps one
    varlib.mkdir(parents=True)
    return varlib


READING = [["image", "list"], ["image", "list", "--no-trunc"], ["image", "list", "-o", "json"],
           ["image", "inspect", "REAL", "--arch", "amd64", "--pull", "never"], ["image", "verify", "REAL"],
           ["image", "export", "REAL", "-"], ["fsck"]]


def test_gadgetstore_reading_igs_store_leaves_it_byte_identical(tmp_path: Path, published: dict[str, str],
                                                                anon_registry: RegistryServer) -> None:  # noqa: F811
    varlib = new_varlib(tmp_path, "ig")
    ig_pull(varlib, anon_registry, published["real"])
    ig_pull(varlib, anon_registry, published["other"])
    store = varlib / "oci-store"
    listed = ig(varlib, "image", "list", "--no-trunc").stdout
    before = tree(store)
    for args in READING:
        args = [published["real"] if arg == "REAL" else arg for arg in args]
        run_in_store(store, *args)
        assert tree(store) == before, f"gadgetstore {' '.join(args)} changed ig's store"
    os.chmod(store, 0o755)
    open_path_to(store)
    before = tree(store)
    for args in READING:
        args = [published["real"] if arg == "REAL" else arg for arg in args]
        done = run_cli_as(NOBODY, store, *args)
        assert b"Traceback" not in done.stderr and b"Permission denied" not in done.stderr, done.stderr
        assert tree(store) == before, f"gadgetstore {' '.join(args)} as uid {NOBODY} changed ig's store"
    assert ig(varlib, "image", "list", "--no-trunc").stdout == listed


def test_a_gadgetstore_pull_looks_to_ig_as_its_own(tmp_path: Path, published: dict[str, str],
                                                    anon_registry: RegistryServer) -> None:  # noqa: F811
    by_ig, by_gs = new_varlib(tmp_path, "by-ig"), new_varlib(tmp_path, "by-gs")
    ig_pull(by_ig, anon_registry, published["real"])
    gs_pull(by_gs / "oci-store", anon_registry, published["real"])  # gadgetstore makes the store, as ig would
    assert tree_shape(by_gs / "oci-store") == tree_shape(by_ig / "oci-store")
    assert sorted(entry_texts(by_gs / "oci-store")) == sorted(entry_texts(by_ig / "oci-store"))
    for args in (["image", "list"], ["image", "list", "--no-trunc"], ["image", "list", "-o", "json"]):
        assert ig(by_gs, *args).stdout == ig(by_ig, *args).stdout
    assert ig_inspect(by_gs, published["real"]) == ig_inspect(by_ig, published["real"])

    ig_pull(by_ig, anon_registry, published["other"])  # into a store ig made and used, next to ig's image
    gs_pull(by_gs / "oci-store", anon_registry, published["other"])
    assert sorted(entry_texts(by_gs / "oci-store")) == sorted(entry_texts(by_ig / "oci-store"))
    assert ig(by_gs, "image", "list", "--no-trunc").stdout == ig(by_ig, "image", "list", "--no-trunc").stdout


def tree_shape(root: Path) -> dict[str, tuple[int, int]]:
    """Names, modes and sizes (not times, nor index.json's entry order, which ig's map iteration makes random)."""
    return {name: (mode, size) for name, (mode, size, _, _, _) in tree(root).items()}


def test_igs_remove_and_gadgetstore_gc_lose_nothing_the_other_references(tmp_path: Path, published: dict[str, str],
                                                                         anon_registry: RegistryServer  # noqa: F811
                                                                         ) -> None:
    varlib = new_varlib(tmp_path, "shared")
    store = varlib / "oci-store"
    ig_pull(varlib, anon_registry, published["other"])
    gs_pull(store, anon_registry, published["real"])
    ig(varlib, "image", "remove", published["other"])  # ig's gc runs: everything index.json does not reach goes
    assert fsck_clean(store)
    assert listed(varlib) == [published["real"]]
    ig_inspect(varlib, published["real"])
    report = run_in_store(store, "gc")
    assert report[0] == 0 and report[1].startswith("removed 0 blobs")
    assert fsck_clean(store) and listed(varlib) == [published["real"]]
    code, _, err = run_in_store(store, "image", "remove", published["real"])
    assert code == 0, err
    assert listed(varlib) == [] and fsck_clean(store)
    assert not list((store / "blobs" / "sha256").iterdir())


def test_a_gadgetstore_pull_survives_igs_gc_between_its_blobs_and_its_tags(
        tmp_path: Path, published: dict[str, str], anon_registry: RegistryServer,  # noqa: F811
        gadget: ArchivedImage, monkeypatch: pytest.MonkeyPatch) -> None:
    """ig's remove runs between gadgetstore's last blob and its index.json write: ig's gc deletes the
    blobs not named yet, gadgetstore sees that under ig's lock and fetches them again."""
    varlib = new_varlib(tmp_path, "race")
    store_root = varlib / "oci-store"
    ig_pull(varlib, anon_registry, published["other"])
    store = Store.open(store_root)
    ours = [store_root / "blobs" / "sha256" / digest.hex for digest in gadget.blobs]
    vanished: list[int] = []
    real_flush = store.flush_index

    def ig_removes_first() -> None:
        if not vanished:
            assert all(path.exists() for path in ours)
            ig(varlib, "image", "remove", published["other"])
            vanished.append(sum(1 for path in ours if not path.exists()))
        real_flush()

    monkeypatch.setattr(store, "flush_index", ig_removes_first)
    options = TransferOptions(insecure_registries=frozenset({anon_registry.host}))
    (result,) = trio.run(lambda: pull_images(store, [published["real"]], options))
    assert result.error is None, result.error
    assert vanished == [len(ours)], "ig's gc deletes every blob index.json does not name yet"
    assert all(path.exists() for path in ours)
    assert listed(varlib) == [published["real"]]
    ig_inspect(varlib, published["real"])
    assert fsck_clean(store_root)


def test_ig_pulls_while_gadgetstore_collects(tmp_path: Path, published: dict[str, str],
                                            anon_registry: RegistryServer) -> None:  # noqa: F811
    """ig writes a pull's blobs before naming them; gadgetstore's gc keeps young unnamed blobs."""
    varlib = new_varlib(tmp_path, "collect")
    store = varlib / "oci-store"
    ig(varlib, "image", "list")  # ig makes its store
    pull = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", _NAMESPACE, "ig",
                             "image", "pull", "--insecure-registries", anon_registry.host, published["third"]],
                            env={**os.environ, "IG_VARLIB": str(varlib), "IG_BIN": IG},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    collections = 0
    while pull.poll() is None or collections == 0:
        assert run_in_store(store, "gc")[0] == 0
        collections += 1
    assert pull.wait() == 0, pull.stderr.read().decode() if pull.stderr else ""
    assert listed(varlib) == [published["third"]] and fsck_clean(store)
    assert run_in_store(store, "gc", "--grace", "0")[1].startswith("removed 0 blobs")


def listed(varlib: Path) -> list[str]:
    rows = json.loads(ig(varlib, "image", "list", "-o", "json").stdout or "[]")
    return sorted(f"{row['Repository']}:{row['Tag']}" for row in rows)


def fsck_clean(store: Path) -> bool:
    code, out, _ = run_in_store(store, "fsck")
    return code == 0 and out.rstrip().endswith("no problems found")


@pytest.fixture(autouse=True, scope="session")
def _tools() -> Iterator[None]:
    missing = [tool for tool in ("unshare", "docker-registry") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    yield

