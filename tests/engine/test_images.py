"""engine/images.py: what ig computes from an image's manifests."""

from __future__ import annotations

import json

import pytest

from gadgetstore.engine.errors import InvalidManifest
from gadgetstore.engine.images import go_manifest_json


def test_oci_manifest_is_go_json_of_ocispec_manifest() -> None:
    """pkg/operators/oci-handler/extrainfo.go addExtraInfo: ``json.Marshal(manifest)`` of the
    ocispec.Manifest read from the blob, so the struct's field order (schemaVersion, mediaType,
    artifactType, config, layers, subject, annotations; a descriptor's mediaType, digest, size, …),
    sorted annotations, HTML escaping, unknown fields dropped. Checked against the real ig for an
    image whose annotations hold ``<b> & </b>``: the same content string."""
    doc = {"annotations": {"z": "1", "a": "<b> & </b>"}, "layers": [{"size": 3, "digest": "sha256:bb",
                                                                      "mediaType": "l", "extra": 1}],
           "config": {"digest": "sha256:aa", "mediaType": "c", "size": 2, "annotations": {"y": "2", "x": "1"}},
           "artifactType": "application/vnd.gadget.v1+binary", "schemaVersion": 2, "unknown": True}
    assert go_manifest_json(doc) == (
        b'{"schemaVersion":2,"artifactType":"application/vnd.gadget.v1+binary",'
        b'"config":{"mediaType":"c","digest":"sha256:aa","size":2,"annotations":{"x":"1","y":"2"}},'
        b'"layers":[{"mediaType":"l","digest":"sha256:bb","size":3}],'
        b'"annotations":{"a":"\\u003cb\\u003e \\u0026 \\u003c/b\\u003e","z":"1"}}')
    assert json.loads(go_manifest_json({"schemaVersion": 2, "config": {}}))["layers"] is None


@pytest.mark.parametrize("layer", [{"digest": "sha256:bb", "size": 3, "annotations": {"k": 1}},
                                   {"digest": "sha256:bb", "size": "3"},
                                   {"digest": "sha256:bb", "size": 3, "platform": {"os.features": "x"}},
                                   "sha256:bb"])
def test_oci_manifest_refuses_what_go_cannot_decode_into_an_ocispec_manifest(layer: object) -> None:
    """ig's json.Unmarshal into ocispec.Manifest fails on a field of the wrong type, so ig shows no
    oci.manifest for it; the same encoder as index.json's entries, which refuses it too."""
    with pytest.raises(InvalidManifest, match="descriptor"):
        go_manifest_json({"schemaVersion": 2, "config": {}, "layers": [layer]})
