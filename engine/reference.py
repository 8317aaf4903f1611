"""Image references, normalised exactly as ``ig`` does (pkg/oci/oci.go, distribution/reference).

``trace_open`` → ``ghcr.io/inspektor-gadget/gadget/trace_open:latest``; a first path component is a
registry only when it has a ``.`` or ``:``, is ``localhost`` or has uppercase letters; ``docker.io``
is never a default, but ``docker.io/x`` gains ``library/`` as Docker does.

Signature tags are cosign's grammar, not references: ``sha256-<hex>.sig`` (and ``.att``, ``.sbom``)
and the referrers tag schema's ``sha256-<hex>``, stored without a repository as ig stores them.

The grammar is ASCII only, and every pattern matches whole strings (``fullmatch``): Python's ``\\w``
also takes letters such as ``é``, and ``$`` matches before a final newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digest import Digest
from .errors import GadgetStoreError, InvalidDigest, InvalidReference

DEFAULT_DOMAIN = "ghcr.io"
OFFICIAL_REPO_PREFIX = "inspektor-gadget/gadget/"
OFFICIAL_PREFIX = f"{DEFAULT_DOMAIN}/{OFFICIAL_REPO_PREFIX}"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_TAG_RE = re.compile(_TAG)
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DIGEST_ALONE_RE = re.compile(r"(?:sha256|sha512):[0-9a-fA-F]+")
LEGACY_SIGNATURE_SUFFIX = ".sig"
COSIGN_TAG_SUFFIXES = (LEGACY_SIGNATURE_SUFFIX, ".att", ".sbom")  # signatures, attestations, SBOMs
_SIGNATURE_TAG_RE = re.compile(
    rf"(sha256|sha512)-([0-9a-f]+)({'|'.join(re.escape(suffix) for suffix in COSIGN_TAG_SUFFIXES)})?")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def tag_or_latest(self) -> str:
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def is_registry_component(first: str) -> bool:
    """Whether the first ``/``-separated component of a name is a registry rather than a path:
    it has a ``.`` or ``:``, is ``localhost`` or has uppercase letters (distribution's rule)."""
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def _split_name(name: str) -> tuple[str, str]:
    """Split a matched name into (domain, path); the domain is empty when the name has none."""
    first, sep, rest = name.partition("/")
    if sep and is_registry_component(first):
        return first, rest
    return "", name


def parse(text: str) -> Reference:
    """Parse without normalising (``reference.Parse``): ``trace_open`` stays ``trace_open``."""
    match = _REFERENCE_RE.fullmatch(text) if text else None
    if match is None:
        if text and text != text.lower() and _REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
        raise InvalidReference(f"invalid reference format {text!r}")
    name, tag, digest_text = match.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"invalid reference {text!r}: repository name must not be more than 255 characters")
    digest = None
    if digest_text is not None:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as err:
            raise InvalidReference(f"invalid reference {text!r}: {err}") from None
    domain, path = _split_name(name)
    return Reference(domain, path, tag, digest)


def _parse_normalized_named(text: str) -> Reference:
    """``reference.ParseNormalizedNamed``: Docker's rules on a string that already has a domain."""
    if _ANCHORED_IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name {text!r}: cannot specify 64-byte hexadecimal strings"
        )
    first, sep, rest = text.partition("/")
    if not sep or not is_registry_component(first):
        domain, remainder = "docker.io", text
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    name_part = remainder.split("@", 1)[0].split(":", 1)[0]
    if name_part != name_part.lower():
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
    return parse(f"{domain}/{remainder}")


def normalize(image: str) -> Reference:
    """Normalise a user-typed image name as ``ig`` does, adding ``:latest`` to a bare name."""
    if not image:
        raise InvalidReference("invalid reference: empty image name")
    if "://" in image:
        raise InvalidReference(f"invalid reference {image!r}: remove the URL scheme")
    if _DIGEST_ALONE_RE.fullmatch(image):
        # as a name it would be ghcr.io/inspektor-gadget/gadget/sha256 with the hex as its tag
        raise InvalidReference(f"invalid reference {image!r}: a digest alone names no repository; "
                               "give NAME@DIGEST")
    first, sep, rest = image.partition("/")
    if sep and is_registry_component(first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, image
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    ref = _parse_normalized_named(f"{domain}/{remainder}")
    if ref.tag is None and ref.digest is None:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref


def display_repository(repository: str) -> str:
    """The repository as ``ig image list`` shows it: official gadgets by their short name."""
    return repository.removeprefix(OFFICIAL_PREFIX)


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))


def is_valid_path(path: str) -> bool:
    """A repository path without a domain (the distribution spec's ``<name>``: ``a/b-c/d_e``)."""
    return bool(_PATH_RE.fullmatch(path))


def legacy_signature_tag(digest: Digest) -> str:
    """cosign's ``sha256-<hex>.sig`` tag of the image ``digest``."""
    return f"{digest.algorithm}-{digest.hex}{LEGACY_SIGNATURE_SUFFIX}"


def referrers_tag(digest: Digest) -> str:
    """The OCI referrers tag schema's ``sha256-<hex>``: it tags an index of the referrers of ``digest``."""
    return f"{digest.algorithm}-{digest.hex}"


def signature_tag_subject(tag: str) -> Digest | None:
    """The image a signature tag is attached to: ``sha256-<hex>.sig`` (cosign's, also ``.att`` and
    ``.sbom``) and ``sha256-<hex>`` (the referrers tag schema) name it; None for any other tag."""
    match = _SIGNATURE_TAG_RE.fullmatch(tag)
    if match is None:
        return None
    try:
        return Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except GadgetStoreError:
        return None
