import pytest

from gadgetstore.engine import reference
from gadgetstore.engine.errors import InvalidReference


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("trace_open", "ghcr.io/inspektor-gadget/gadget/trace_open:latest"),
        ("trace_open:v0.30.0", "ghcr.io/inspektor-gadget/gadget/trace_open:v0.30.0"),
        ("ig:latestttt", "ghcr.io/inspektor-gadget/gadget/ig:latestttt"),
        ("inspektor-gadget/ig:foobar", "ghcr.io/inspektor-gadget/ig:foobar"),
        ("ghcr.io:443/inspektor-gadget/ig:baz", "ghcr.io:443/inspektor-gadget/ig:baz"),
        ("localhost/trace_exec", "localhost/trace_exec:latest"),
        ("localhost:5000/trace_exec:v1.0.3", "localhost:5000/trace_exec:v1.0.3"),
        ("docker.io/foo", "docker.io/library/foo:latest"),
        ("index.docker.io/foo/bar:1", "docker.io/foo/bar:1"),
        ("ghcr.io/inspektor-gadget/gadget/trace_open", "ghcr.io/inspektor-gadget/gadget/trace_open:latest"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
        (
            "trace_open@sha256:" + "a" * 64,
            "ghcr.io/inspektor-gadget/gadget/trace_open@sha256:" + "a" * 64,
        ),
    ],
)
def test_normalize_matches_ig(typed: str, normalized: str) -> None:
    assert str(reference.normalize(typed)) == normalized


@pytest.mark.parametrize(
    "typed",
    ["", "https://ghcr.io/x", "UPPER", "foo:bar:baz", "foo/../bar", "ghcr.io/Foo/bar", "x:" + "t" * 129],
)
def test_bad_references_are_refused(typed: str) -> None:
    with pytest.raises(InvalidReference):
        reference.normalize(typed)


def test_parse_keeps_what_was_typed() -> None:
    ref = reference.parse("trace_open")
    assert (ref.repository, ref.tag_or_latest) == ("trace_open", "latest")
    ref = reference.parse("localhost:5000/a:v1")
    assert (ref.domain, ref.path, ref.tag) == ("localhost:5000", "a", "v1")


def test_display_strips_only_the_official_prefix() -> None:
    assert reference.display_repository("ghcr.io/inspektor-gadget/gadget/trace_open") == "trace_open"
    assert reference.display_repository("ghcr.io/inspektor-gadget/ig") == "ghcr.io/inspektor-gadget/ig"


@pytest.mark.parametrize(
    "typed",
    [
        "trace_open:vé",  # \w takes letters beyond ASCII
        "trace_open:v\u0663",  # ... and digits (ARABIC-INDIC DIGIT THREE)
        "trace_open:ｖ1",  # fullwidth
        "trace_ópen",
        "x.io/ünï/gadget:1",
        "trace_open:v1\n",  # $ matches before a final newline
        "trace_open\n",
        "x.io/a:1\n",
    ],
)
def test_references_are_ascii_and_whole(typed: str) -> None:
    with pytest.raises(InvalidReference):
        reference.normalize(typed)
    with pytest.raises(InvalidReference):
        reference.parse(typed)


def test_tag_and_path_checks_are_ascii_and_whole() -> None:
    assert reference.is_valid_tag("v1.2_rc-3") and reference.is_valid_path("inspektor-gadget/gadget/trace_open")
    for tag in ["vé", "v\u0663", "v1\n", "", "-v1", "x" * 129]:
        assert not reference.is_valid_tag(tag), tag
    for path in ["a/b\n", "ünï/x", "A/b", "a//b", ""]:
        assert not reference.is_valid_path(path), path


def test_signature_tags_are_matched_whole() -> None:
    from gadgetstore.engine.reference import signature_tag_subject

    hex64 = "ab" * 32
    assert str(signature_tag_subject(f"sha256-{hex64}.sig")) == f"sha256:{hex64}"
    assert str(signature_tag_subject(f"sha256-{hex64}")) == f"sha256:{hex64}"
    for tag in [f"sha256-{hex64}.sig\n", f"sha256-{hex64}\n", f"sha256-{hex64}.sigx", f"xsha256-{hex64}.sig"]:
        assert signature_tag_subject(tag) is None, repr(tag)
