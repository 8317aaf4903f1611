"""The journal snapshot → directory tree mapping (pure)."""

from __future__ import annotations

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.digest import Digest
from gadgetstore.fusefs.catalog import MountCatalog


def _desc(n: int) -> dict[str, object]:
    return {"mediaType": mt.OCI_INDEX, "digest": f"sha256:{n:064x}", "size": 10 + n}


def test_full_and_short_names() -> None:
    cat = MountCatalog.build({
        "ghcr.io/inspektor-gadget/gadget/trace_tcp:latest": _desc(1),
        "localhost:5000/mygadget:v1": _desc(2),
    })
    assert set(cat.images) == {
        ("ghcr.io", "inspektor-gadget", "gadget", "trace_tcp", "latest"),
        ("trace_tcp", "latest"),
        ("localhost:5000", "mygadget", "v1"),
    }
    assert cat.images[("trace_tcp", "latest")].typed == "trace_tcp:latest"
    assert cat.images[("localhost:5000", "mygadget", "v1")].typed == "localhost:5000/mygadget:v1"
    assert cat.dirs[()] == {"ghcr.io", "trace_tcp", "localhost:5000"}
    assert cat.dirs[("ghcr.io", "inspektor-gadget", "gadget")] == {"trace_tcp"}


def test_signature_tags_and_bad_entries_are_skipped() -> None:
    cat = MountCatalog.build({
        f"ghcr.io/x/y:sha256-{1:064x}.sig": _desc(1),
        "ghcr.io/x/y:ok": _desc(2),
        "ghcr.io/x/y:broken": {"digest": "nope"},
        "NOT A REF": _desc(3),
    })
    assert list(cat.images) == [("ghcr.io", "x", "y", "ok")]


def test_reserved_and_registry_like_short_names_are_not_offered() -> None:
    cat = MountCatalog.build({
        "ghcr.io/inspektor-gadget/gadget/tags:latest": _desc(1),
        "ghcr.io/inspektor-gadget/gadget/readme:latest": _desc(2),
        "ghcr.io/inspektor-gadget/gadget/example.com/x:latest": _desc(3),
    })
    assert sorted(path[:4] for path in cat.images if path[0] != "ghcr.io") == [("readme", "latest")]


def test_an_image_hides_a_longer_path_below_it() -> None:
    cat = MountCatalog.build({"example.com/a:b": _desc(1), "example.com/a/b:latest": _desc(2)})
    assert ("example.com", "a", "b") in cat.images
    assert ("example.com", "a", "b", "latest") not in cat.images
    assert ("example.com", "a", "b") not in cat.dirs


def test_full_reference_wins_over_short_name() -> None:
    cat = MountCatalog.build({"foo:latest": _desc(1), "ghcr.io/inspektor-gadget/gadget/foo:latest": _desc(2)})
    assert cat.images[("foo", "latest")].root.digest == Digest.parse(f"sha256:{1:064x}")


def test_roots_include_pins_and_typed_names() -> None:
    cat = MountCatalog.build({"example.com/a:v1": _desc(1)}, [_desc(7)])
    assert set(cat.roots) == {Digest.parse(f"sha256:{1:064x}"), Digest.parse(f"sha256:{7:064x}")}
    assert cat.typed_for(Digest.parse(f"sha256:{1:064x}")) == "example.com/a:v1"
    assert cat.typed_for(Digest.parse(f"sha256:{7:064x}")).startswith("by-digest@sha256:")
