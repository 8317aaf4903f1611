"""index.json as oras reads it and as ig writes it (engine/indexjson.py).

Expected bytes come from ig's and oras-go's code, cited per test: image-spec v1.1.1
specs-go/v1/descriptor.go (field order and ``omitempty``), oras-go v2.6.2 content/oci/oci.go
``saveIndex`` (``json.Marshal``: compact, sorted map keys, HTML escaping, ``null`` for no entries)
and content/oci/readonlyoci.go ``loadIndex`` (file order, the last entry wins).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadgetstore.engine import journal_format as jf
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.errors import StoreError
from gadgetstore.engine.indexjson import IndexDocument, go_descriptor, load_index
from tests.support.igstore import CAPTURED

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
D4 = "sha256:" + "4" * 64


def test_a_descriptor_is_written_as_go_marshals_an_ocispec_descriptor() -> None:
    desc = {"platform": {"os": "linux", "variant": "v8", "architecture": "arm64", "features": ["x"]},
            "annotations": {"z": "<a & b>", "a": "line\nbreak\u2028"}, "size": 7, "digest": D1,
            "mediaType": MANIFEST, "urls": [], "data": "", "unknown": 1, "artifactType": "t"}
    assert go_descriptor(desc) == (
        '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"' + D1 + '","size":7,'
        '"annotations":{"a":"line\\nbreak\\u2028","z":"\\u003ca \\u0026 b\\u003e"},'
        '"platform":{"architecture":"arm64","os":"linux","variant":"v8"},"artifactType":"t"}').encode()


def test_a_descriptor_keeps_mediatype_digest_and_size_even_when_empty() -> None:
    """``mediaType``, ``digest`` and ``size`` have no ``omitempty`` in ocispec.Descriptor."""
    assert go_descriptor({"digest": D1, "size": 0}) == ('{"mediaType":"","digest":"' + D1 + '","size":0}').encode()


def test_an_index_ig_wrote_renders_to_its_own_bytes() -> None:
    data = (CAPTURED / "index.json").read_bytes()
    document = IndexDocument.parse(data)
    assert document.render() == data
    assert len(document.entries) == 3 and document.entries[0].ref == "127.0.0.1:55841/x:v1"


def foreign_index() -> bytes:
    """Pretty-printed, keys in a strange order, fields ig does not know, a top-level annotation."""
    return json.dumps({
        "mediaType": INDEX, "schemaVersion": 2, "x-tool": {"keep": True},
        "manifests": [
            {"size": 10, "digest": D1, "mediaType": INDEX, "vendor": "kept",
             "annotations": {"org.opencontainers.image.ref.name": "x.io/a:1", "note": "é<"}},
            {"mediaType": MANIFEST, "digest": D2, "size": 20, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
        "annotations": {"io.example.owner": "someone"},
    }, indent=3).encode()


def test_an_edit_keeps_every_untouched_entry_and_the_rest_of_the_file_byte_for_byte() -> None:
    data = foreign_index()
    document = IndexDocument.parse(data)
    new = Descriptor(INDEX, Descriptor.from_json({"digest": D3, "size": 1}).digest, 30)
    edited = document.edited([jf.Tag("x.io/b:2", new.to_json())], lambda desc: [])
    text, original = edited.render().decode(), data.decode()
    for entry in document.entries:
        assert entry.text is not None and entry.text in text
    assert text.startswith(original[: original.index('"manifests": [') + len('"manifests": ')])
    assert text.endswith(original[original.index('],\n   "annotations"') + 1:])
    assert ('{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"' + D3 + '","size":30,'
            '"annotations":{"org.opencontainers.image.ref.name":"x.io/b:2"}}') in text


def test_a_tag_goes_after_the_last_tagged_entry_and_replaces_its_name_and_its_digests_untagged_entry() -> None:
    data = (b'{"schemaVersion":2,"manifests":['
            b'{"mediaType":"' + INDEX.encode() + b'","digest":"' + D1.encode() + b'","size":1,'
            b'"annotations":{"org.opencontainers.image.ref.name":"x.io/a:1"}},'
            b'{"mediaType":"' + INDEX.encode() + b'","digest":"' + D2.encode() + b'","size":2},'
            b'{"mediaType":"' + INDEX.encode() + b'","digest":"' + D3.encode() + b'","size":3,'
            b'"annotations":{"org.opencontainers.image.ref.name":"x.io/c:1"}}]}')
    document = IndexDocument.parse(data)
    child = Descriptor.from_json({"mediaType": MANIFEST, "digest": D4, "size": 4,
                                  "platform": {"architecture": "amd64", "os": "linux"}})
    root = Descriptor.from_json({"mediaType": INDEX, "digest": D2, "size": 2})
    edited = document.edited([jf.Tag("x.io/c:1", root.to_json())],
                             lambda desc: [child] if desc.digest == root.digest else [])
    refs = [(str(e.desc.digest), e.ref) for e in edited.entries]
    assert refs == [(D1, "x.io/a:1"), (D2, "x.io/c:1"), (D4, None)]
    assert edited.entries[0].text == document.entries[0].text


def test_a_pin_and_the_manifests_below_it_are_added_once() -> None:
    document = IndexDocument.parse(b'{"schemaVersion":2,"manifests":[{"mediaType":"' + MANIFEST.encode()
                                   + b'","digest":"' + D4.encode() + b'","size":4}]}')
    root = Descriptor.from_json({"mediaType": INDEX, "digest": D1, "size": 1, "annotations": {"a": "b"}})
    kids = [Descriptor.from_json({"mediaType": MANIFEST, "digest": d, "size": 9}) for d in (D4, D2)]
    edited = document.edited([jf.Pin(root.to_json()), jf.Pin(root.to_json())],
                             lambda desc: kids if desc.digest == root.digest else [])
    assert [str(e.desc.digest) for e in edited.entries] == [D4, D1, D2]


def test_untag_and_unpin_remove_only_what_they_name() -> None:
    document = IndexDocument.parse(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": INDEX, "digest": D1, "size": 1, "annotations": {"org.opencontainers.image.ref.name": "a"}},
        {"mediaType": INDEX, "digest": D1, "size": 1, "annotations": {"org.opencontainers.image.ref.name": "a"}},
        {"mediaType": INDEX, "digest": D1, "size": 1, "annotations": {"org.opencontainers.image.ref.name": "b"}},
        {"mediaType": INDEX, "digest": D1, "size": 1}]}).encode())
    edited = document.edited([jf.Untag("a"), jf.Unpin(D1)], lambda desc: [])
    assert [e.ref for e in edited.entries] == ["b"]


def test_removing_the_last_entry_writes_null_as_ig_does() -> None:
    """oras saveIndex builds ``manifests`` with append from nil: no entries marshal as ``null``."""
    document = IndexDocument.parse(b'{"schemaVersion":2,"mediaType":"' + INDEX.encode() + b'","manifests":[{"mediaType"'
                                   b':"' + INDEX.encode() + b'","digest":"' + D1.encode() + b'","size":1}],'
                                   b'"annotations":{"k":"v"}}')
    edited = document.edited([jf.Unpin(D1)], lambda desc: [])
    assert edited.render() == (b'{"schemaVersion":2,"mediaType":"' + INDEX.encode()
                               + b'","manifests":null,"annotations":{"k":"v"}}')


def test_an_index_without_manifests_gets_the_member_at_its_end() -> None:
    document = IndexDocument.parse(b'{"schemaVersion": 2}')
    edited = document.edited([jf.Pin({"mediaType": INDEX, "digest": D1, "size": 1})], lambda d: [])
    assert json.loads(edited.render()) == {"schemaVersion": 2, "manifests": [
        {"mediaType": INDEX, "digest": D1, "size": 1}]}


def test_the_state_is_what_oras_load_index_makes_of_the_file() -> None:
    """Every entry in file order; the last one wins for a name and for a digest."""
    document = IndexDocument.parse(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": INDEX, "digest": D1, "size": 1, "annotations": {"org.opencontainers.image.ref.name": "a"}},
        {"mediaType": INDEX, "digest": D2, "size": 2, "annotations": {"org.opencontainers.image.ref.name": "a",
                                                                      "x": "y"}},
        {"mediaType": MANIFEST, "digest": D3, "size": 3, "annotations": {"first": "1"}},
        {"mediaType": MANIFEST, "digest": D3, "size": 3, "annotations": {"second": "2"}}]}).encode())
    state = document.state()
    assert state.tags == {"a": {"mediaType": INDEX, "digest": D2, "size": 2, "annotations": {"x": "y"}}}
    assert state.pins == {D3: {"mediaType": MANIFEST, "digest": D3, "size": 3, "annotations": {"second": "2"}}}


@pytest.mark.parametrize("data", [
    b"", b"{", b"[]", b'{"manifests":{}}', b'{"manifests":[1]}', b'{"manifests":[{"digest":"sha256:x","size":1}]}',
    b'{"manifests":[{"digest":"' + D1.encode() + b'","size":"1"}]}',
    b'{"manifests":[{"digest":"' + D1.encode() + b'","size":1,"annotations":{"a":1}}]}',
    b"\xff\xfe",
])
def test_an_index_oras_could_not_load_is_refused_in_one_line(data: bytes) -> None:
    with pytest.raises(StoreError, match="is not a valid OCI image index") as info:
        IndexDocument.parse(data, "STORE/index.json")
    assert "\n" not in str(info.value)


def test_null_manifests_is_an_empty_index() -> None:
    assert IndexDocument.parse(b'{"schemaVersion":2,"manifests":null}').entries == []


def test_a_reader_without_the_lock_reads_again_a_file_caught_mid_rewrite(tmp_path: Path) -> None:
    """ig truncates index.json and writes it again in place: a lockless reader may see it half-written."""
    path = tmp_path / "index.json"
    whole = (CAPTURED / "index.json").read_bytes()
    path.write_bytes(whole[:100])
    document, _ = load_index(path, locked=False, pause=lambda seconds: path.write_bytes(whole))
    assert document.render() == whole


def test_a_reader_holding_the_lock_trusts_what_it_reads(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_bytes(b"{")
    with pytest.raises(StoreError, match="not a valid OCI image index"):
        load_index(tmp_path / "index.json", locked=True)
