"""Pushing an image from the store: blobs, then manifests, then the tagged root last.

Each blob is HEAD-checked first; a missing one is mounted from another repository of the same
registry when one is known to hold it, else uploaded — in one PUT when small, as PATCH chunks when
large. An upload's requests are never sent twice (the registry may have taken one whose answer was
lost, or answered 5xx after taking it): a failed upload starts over, as the retry policy allows
(:mod:`.retry`). Manifests go up bottom-up so the registry never sees a parent before its
children, and the root is PUT under the tag only when everything below it is in place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import trio

from .. import mediatypes as mt
from ..descriptor import Descriptor, GraphBudget, children, is_document, parse_document, walk_graph
from ..digest import Digest
from ..errors import GadgetStoreError
from ..reference import normalize
from ..resolve import resolve
from ..store import Store
from .client import RegistryClient, Session, TransferOptions
from .errors import RegistryError
from .http import ClientResponse, escaped, join_url
from .inflight import request_label
from .signatures import push_signatures
from .tasks import task_group

OCTET = ("Content-Type", "application/octet-stream")


@dataclass
class PushResult:
    reference: str
    descriptor: Descriptor
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    signatures: int = 0  # stored signatures pushed after the image (see .signatures)

    @property
    def summary(self) -> str:
        ref = normalize(self.reference)
        name = ref.repository + (f":{ref.tag}" if ref.tag else "")
        return f"{name}@{self.descriptor.digest}"


@dataclass(frozen=True)
class _Node:
    desc: Descriptor
    data: bytes
    kids: tuple[Descriptor, ...]


def _read_graph(store: Store, root: Descriptor, where: str) -> tuple[list[_Node], list[Descriptor]]:
    """Documents in bottom-up order (root last) and the distinct plain blobs under them; each
    document is read once and the graph kept within the bounds a pull checks."""
    nodes: dict[Digest, _Node] = {}
    blobs: dict[Digest, Descriptor] = {}

    def expand(desc: Descriptor) -> list[Descriptor]:
        if not is_document(desc) and desc is not root:  # a tag names a document, whatever its type says
            blobs.setdefault(desc.digest, desc)
            return []
        data = store.blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
        kids = children(parse_document(data, f"manifest {desc.digest}"), f"manifest {desc.digest}")
        nodes[desc.digest] = _Node(desc, data, tuple(kids))
        return kids

    walk_graph([root], expand, budget=GraphBudget(where, root))
    return _bottom_up(nodes, root.digest), list(blobs.values())


def _bottom_up(nodes: dict[Digest, _Node], root: Digest) -> list[_Node]:
    """Each document after every document it lists (a depth-first post-order, without recursion)."""
    order: list[_Node] = []
    started: set[Digest] = set()
    stack: list[tuple[Digest, bool]] = [(root, False)]
    while stack:
        digest, kids_done = stack.pop()
        if kids_done:
            order.append(nodes[digest])
        elif digest not in started:
            started.add(digest)
            stack.append((digest, True))
            stack.extend((kid.digest, False) for kid in nodes[digest].kids if kid.digest in nodes)
    return order


class Pusher:
    def __init__(self, store: Store, client: RegistryClient, repo: str, mount_from: Sequence[str]) -> None:
        self.store = store
        self.client = client
        self.repo = repo
        self.mount_from = [m for m in mount_from if m != repo]
        self.options = client.options
        self.scopes = (f"repository:{repo}:pull,push",)
        self.uploaded = self.mounted = self.skipped = 0

    async def push_blob(self, desc: Descriptor) -> None:
        resp = await self.client.request(
            "HEAD", f"/v2/{self.repo}/blobs/{desc.digest}", scopes=self.scopes, ok=(200, 404),
            what=f"checking blob {desc.digest}",
        )
        exists = resp.status == 200
        await resp.aclose()
        if exists:
            self.skipped += 1
            return
        attempts = self.client.retry.attempts()
        while True:
            try:
                await self._upload(desc)
                return
            except RegistryError as err:  # its requests are not sent again: the upload starts over
                wait = attempts.after_error(err, restart=True)
                if wait is None:
                    raise
            upload = request_label("POST", self.client.url(f"/v2/{self.repo}/blobs/uploads/"))
            await self.client.pause(wait, f"{upload} (retrying)")

    async def _upload(self, desc: Descriptor) -> None:
        location = None
        for source in self.mount_from:
            query = urlencode({"mount": str(desc.digest), "from": source})
            resp = await self.client.request(
                "POST", f"/v2/{self.repo}/blobs/uploads/?{query}",
                scopes=(*self.scopes, f"repository:{source}:pull"), ok=(201, 202), what=f"mounting {desc.digest}",
            )
            status, location = resp.status, await self._location(resp)
            if status == 201:
                self.mounted += 1
                return
            break
        if location is None:
            resp = await self.client.request(
                "POST", f"/v2/{self.repo}/blobs/uploads/", scopes=self.scopes, ok=(202,),
                what=f"starting upload of {desc.digest}",
            )
            location = await self._location(resp)
        step = max(1, self.options.upload_chunk_size)
        data = b""
        if desc.size <= step:
            data = await trio.to_thread.run_sync(self.store.blobs.read, desc.digest)
        else:  # chunked: read one chunk at a time; the registry checks the digest at the final PUT
            for start in range(0, desc.size, step):
                chunk = await trio.to_thread.run_sync(self._read_range, desc, start, step)
                resp = await self.client.request(
                    "PATCH", location, scopes=self.scopes, ok=(202,), body=chunk,
                    headers=[OCTET, ("Content-Range", f"{start}-{start + len(chunk) - 1}")],
                    what=f"uploading {desc.digest}",
                )
                location = await self._location(resp)
        sep = "&" if "?" in location else "?"
        resp = await self.client.request(
            "PUT", f"{location}{sep}{urlencode({'digest': str(desc.digest)})}", scopes=self.scopes, ok=(201,),
            body=data, headers=[OCTET], what=f"uploading {desc.digest}",
        )
        await resp.discard()
        self.uploaded += 1

    def _read_range(self, desc: Descriptor, start: int, size: int) -> bytes:
        with self.store.blobs.open(desc.digest) as f:
            data = os.pread(f.fileno(), min(size, desc.size - start), start)
        if start + len(data) > desc.size or not data:
            raise RegistryError(f"blob {desc.digest} in the store is shorter than its descriptor says")
        return data

    async def _location(self, resp: ClientResponse) -> str:
        """The upload URL to use next, absolute (``resp`` is done with); credentials follow it only if
        it stays on our origin."""
        await resp.discard()
        location = resp.header("location")
        if not location:
            raise RegistryError(f"{resp.url}: upload response without a Location header")
        return join_url(resp.url, location, "Location")

    async def push_document(self, node: _Node, reference: str) -> None:
        resp = await self.client.request(
            "PUT", f"/v2/{self.repo}/manifests/{reference}", scopes=self.scopes, ok=(201,), body=node.data,
            headers=[("Content-Type", node.desc.media_type)], what=f"pushing manifest {node.desc.digest}",
            idempotent=True,
        )
        announced = resp.header("docker-content-digest")
        await resp.discard()
        if announced and announced.strip() != str(node.desc.digest):
            raise RegistryError(f"registry stored manifest {node.desc.digest} as {escaped(announced)}")


def _mount_sources(store: Store, domain: str, repo: str, root: Descriptor) -> list[str]:
    """Other repositories on the same registry whose tag in the store points at the same image."""
    out: list[str] = []
    for tag in store.tags():
        try:
            ref = normalize(tag)
        except GadgetStoreError:
            continue
        desc = store.lookup(tag)
        if ref.domain == domain and ref.path != repo and desc is not None and desc.digest == root.digest:
            out.append(ref.path)
    return sorted(set(out))


async def push_image(
    store: Store, image: str, options: TransferOptions | None = None, *, mount_from: Sequence[str] = ()
) -> PushResult:
    """Push the image ``image`` names in the store to its registry and return what was sent.

    ``name@digest`` pushes the local image of that digest to name's repository, by digest
    (``name:tag@digest`` under the tag); see :mod:`..resolve`.
    """
    ref = normalize(image)
    full = str(ref)

    def prepare() -> tuple[Descriptor, list[_Node], list[Descriptor], list[str]]:
        store.refresh()
        root = resolve(store, image).descriptor
        docs, blobs = _read_graph(store, root, f"image {image}")
        return root, docs, blobs, [*mount_from, *_mount_sources(store, ref.domain, ref.path, root)]

    root, docs, blobs, sources = await trio.to_thread.run_sync(prepare)
    async with Session(options) as session:
        client = await session.client(ref.domain)
        pusher = Pusher(store, client, ref.path, sources)
        async with task_group() as nursery:
            for blob in blobs:
                nursery.start_soon(_limited, session, pusher, blob)
        for node in docs[:-1]:
            await pusher.push_document(node, str(node.desc.digest))
        await pusher.push_document(docs[-1], ref.tag or str(ref.digest))
        # after the image, so a registry never lists a signature of something it does not have
        signatures = await push_signatures(store, client, ref.path, root.digest, pusher.push_blob,
                                           session.blob_limiter)
    return PushResult(full, root, pusher.uploaded, pusher.mounted, pusher.skipped, signatures)


async def _limited(session: Session, pusher: Pusher, blob: Descriptor) -> None:
    async with session.blob_limiter:
        await pusher.push_blob(blob)
