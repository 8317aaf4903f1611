"""One immutable snapshot of the journal, laid out as the directory tree of the FUSE view.

Full references become ``<registry>/<repo…>/<tag>``; official gadgets
(``ghcr.io/inspektor-gadget/gadget/*``) also get their short name at the top. When two
references want the same path, the first one wins in this order: full references sorted, then
short names sorted. A path that is an image hides anything a longer reference would put below it
(a tag directory holds only image files). Names that would shadow ``.store``, ``README`` or ``tags`` and
short names that look like a registry are not offered.

Times come from the journal: an image knows when its tag was committed, and a directory above
images shows the newest commit below it (a directory's time is when its entries last changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GadgetStoreError

from .nodes import ImageRef

STORE_DIR = ".store"
README = "README"
TAGS = "tags"
RESERVED = frozenset({STORE_DIR, README, TAGS})

Path = tuple[str, ...]


@dataclass(frozen=True)
class MountCatalog:
    """The directory tree of the FUSE view for one journal snapshot (see the module's rules)."""

    images: Mapping[Path, ImageRef] = field(default_factory=dict)
    dirs: Mapping[Path, frozenset[str]] = field(default_factory=lambda: {(): frozenset()})
    roots: Mapping[Digest, Descriptor] = field(default_factory=dict)
    """Every tagged or pinned root, by digest (what ``by-digest`` lists without reading blobs)."""
    typed_by_digest: Mapping[Digest, str] = field(default_factory=dict)
    dir_times: Mapping[Path, int] = field(default_factory=dict)
    """The newest commit time of the images below each directory that has one."""
    first_commits: Mapping[Digest, int] = field(default_factory=dict)
    """The earliest commit time of the tags of each root (what its ``by-digest`` entry shows)."""
    tags: tuple[tuple[str, Descriptor], ...] = ()
    """Every tag of the journal whose descriptor reads, sorted (what the ``tags`` file lists)."""

    @classmethod
    def build(cls, tags: Mapping[str, Any], pins: Iterable[Any] = (),
              tag_times: Mapping[str, int] | None = None) -> MountCatalog:
        """``tags``/``pins`` are the journal's raw descriptor JSON; unusable entries are skipped.
        ``tag_times`` are the journal's commit times (ns) by reference."""
        tag_times = tag_times or {}
        full: list[tuple[Path, ImageRef]] = []
        short: list[tuple[Path, ImageRef]] = []
        roots: dict[Digest, Descriptor] = {}
        typed_by_digest: dict[Digest, str] = {}
        first_commits: dict[Digest, int] = {}
        every: list[tuple[str, Descriptor]] = []
        for ref_text in sorted(tags):
            try:
                desc = Descriptor.from_json(tags[ref_text], f"tag {ref_text}")
            except GadgetStoreError:
                continue
            every.append((ref_text, desc))
            if reference.signature_tag_subject(ref_text) is not None:
                continue
            try:
                ref = reference.parse(ref_text)
            except GadgetStoreError:
                continue
            if ((ref.tag is None and ref.digest is not None)
                    or reference.signature_tag_subject(ref.tag or "") is not None):
                continue  # digest-only references and cosign/referrers signature tags are not images
            tag = ref.tag_or_latest
            typed = f"{ref.repository}:{tag}"
            committed = tag_times.get(ref_text)
            roots.setdefault(desc.digest, desc)
            typed_by_digest.setdefault(desc.digest, typed)
            if committed is not None:
                first_commits[desc.digest] = min(committed, first_commits.get(desc.digest, committed))
            full.append(((*ref.repository.split("/"), tag), ImageRef(typed, desc, committed)))
            name = reference.display_repository(ref.repository)
            if name != ref.repository and not reference.is_registry_component(name.split("/")[0]):
                short.append(((*name.split("/"), tag), ImageRef(f"{name}:{tag}", desc, committed)))
        for raw in pins:
            try:
                desc = Descriptor.from_json(raw, "pin")
            except GadgetStoreError:
                continue
            roots.setdefault(desc.digest, desc)
        images: dict[Path, ImageRef] = {}
        for path, image in full + short:
            if path[0] not in RESERVED and path not in images:
                images[path] = image
        return cls._layout(images, roots, typed_by_digest, first_commits, tuple(every))

    @classmethod
    def _layout(
        cls, candidates: dict[Path, ImageRef], roots: dict[Digest, Descriptor], typed: dict[Digest, str],
        first_commits: dict[Digest, int], every: tuple[tuple[str, Descriptor], ...],
    ) -> MountCatalog:
        dirs: dict[Path, set[str]] = {(): set()}
        images: dict[Path, ImageRef] = {}
        times: dict[Path, int] = {}
        # Shorter paths first, so an image at a/b is placed before a/b/latest is considered.
        for path in sorted(candidates, key=lambda p: (len(p), p)):
            prefixes = [path[:i] for i in range(1, len(path))]
            if any(p in images for p in prefixes) or path in dirs:
                continue
            image = images[path] = candidates[path]
            for i in range(len(path)):
                dirs.setdefault(path[:i], set()).add(path[i])
                if image.committed_ns is not None:
                    times[path[:i]] = max(image.committed_ns, times.get(path[:i], image.committed_ns))
        return cls(images, {p: frozenset(names) for p, names in dirs.items()}, roots, typed, times, first_commits,
                   every)

    def typed_for(self, digest: Digest) -> str:
        """The name extra-info uses for ``by-digest/<alg>/<hex>``: a tag of that digest if there is one."""
        return self.typed_by_digest.get(digest) or f"by-digest@{digest}"
