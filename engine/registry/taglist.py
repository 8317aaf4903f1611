"""Listing a repository's tags (``GET /v2/<name>/tags/list``) for ``image pull --all-tags``.

Pages are followed as :mod:`.paging` allows (``Link: <…>; rel="next"``, on the registry's own
origin), and everything is bounded: pages, tags and bytes per page, so a hostile or broken registry
cannot keep us listing forever.
"""

from __future__ import annotations

from ..gojson import go_loads
from ..reference import Reference, is_valid_tag
from .client import RegistryClient, Session
from .errors import RegistryError
from .paging import Pages, next_link

PAGE_SIZE = 1000
MAX_PAGES = 100
MAX_TAGS = 10_000
MAX_PAGE_BYTES = 4 * 1024 * 1024


def _page_tags(data: bytes, where: str) -> list[str]:
    try:
        obj = go_loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{where}: tag list is not JSON") from None
    tags = obj.get("tags") if isinstance(obj, dict) else None
    if tags is None:
        return []  # some registries send "tags": null for an empty repository
    if not isinstance(tags, list) or not all(isinstance(t, str) and is_valid_tag(t) for t in tags):
        raise RegistryError(f"{where}: tag list has invalid entries")
    return tags


async def fetch_tag_page(client: RegistryClient, repo: str, url: str, where: str) -> tuple[list[str], str | None]:
    """One page of ``repo``'s tags and the absolute URL of the next page, if the registry gave one."""
    resp = await client.request("GET", url, scopes=(f"repository:{repo}:pull",), what=where)
    async with resp:
        data = await resp.read(MAX_PAGE_BYTES)
        links = resp.header_all("link")
    return _page_tags(data, where), next_link(links, url)


async def list_repository_tags(client: RegistryClient, repo: str, where: str, *, page_size: int = PAGE_SIZE,
                               max_tags: int = MAX_TAGS, max_pages: int = MAX_PAGES) -> tuple[list[str], bool]:
    """Every tag of ``repo``, in the registry's order, without duplicates; and whether the last page
    was shorter than asked for (a registry that cuts a page without a next link looks whole otherwise)."""
    url = client.url(f"/v2/{repo}/tags/list?n={page_size}")
    tags: dict[str, None] = {}
    pages = Pages(url, client.origin, where, "tags", max_pages)
    while True:
        page, following = await fetch_tag_page(client, repo, url, where)
        for tag in page:
            tags[tag] = None
        if len(tags) > max_tags:
            raise RegistryError(f"{where}: more than {max_tags} tags")
        if following is None:
            return list(tags), len(page) < page_size
        url = pages.follow(following)


async def list_tags(session: Session, ref: Reference, *, page_size: int = PAGE_SIZE,
                    max_tags: int = MAX_TAGS, max_pages: int = MAX_PAGES) -> list[str]:
    """Every tag of ``ref``'s repository, in the registry's order, without duplicates."""
    client = await session.client(ref.domain)
    tags, _ = await list_repository_tags(client, ref.path, f"tags of {ref.repository}", page_size=page_size,
                                         max_tags=max_tags, max_pages=max_pages)
    return tags
