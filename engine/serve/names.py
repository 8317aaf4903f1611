"""Which URL repository names reach which stored repositories (pure).

The rule, so ``ig``, skopeo and mirror configurations can rely on it: a stored reference
``DOMAIN/PATH:TAG`` is served under two names,

* ``DOMAIN/PATH`` — the full name, e.g. ``ghcr.io/inspektor-gadget/gadget/trace_open``
  (so ``127.0.0.1:5050/ghcr.io/inspektor-gadget/gadget/trace_open:latest`` works), and
* ``PATH`` — the name with its domain dropped, e.g. ``inspektor-gadget/gadget/trace_open``,
  which is what a registry mirror receives (containerd ``hosts.toml``, a ``registries.conf``
  mirror, Spegel).

An exact full name always wins. A short name shared by several domains is settled by the
``ns=<domain>`` query parameter containerd adds to mirror requests, else by ig's default domain
``ghcr.io``, else it is ambiguous and unknown (use the full name). A ``registries.conf`` mirror
sends no ``ns``; give it ``location = "127.0.0.1:5050/DOMAIN"`` and it asks for full names.
Domains with a port (``localhost:5000``) are not valid URL names, so such references are
served by their path only.
"""

from __future__ import annotations

from collections.abc import Iterable

from gadgetstore.engine.reference import DEFAULT_DOMAIN, NAME_TOTAL_LENGTH_MAX, is_valid_path


def is_valid_name(name: str) -> bool:
    """The distribution-spec ``<name>`` grammar: what a URL may name."""
    return len(name) <= NAME_TOTAL_LENGTH_MAX and is_valid_path(name)


class NameTable:
    """Maps request names to full stored repository names (``domain/path``, or ``path`` alone)."""

    def __init__(self, repositories: Iterable[tuple[str, str]]) -> None:
        """``repositories`` are (domain, path) pairs; the domain is empty for domain-less refs."""
        self._full: set[str] = set()
        self._by_path: dict[str, dict[str, str]] = {}
        for domain, path in repositories:
            full = f"{domain}/{path}" if domain else path
            self._full.add(full)
            self._by_path.setdefault(path, {})[domain] = full

    def resolve(self, name: str, ns: str | None = None) -> str | None:
        """The full repository served as ``name``; None when unknown or ambiguous."""
        if name in self._full:
            return name
        domains = self._by_path.get(name)
        if not domains:
            return None
        if ns is not None and ns in domains:
            return domains[ns]
        if len(domains) == 1:
            return next(iter(domains.values()))
        return domains.get(DEFAULT_DOMAIN)

    def served_names(self) -> list[str]:
        """Every name that resolves (full names, and short names that are not ambiguous)."""
        names = {n for n in self._full if is_valid_name(n)}
        names.update(path for path in self._by_path if self.resolve(path) is not None and is_valid_name(path))
        return sorted(names)
