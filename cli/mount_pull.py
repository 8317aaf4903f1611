"""Pull on access for ``gadgetstore mount --pull-on-access``: the engine's pull, run as ``image pull``
runs it (same credentials, registries config, store policy), each pull bounded by ``--timeout``.

When the registry answers that an image does not exist (404), one request for a single page of
the repository's tags tells an unknown tag (the repository exists: no such image) from a path that
may still lead to a deeper repository (``<registry>/org/team/<repo>/<tag>`` is walked one component
at a time). Any other failure, a refused login (401/403) included, is the answer: no such image.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import NotFoundInRegistry
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.signatures import VerifyPolicy
from gadgetstore.engine.registry.taglist import fetch_tag_page
from gadgetstore.engine.store import Store
from gadgetstore.fusefs.pulls import Fetch, Outcome

from .deadline import CommandDeadline


def make_fetch(store_root: Path, options: TransferOptions, policy: VerifyPolicy | None,
               timeout: float) -> Fetch:
    """The fetch of :class:`gadgetstore.fusefs.pulls.OnAccess`, pulling into the store at ``store_root``
    (opened for writing here, apart from the view's read-only reader; created if missing)."""
    store = Store.open(store_root)

    async def fetch(image: str, may_be_prefix: bool) -> Outcome:
        deadline = CommandDeadline(timeout)
        bounded = dataclasses.replace(options, in_flight=deadline.in_flight)
        try:
            await deadline.bounded(functools.partial(pull_image, store, image, bounded, verify=policy))
        except NotFoundInRegistry:
            if may_be_prefix and not await deadline.bounded(_repository_exists, image, bounded):
                return Outcome.PREFIX
            raise
        return Outcome.PULLED

    return fetch


async def _repository_exists(image: str, options: TransferOptions) -> bool:
    """Whether the registry has ``image``'s repository: False only when it says 404 to its tag list."""
    ref = normalize(image)
    async with Session(options) as session:
        client = await session.client(ref.domain)
        try:
            url = client.url(f"/v2/{ref.path}/tags/list?n=1")
            await fetch_tag_page(client, ref.path, url, f"{ref.domain}/{ref.path}")
        except NotFoundInRegistry:
            return False
        except GadgetStoreError:
            return True  # no answer either way: the pull's own error is the one to report
    return True
