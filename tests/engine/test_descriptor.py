"""The one check of a manifest or index, shared by pull and import (``checked_document``)."""

import json
import re

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import checked_document
from gadgetstore.engine.errors import InvalidManifest

CONFIG = {"mediaType": mt.GADGET_CONFIG, "digest": "sha256:" + "a" * 64, "size": 3}
MANIFEST = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG, "layers": []}
INDEX = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def check(doc: object, content_type: str = "", expected_type: str = "") -> str:
    return checked_document(json.dumps(doc).encode(), "m", content_type, expected_type)[1]


@pytest.mark.parametrize(
    ("doc", "content_type", "expected_type", "message"),
    [
        ({}, mt.OCI_MANIFEST, mt.OCI_MANIFEST, "schemaVersion must be 2"),
        ({**MANIFEST, "schemaVersion": True}, "", "", "schemaVersion must be 2"),
        ({k: v for k, v in MANIFEST.items() if k != "layers"}, "", "", "a config and a list of layers"),
        ({k: v for k, v in MANIFEST.items() if k != "config"}, "", "", "a config and a list of layers"),
        ({**INDEX, "manifests": None}, "", "", "a list of manifests"),
        ({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "layers": []}, "", "", "an index must not have config"),
        (MANIFEST, mt.OCI_INDEX, "", "does not match Content-Type"),
        (MANIFEST, "", mt.OCI_INDEX, f"descriptor says {mt.OCI_INDEX}, document is {mt.OCI_MANIFEST}"),
        ({**MANIFEST, "mediaType": "application/vnd.x"}, "", "", "unsupported manifest type"),
    ],
)
def test_documents_that_pull_and_import_refuse(doc: object, content_type: str, expected_type: str,
                                               message: str) -> None:
    with pytest.raises(InvalidManifest, match=re.escape(message)):
        check(doc, content_type, expected_type)


def test_the_type_comes_from_the_body_then_the_header_then_the_descriptor() -> None:
    bare = {k: v for k, v in MANIFEST.items() if k != "mediaType"}
    assert check(MANIFEST, "application/json", mt.OCI_MANIFEST) == mt.OCI_MANIFEST
    assert check(bare, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST) == mt.DOCKER_MANIFEST
    assert check(bare, "", mt.DOCKER_MANIFEST) == mt.DOCKER_MANIFEST  # import: the descriptor stands for the header
    assert check(bare) == mt.OCI_MANIFEST
    assert check({k: v for k, v in INDEX.items() if k != "mediaType"}) == mt.OCI_INDEX


def test_a_document_nested_deeper_than_the_parser_goes_is_refused_in_one_line() -> None:
    """Half a megabyte of brackets, well within the size limit: an InvalidManifest, never a
    RecursionError that pull and import would show as a traceback."""
    data = b'{"schemaVersion":2,"annotations":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(InvalidManifest, match="m: not valid JSON \\(nested too deeply\\)"):
        checked_document(data, "m")


def test_a_lone_surrogate_escape_reads_as_u_fffd_as_ig_reads_it() -> None:
    """Go's decoder puts U+FFFD for an escaped surrogate that pairs with nothing, so ig lists and
    inspects such an annotation as U+FFFD; Python's would keep a character UTF-8 cannot encode,
    which every printer of it (image list, inspect's oci.created, the mount) then fails on."""
    data = (b'{"schemaVersion":2,"mediaType":"' + mt.OCI_MANIFEST.encode() + b'","config":'
            + json.dumps(CONFIG).encode() + b',"layers":[],"annotations":{"created":"\\ud800x\\uDFFF",'
            + b'"\\udc80":"pair \\ud83d\\ude00 kept"}}')
    doc, _ = checked_document(data, "m")
    assert doc["annotations"] == {"created": "\ufffdx\ufffd", "\ufffd": "pair \U0001f600 kept"}
    json.dumps(doc, ensure_ascii=False).encode()
