import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import InvalidDigest

GOOD = "sha256:" + "a" * 64


def test_parse_round_trips() -> None:
    d = Digest.parse(GOOD)
    assert (d.algorithm, d.hex, str(d), d.short) == ("sha256", "a" * 64, GOOD, "a" * 12)
    assert Digest.parse("sha512:" + "0" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    [
        "sha256:../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:",
        "sha256",
        "",
        "sha256:" + "a" * 63 + "\x00",
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha256:" + "a" * 64 + "/x",
        " sha256:" + "a" * 64,
    ],
)
def test_invalid_digests_are_refused_before_any_path_is_built(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_of_bytes_matches_known_value() -> None:
    assert str(Digest.of_bytes(b"{}")) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
