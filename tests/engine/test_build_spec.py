"""Pure build rules: the exact manifest/index bytes ig writes, annotations, build.yaml, timestamps."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.buildspec import (
    ArchLayers,
    BuildError,
    BuildFile,
    created_timestamp,
    metadata_annotations,
    parse_build_file,
    plan_image,
)
from gadgetstore.engine.digest import Digest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_reproduces_a_real_ig_metadata_only_image() -> None:
    """ig v0.45.0 built this one (ig repo pkg/signature/testdata/oci-store, blob f34a362f…)."""
    plan = plan_image(
        {"amd64": ArchLayers(), "arm64": ArchLayers()},
        b"name: unsigned\n",
        "2025-10-20T15:28:46+02:00",
        "v0.45.0-45-gfc2e80680-dirty",
    )
    assert str(plan.root.digest) == "sha256:f34a362f177727ed3f12eadc1f255ffe6a19190ab82d48df98c19f1bddc3b86a"
    assert plan.root.size == 1535
    assert [str(m.digest) for m in plan.manifests] == [
        "sha256:f04a4a04a15fef85a1438a2b7079c2bbc81a822acee2fb9c4827ae1709f3101f"
    ] * 2
    assert plan.manifests[0].size == 933


METADATA = (
    b'name: "demo <x> & y"\n'
    b"description: yes\n"
    b"annotations:\n"
    b"  io.example/flag: true\n"
    b"  io.inspektor-gadget.builder.version: custom\n"
    b"  org.opencontainers.image.created: overridden-by-the-build-time\n"
)
ANNOTATIONS = (
    '{"io.example/flag":"true",'
    '"io.inspektor-gadget.builder.version":"custom",'
    '"org.opencontainers.image.created":"2024-01-02T03:04:05Z",'
    '"org.opencontainers.image.description":"yes",'
    '"org.opencontainers.image.documentation":"",'
    '"org.opencontainers.image.source":"",'
    '"org.opencontainers.image.title":"demo \\u003cx\\u003e \\u0026 y",'
    '"org.opencontainers.image.url":""}'
)
AMD, ARM, WASM = b"\x7fELF amd64 object", b"\x7fELF arm64 object", b"\x00asm\x01\x00\x00\x00"


def expected_manifest(ebpf: bytes) -> bytes:
    text = (
        '{"schemaVersion":2,"artifactType":"application/vnd.gadget.v1+binary",'
        f'"config":{{"mediaType":"application/vnd.gadget.config.v1+yaml","digest":"{sha(METADATA)}",'
        f'"size":{len(METADATA)},"annotations":{ANNOTATIONS}}},'
        f'"layers":[{{"mediaType":"application/vnd.gadget.ebpf.program.v1+binary","digest":"{sha(ebpf)}",'
        f'"size":{len(ebpf)}}},'
        f'{{"mediaType":"application/vnd.gadget.wasm.program.v1+binary","digest":"{sha(WASM)}","size":{len(WASM)}}}],'
        f'"annotations":{ANNOTATIONS}}}'
    )
    return text.encode()


def index_entry(manifest: bytes, arch: str) -> str:
    return (
        f'{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{sha(manifest)}",'
        f'"size":{len(manifest)},"annotations":{ANNOTATIONS},'
        f'"platform":{{"architecture":"{arch}","os":"linux"}}}}'
    )


def test_manifests_and_index_are_byte_exact() -> None:
    plan = plan_image(
        {"arm64": ArchLayers(ebpf=ARM, wasm=WASM), "amd64": ArchLayers(ebpf=AMD, wasm=WASM)},
        METADATA,
        "2024-01-02T03:04:05Z",
        "gadgetstore 9.9.9",
    )
    amd, arm = expected_manifest(AMD), expected_manifest(ARM)
    index = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
        f'"manifests":[{index_entry(amd, "amd64")},{index_entry(arm, "arm64")}],'
        f'"annotations":{ANNOTATIONS}}}'
    ).encode()
    assert plan.blobs[Digest.of_bytes(amd)] == amd
    assert plan.blobs[Digest.of_bytes(arm)] == arm
    assert plan.blobs[plan.root.digest] == index
    assert plan.root.size == len(index)
    assert plan.root.media_type == mt.OCI_INDEX
    assert list(plan.root.annotations) == sorted(plan.root.annotations)
    # Children are stored before the documents that point at them; the index comes last.
    assert list(plan.blobs) == [Digest.of_bytes(b) for b in (METADATA, AMD, WASM, amd, ARM, arm, index)]


def test_without_gadget_yaml_the_config_is_the_oci_empty_descriptor_with_data() -> None:
    plan = plan_image({"amd64": ArchLayers(), "arm64": ArchLayers()}, None, "2024-01-02T03:04:05Z", "unused")
    manifest = (
        b'{"schemaVersion":2,"artifactType":"application/vnd.gadget.v1+binary",'
        b'"config":{"mediaType":"application/vnd.oci.empty.v1+json",'
        b'"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,'
        b'"annotations":{"org.opencontainers.image.created":"2024-01-02T03:04:05Z"},"data":"e30="},'
        b'"layers":[],"annotations":{"org.opencontainers.image.created":"2024-01-02T03:04:05Z"}}'
    )
    assert plan.blobs[Digest.of_bytes(manifest)] == manifest
    assert plan.blobs[Digest.of_bytes(b"{}")] == b"{}"
    assert [m.digest for m in plan.manifests] == [Digest.of_bytes(manifest)] * 2
    assert [m.architecture for m in plan.manifests] == ["amd64", "arm64"]
    assert plan.root.annotations == {"org.opencontainers.image.created": "2024-01-02T03:04:05Z"}


def test_unicode_is_raw_but_line_separators_are_escaped() -> None:
    plan = plan_image({"amd64": ArchLayers()}, "name: \"café\u2028\"\n".encode(), "t", "b")
    index = plan.blobs[plan.root.digest]
    assert '"org.opencontainers.image.title":"café\\u2028"'.encode() in index


def test_metadata_annotations_follow_go_yaml_string_decoding() -> None:
    meta = b"name: 0x10\ndescription: ~\nhomepageURL: on\nannotations:\n  a: 1.50\n  b:\n  c: 'quoted'\n"
    assert metadata_annotations(meta, "B") == {
        "org.opencontainers.image.title": "0x10",
        "org.opencontainers.image.description": "",
        "org.opencontainers.image.url": "on",
        "org.opencontainers.image.documentation": "",
        "org.opencontainers.image.source": "",
        "io.inspektor-gadget.builder.version": "B",
        "a": "1.50",
        "b": "",
        "c": "quoted",
    }


def test_compiler_annotations_sit_beside_builder_version_and_yield_to_gadget_yaml() -> None:
    tools = {"io.gadgetstore.builder.ebpf-compiler": "clang version 19.1.7",
             "io.gadgetstore.builder.wasm-compiler": "go1.26.8"}
    meta = b"name: n\nannotations:\n  io.gadgetstore.builder.wasm-compiler: pinned\n"
    annotations = metadata_annotations(meta, "B", tools=tools)
    assert annotations["io.inspektor-gadget.builder.version"] == "B"
    assert annotations["io.gadgetstore.builder.ebpf-compiler"] == "clang version 19.1.7"
    assert annotations["io.gadgetstore.builder.wasm-compiler"] == "pinned"
    plan = plan_image({"amd64": ArchLayers()}, None, "t", "B", tools)  # no gadget.yaml: no builder annotations
    assert plan.root.annotations == {"org.opencontainers.image.created": "t"}


@pytest.mark.parametrize(
    "meta",
    [b"", b"# only a comment\n", b"- a list\n", b"name: [1, 2]\n", b"annotations: [x]\n", b"name: 'unclosed\n"],
)
def test_unusable_gadget_yaml_is_a_build_error(meta: bytes) -> None:
    with pytest.raises(BuildError, match=r"gadget\.yaml"):
        metadata_annotations(meta, "B")


def test_build_file_defaults_and_overrides() -> None:
    assert parse_build_file(b"") == BuildFile("program.bpf.c", "", "gadget.yaml")
    assert parse_build_file(b"cflags: -O3\n") == BuildFile(ignored=("cflags",))  # read, never passed on
    assert parse_build_file(b"ebpfsource: x.bpf.c\nwasm: m.wasm\nmetadata: meta.yaml\n") == BuildFile(
        "x.bpf.c", "m.wasm", "meta.yaml"
    )
    with pytest.raises(BuildError, match=r"build\.yaml"):
        parse_build_file(b"ebpfsource: [a]\n")


def test_created_with_source_date_epoch_is_utc_z() -> None:
    assert created_timestamp("1700000000") == "2023-11-14T22:13:20Z"
    assert created_timestamp("0") == "1970-01-01T00:00:00Z"
    assert created_timestamp("+86400") == "1970-01-02T00:00:00Z"


@pytest.mark.parametrize("bad", ["", "1.5", " 1", "1_000", "abc", "99999999999999999999"])
def test_invalid_source_date_epoch(bad: str) -> None:
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        created_timestamp(bad)


def test_created_without_epoch_is_local_time_with_offset() -> None:
    cest = timezone(timedelta(hours=2))
    assert created_timestamp(None, datetime(2025, 10, 20, 15, 28, 46, 123, tzinfo=cest)) == "2025-10-20T15:28:46+02:00"
    west = timezone(-timedelta(hours=3, minutes=30))
    assert created_timestamp(None, datetime(2025, 1, 2, 3, 4, 5, tzinfo=west)) == "2025-01-02T03:04:05-03:30"
    assert created_timestamp(None, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    now = created_timestamp(None)
    assert now[19:] == "Z" or now[19] in "+-"
