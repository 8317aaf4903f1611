"""What ``image pull`` needs for bulk use: image lists, ``--all-tags`` expansion, the per-source summary.

Kept out of :mod:`.registry_cmds` so the command itself stays a thin list of options.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.fsutil import read_utf8
from gadgetstore.engine.humanize import human_bytes
from gadgetstore.engine.reference import normalize, parse, signature_tag_subject
from gadgetstore.engine.userpath import input_name, open_input

if TYPE_CHECKING:  # the registry client (trio, h11) is loaded by the commands that transfer, not at start-up
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.pull import PullResult

__all__ = ["expand_all_tags", "read_image_list", "summary_lines", "unique"]

MAX_LIST_BYTES = 1024 * 1024


class ImageListError(GadgetStoreError):
    pass


def read_image_list(path: str) -> list[str]:
    """References from ``path`` (``-`` is stdin): one per line, ``#`` starts a comment."""
    where = input_name(path)
    with open_input(Path(path), "image list", ImageListError) as source:
        text = read_utf8(source, MAX_LIST_BYTES, f"image list {where}", ImageListError)
    images = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            normalize(entry)
        except GadgetStoreError as err:
            raise ImageListError(f"{where}:{number}: {err}") from None
        images.append(entry)
    return images


def unique(images: Iterable[str]) -> list[str]:
    """First occurrence of each normalised name, in order: one pull per image."""
    seen: set[str] = set()
    out = []
    for image in images:
        key = str(normalize(image))
        if key not in seen:
            seen.add(key)
            out.append(image)
    return out


async def expand_all_tags(repositories: Sequence[str], options: TransferOptions,
                          page_size: int | None = None) -> tuple[list[str], int]:
    """``REPO:TAG`` for every tag of each repository, and how many artifact tags were skipped
    (``page_size`` None: the listing's default)."""
    from gadgetstore.engine.registry.client import Session
    from gadgetstore.engine.registry.taglist import PAGE_SIZE, list_tags

    images: list[str] = []
    skipped = 0
    async with Session(options) as session:
        for repo in repositories:
            typed = parse(repo)
            if typed.tag is not None or typed.digest is not None:
                raise ImageListError(f"--all-tags takes repositories without a tag or digest, not {repo!r}")
            ref = normalize(repo)
            for tag in await list_tags(session, ref, page_size=page_size or PAGE_SIZE):
                if signature_tag_subject(tag) is not None:  # comes with the image it signs
                    skipped += 1
                else:
                    images.append(f"{ref.repository}:{tag}")
    return images, skipped


def summary_lines(results: Sequence[PullResult]) -> list[str]:
    """Bytes per source (upstream, each mirror) over every image, for the end of a pull; nothing
    when nothing was fetched (a pull that failed at once, or found everything in the store): ig
    prints no such line, and ``Fetched 0 B`` after an error only distracts from it."""
    from gadgetstore.engine.registry.mirrors import Tallies, merge

    totals: Tallies = {}
    for result in results:
        merge(totals, result.sources)
    total = sum(t.bytes for t in totals.values())
    if total == 0:
        return []
    lines = [f"Fetched {human_bytes(total)} for {len(results)} image(s):"]
    for name, tally in sorted(totals.items(), key=lambda item: (not item[0].startswith("mirror"), item[0])):
        failed = f", {tally.failures} failed attempt(s)" if tally.failures else ""
        lines.append(f"  {name}: {human_bytes(tally.bytes)} ({tally.bytes} bytes, {tally.items} item(s){failed})")
    return lines
