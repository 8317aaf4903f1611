"""Damaged index journals: a record whose checksum holds around whatever payload a test gives.

Such a record is not a torn write (that is cut on open): it is damage the format must refuse with
its reason, which is what these records are for.
"""

from __future__ import annotations

from pathlib import Path

from gadgetstore.engine.journal_format import encode_line

DIGEST = "sha256:" + "a" * 64
"""A well-formed digest for descriptors in records; no blob needs to exist for the format's checks."""

NOT_RECORDS: dict[str, tuple[bytes, str]] = {
    "unknown op": (b'{"ops":[{"op":"frob","ref":"x.io/b:1"}]}', "unknown operation 'frob'"),
    "untag without its ref": (b'{"ops":[{"op":"untag"}]}', "untag without a ref"),
    "tag without its ref": (b'{"ops":[{"op":"tag","desc":{"digest":"%s","size":1}}]}' % DIGEST.encode(),
                            "tag without a ref"),
    "tag without a descriptor": (b'{"ops":[{"op":"tag","ref":"x.io/b:1"}]}', "tag without a descriptor"),
    "pin without a digest": (b'{"ops":[{"op":"pin","desc":{"size":1}}]}', "pin without a descriptor"),
    "unpin of a number": (b'{"ops":[{"op":"unpin","digest":7}]}', "unpin without a digest"),
    "op not an object": (b'{"ops":["tag"]}', "an operation is not an object"),
    "no ops": (b'{"op":"untag","ref":"x.io/b:1"}', "a record without a list of operations"),
    "ops not a list": (b'{"ops":{"op":"untag","ref":"x.io/b:1"}}', "a record without a list of operations"),
    "record not an object": (b'[{"op":"untag","ref":"x.io/b:1"}]', "a record without a list of operations"),
    "tag of a bad digest": (b'{"ops":[{"op":"tag","ref":"x.io/b:1","desc":{"digest":"sha256:zz","size":1}}]}',
                            "tag with a bad descriptor: invalid digest 'sha256:zz': "
                            "expected 'sha256:' followed by lowercase hex"),
    "pin of another algorithm": (b'{"ops":[{"op":"pin","desc":{"digest":"md5:%s","size":1}}]}' % (b"a" * 32),
                                 f"pin with a bad descriptor: invalid digest 'md5:{'a' * 32}': "
                                 "unsupported algorithm 'md5'"),
    "tag of a bad size": (b'{"ops":[{"op":"tag","ref":"x.io/b:1","desc":{"digest":"%s","size":"1"}}]}'
                          % DIGEST.encode(), "tag with a bad descriptor: size must be a non-negative integer"),
    "nested 100,000 deep": (b'{"ops":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON (nested too deeply)"),
    "not JSON": (b'{"ops":[}', "not valid JSON (Expecting value: line 1 column 9 (char 8))"),
}
"""Checksummed payloads that are not records of the format: case → (payload, the reason replay gives)."""


def checksummed(payload: bytes) -> bytes:
    """A whole journal line around ``payload`` whose checksum holds, whatever the payload says."""
    return encode_line(payload)


def append_checksummed(journal: Path, payload: bytes) -> int:
    """Append :func:`checksummed` ``payload`` to ``journal``; returns the byte it starts at."""
    start = journal.stat().st_size
    with open(journal, "ab") as f:
        f.write(checksummed(payload))
    return start
