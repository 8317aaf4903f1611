"""The pull and content-discovery half of the OCI distribution API, as a pure function.

``route(request, catalog)`` answers every request from the immutable :class:`ServedCatalog`; blob bodies
come back as a :class:`BlobSlice` for the server to stream. HEAD gets GET's headers (the server
drops the body; Range is ignored on HEAD). Every method other than GET and HEAD is a 405
``UNSUPPORTED``: the store is only written by ``gadgetstore`` itself.

Blobs are served only from the named repository's graph (its tags, their signatures and pinned
referrers, and everything those reach), as a registry scopes blobs to repositories; a mirror
asks for blobs under the repository of the image it pulls, so it is not affected. A peer server
(``[peers]``) also answers blobs by digest alone: :func:`peer_blob_request` picks those requests out
and :func:`blob_response` answers them once the server has found the blob on disk.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlsplit

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.asciidigits import parse_decimal
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import InvalidDigest
from gadgetstore.engine.reference import is_valid_tag

from .catalog import Repository, ServedCatalog
from .messages import BlobSlice, Request, ServerResponse, error, json_response
from .names import is_valid_name
from .ranges import Unsatisfiable, parse_range

READ_METHODS = frozenset({"GET", "HEAD"})
MAX_PAGE = 1000
MAX_BLOB_HOLD = 60.0  # seconds a blob request with ?wait= is held, at most, for the blob to arrive
OCTET_STREAM = "application/octet-stream"


def peer_blob_request(request: Request) -> tuple[Digest, float] | None:
    """(digest, seconds to wait for it) of a GET or HEAD ``/v2/<name>/blobs/<digest>[?wait=S]``.

    The name is not looked at: peers fetch blobs by digest, and verify what they get.
    """
    if request.method.upper() not in READ_METHODS:
        return None
    split = urlsplit(request.target)
    parts = split.path.split("/")
    if len(parts) < 5 or parts[:2] != ["", "v2"] or parts[-2] != "blobs":
        return None
    digest = _digest(unquote(parts[-1]))
    if digest is None:
        return None
    try:
        wait = float(_first(parse_qs(split.query), "wait") or 0)
    except ValueError:
        wait = 0.0
    return digest, min(MAX_BLOB_HOLD, wait) if wait > 0 else 0.0


def route(request: Request, catalog: ServedCatalog) -> ServerResponse:
    split = urlsplit(request.target)
    path = split.path
    query = parse_qs(split.query, keep_blank_values=True)
    method = request.method.upper()
    if not (path == "/v2" or path.startswith("/v2/")):
        return error(404, "UNSUPPORTED", "not a registry API endpoint")
    if method not in READ_METHODS:
        return error(
            405, "UNSUPPORTED", "this registry is read-only: push and delete are not supported",
            None, ("Allow", "GET, HEAD"),
        )
    # Split before decoding, so an encoded "/" inside a digest or tag is not a path separator.
    parts = [unquote(part) for part in path[len("/v2/"):].split("/")] if len(path) > len("/v2/") else []
    if not parts:
        return json_response(200, {})
    if parts == ["_catalog"]:
        return _catalog(catalog, query)
    if len(parts) >= 3 and parts[-2:] == ["tags", "list"]:
        action, ref = "tags", ""
    elif len(parts) >= 3 and parts[-2] in ("manifests", "blobs", "referrers"):
        action, ref = parts[-2], parts[-1]
    else:
        return error(404, "UNSUPPORTED", "unknown registry API endpoint")
    name = "/".join(parts[:-2])
    if not is_valid_name(name):
        return error(400, "NAME_INVALID", f"invalid repository name {name!r}")
    repo = catalog.find(name, _first(query, "ns"))
    if repo is None:
        return error(404, "NAME_UNKNOWN", f"repository {name!r} is not in this store", {"name": name})
    if action == "manifests":
        return _manifest(catalog, repo, ref)
    if action == "blobs":
        return _blob(repo, ref, request if method == "GET" else None)
    if action == "referrers":
        return _referrers(catalog, repo, ref, _first(query, "artifactType"))
    return _tags(name, repo, query)


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _digest(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except InvalidDigest:
        return None


def _manifest(catalog: ServedCatalog, repo: Repository, ref: str) -> ServerResponse:
    if ":" in ref:
        digest = _digest(ref)
        if digest is None:
            return error(400, "DIGEST_INVALID", f"invalid digest {ref!r}")
        found = digest if digest in repo.contents else None
    else:
        desc = repo.tags.get(ref) if is_valid_tag(ref) else None
        found = desc.digest if desc is not None else None
    doc = catalog.documents.get(found) if found is not None else None
    if doc is None:
        return error(404, "MANIFEST_UNKNOWN", f"manifest {ref!r} is not in repository {repo.name!r}",
                     {"reference": ref})
    return ServerResponse(200, (
        ("Content-Type", doc.media_type),
        ("Docker-Content-Digest", str(doc.digest)),
        ("ETag", f'"{doc.digest}"'),
    ), doc.data)


def _blob(repo: Repository, ref: str, get: Request | None) -> ServerResponse:
    """``get`` is None for HEAD, which ignores Range."""
    digest = _digest(ref)
    if digest is None:
        return error(400, "DIGEST_INVALID", f"invalid digest {ref!r}")
    desc = repo.contents.get(digest)
    if desc is None:
        return error(404, "BLOB_UNKNOWN", f"blob {ref} is not in repository {repo.name!r}", {"digest": ref})
    return blob_response(digest, desc.size, get)


def blob_response(digest: Digest, size: int | None, get: Request | None) -> ServerResponse:
    """A blob of ``size`` bytes (None: not here), whole or the Range that ``get`` asks for."""
    if size is None:
        return error(404, "BLOB_UNKNOWN", f"blob {digest} is not in this store", {"digest": str(digest)})
    headers = (
        ("Content-Type", OCTET_STREAM),
        ("Docker-Content-Digest", str(digest)),
        ("ETag", f'"{digest}"'),
        ("Accept-Ranges", "bytes"),
    )
    try:
        wanted = parse_range(get.header("range"), size) if get is not None else None
    except Unsatisfiable:
        return error(416, "RANGE_INVALID", f"range not satisfiable for a blob of {size} bytes", None,
                     ("Content-Range", f"bytes */{size}"))
    if wanted is None:
        return ServerResponse(200, headers, blob=BlobSlice(digest, 0, size, size))
    return ServerResponse(
        206, (*headers, ("Content-Range", wanted.content_range(size))),
        blob=BlobSlice(digest, wanted.start, wanted.length, size),
    )


def _referrers(catalog: ServedCatalog, repo: Repository, ref: str, artifact_type: str | None) -> ServerResponse:
    digest = _digest(ref)
    if digest is None:
        return error(400, "DIGEST_INVALID", f"invalid digest {ref!r}")
    found = [catalog.documents[d].referrer_descriptor() for d in repo.referrers.get(digest, ())]
    extra: tuple[tuple[str, str], ...] = ()
    if artifact_type:
        found = [d for d in found if d.get("artifactType") == artifact_type]
        extra = (("OCI-Filters-Applied", "artifactType"),)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    return json_response(200, index, mt.OCI_INDEX, *extra)


class _BadPage(Exception):
    """A page size ``n`` that is not a decimal number.

    Internal: the listing routes answer it with a 400 response; it never leaves this module."""


def _page(items: list[str], query: dict[str, list[str]]) -> tuple[list[str], int | None]:
    """``n``/``last`` pagination; returns the page and, when more follow, the page size for the Link."""
    last = _first(query, "last")
    if last is not None:
        items = [item for item in items if item > last]
    n_text = _first(query, "n")
    if n_text is None:
        return items, None
    n_value = parse_decimal(n_text)
    if n_value is None:
        raise _BadPage(n_text)
    n = min(n_value, MAX_PAGE)
    page = items[:n]
    return page, (n if n and len(items) > n else None)


def _link(path: str, n: int, last: str, ns: str | None) -> tuple[str, str]:
    extra = f"&ns={quote(ns, safe='')}" if ns else ""
    return ("Link", f'<{path}?n={n}&last={quote(last, safe="")}{extra}>; rel="next"')


def _tags(name: str, repo: Repository, query: dict[str, list[str]]) -> ServerResponse:
    try:
        page, more = _page(sorted(repo.tags), query)
    except _BadPage as bad:
        return error(400, "PAGINATION_NUMBER_INVALID", f"invalid page size n={bad}")
    extra = (_link(f"/v2/{name}/tags/list", more, page[-1], _first(query, "ns")),) if more else ()
    return json_response(200, {"name": name, "tags": page}, "application/json", *extra)


def _catalog(catalog: ServedCatalog, query: dict[str, list[str]]) -> ServerResponse:
    try:
        page, more = _page(catalog.names.served_names(), query)
    except _BadPage as bad:
        return error(400, "PAGINATION_NUMBER_INVALID", f"invalid page size n={bad}")
    extra = (_link("/v2/_catalog", more, page[-1], None),) if more else ()
    return json_response(200, {"repositories": page}, "application/json", *extra)
