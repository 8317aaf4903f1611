"""Pull on access: a lookup of an image that is not in the store pulls it, once, then shows it.

Which paths are images (pure): the last component is the tag and everything between the registry
and the tag is the repository. Short names are official gadgets, ``<name>/<tag>``. Under a
registry the repository may be any number of components deep, so ``<registry>/a/b`` is tried as
the image ``<registry>/a:b``; when the registry says (404) it has no repository ``<registry>/a`` at
all, ``b`` is kept as a directory on the way to a deeper one (the fetcher tells, see :class:`Outcome`).
Under ``ghcr.io/inspektor-gadget/gadget`` the depth is known and nothing is tried on the way.

The coordinator (:class:`OnAccess`) runs one fetch per reference however many lookups wait for
it; different references are fetched concurrently. An outcome other than "pulled" is remembered
for :data:`REMEMBER` seconds, so a tool probing a missing name does not pull it again and again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gadgetstore.engine import reference
from gadgetstore.engine.errors import GadgetStoreError

log = logging.getLogger(__name__)

REMEMBER = 5.0
"""Seconds a failed or not-an-image answer is reused before the registry is asked again."""
OFFICIAL = tuple(reference.OFFICIAL_PREFIX.strip("/").split("/"))


class Outcome(enum.Enum):
    PULLED = "pulled"  # the image is in the store now
    ABSENT = "absent"  # no such image (or the pull failed): ENOENT
    PREFIX = "prefix"  # not an image, but a deeper repository may start here


@dataclass(frozen=True)
class Candidate:
    """What a path that is not in the store could be."""

    reference: str | None
    """The image to try, as a full reference (``trace_tcp/v1`` is ``ghcr.io/…/trace_tcp:v1``, one
    pull whichever path asked), or None when the path can only be a directory on the way to one."""
    may_be_prefix: bool
    """Whether the path may also be a directory on the way to a deeper repository."""


Fetch = Callable[[str, bool], Awaitable[Outcome]]
"""``fetch(reference, may_be_prefix)``: pull the image (bounded by the mount's ``--timeout``), or
say it is absent or, when ``may_be_prefix``, that its repository does not exist (a prefix).
Raises :class:`GadgetStoreError` when the pull fails."""


def candidate(path: tuple[str, ...]) -> Candidate | None:
    """What ``path`` (below the mount root) could lead to; None when no image can be there."""
    if not path:
        return None
    first, rest = path[0], path[1:]
    if not reference.is_registry_component(first):  # a short name: <name>/<tag>
        if len(path) == 1:
            return Candidate(None, True) if reference.is_valid_path(first) else None
        ref = _full_reference(f"{first}:{rest[0]}") if len(path) == 2 else None
        return Candidate(ref, False) if ref else None
    if not _full_reference(f"{first}/x:x"):
        return None  # not a registry name
    official = path[: len(OFFICIAL)] == OFFICIAL[: len(path)]
    official_image = len(OFFICIAL) + 2  # ghcr.io/inspektor-gadget/gadget/<name>/<tag>
    as_dir = not rest or reference.is_valid_path("/".join(rest))
    if len(path) < 3 or (official and len(path) < official_image):
        return Candidate(None, True) if as_dir else None
    text = f"{'/'.join(path[:-1])}:{path[-1]}"
    ref = _full_reference(text)
    may_be_prefix = as_dir and not (official and len(path) == official_image)
    if ref == text:  # ig would read ghcr.io/<name>:<tag> as an official gadget: not what this path says
        return Candidate(ref, may_be_prefix)
    return Candidate(None, True) if may_be_prefix else None


def _full_reference(text: str) -> str | None:
    """``text`` normalised as ig does, if it is a valid reference by tag."""
    try:
        ref = reference.normalize(text)
    except GadgetStoreError:
        return None
    return str(ref) if ref.tag is not None and ref.digest is None else None


class OnAccess:
    def __init__(self, fetch: Fetch, remember: float = REMEMBER) -> None:
        self._fetch = fetch
        self._remember = remember
        self._inflight: dict[str, trio.Event] = {}
        self._outcomes: dict[str, tuple[Outcome, float]] = {}

    async def resolve(self, found: Candidate) -> Outcome:
        """The outcome for ``found``: a pull when needed, shared with every lookup of the same image."""
        if found.reference is None:
            return Outcome.PREFIX
        key = found.reference
        while True:
            remembered = self._outcomes.get(key)
            if remembered is not None and trio.current_time() - remembered[1] < self._remember:
                return remembered[0]
            event = self._inflight.get(key)
            if event is None:
                break
            log.info("waiting for the pull of %s already under way", key)
            await event.wait()
            if key in self._outcomes:
                continue
            return Outcome.PULLED
        event = self._inflight[key] = trio.Event()
        try:
            outcome = await self._run(found)
            if outcome is not Outcome.PULLED:
                self._outcomes[key] = (outcome, trio.current_time())
            else:
                self._outcomes.pop(key, None)
            return outcome
        finally:
            del self._inflight[key]
            event.set()

    async def _run(self, found: Candidate) -> Outcome:
        assert found.reference is not None
        log.info("pulling %s on access", found.reference)
        try:
            outcome = await self._fetch(found.reference, found.may_be_prefix)
        except GadgetStoreError as err:
            log.warning("pull on access of %s failed: %s", found.reference, err)
            return Outcome.ABSENT
        except Exception:  # a bug must cost this lookup, not the mount
            log.exception("pull on access of %s failed", found.reference)
            return Outcome.ABSENT
        if outcome is Outcome.PREFIX and not found.may_be_prefix:
            outcome = Outcome.ABSENT
        log.info("pull on access of %s: %s", found.reference, outcome.value)
        return outcome
