"""``registries.toml``: mirrors and settings per upstream registry (pure: parsing and validation only).

In the spirit of containerd's ``hosts.toml``, but one file for every registry::

    [registry."registry.corp:5000"]
    cert_dir = "/etc/gadgetstore/certs/corp"   # its CAs (*.crt) and client pair (*.cert, *.key);
                                               # --cert-dir, when given, wins

    [[registry."ghcr.io".mirror]]
    url = "http://10.0.0.7:5050"       # a `gadgetstore serve` peer
    insecure = true                    # plain HTTP; required for http:// URLs
    path_prefix = "ghcr.io"            # ask for /v2/ghcr.io/<path>/... (full names on a peer)

    [[registry."ghcr.io".mirror]]
    url = "https://cache.kube-system.svc:5000"   # a docker-registry pull-through cache
    ca_file = "/etc/gadgetstore/cache-ca.crt"    # trusted for this mirror only
    resolve = false                              # tags are still resolved at the upstream

Mirrors are tried in order for content addressed by digest; a mirror with ``resolve = true`` may
also answer tag lookups, signature tags and referrers included (it then decides which digest a tag
means — trust it accordingly). The upstream is always the last resort. Unknown keys are errors, so
a typo never silently disables a mirror. Where the file is: ``--registries-config``, then
``$GADGETSTORE_REGISTRIES_CONFIG``, then ``/etc/gadgetstore/registries.toml`` if it exists.

Peers are a fleet of ``gadgetstore serve`` nodes that pull the same gadgets at the same time::

    [peers]
    urls = ["http://10.0.0.7:5050", "http://10.0.0.8:5050"]   # the same list on every node
    self = "http://10.0.0.7:5050"   # optional: else $GADGETSTORE_PEER_SELF, else the local address
    wait = 15.0                     # seconds to wait for a blob's owner before asking elsewhere (at most 50)
    registries = ["ghcr.io"]        # optional: the upstreams this applies to (default: all)

Each blob has one owner among them (see :mod:`.peers`); only the owner fetches it from the
mirrors or the upstream, the others from the owner.

Every transfer (pull, push, login) is held to a floor (see :mod:`.stall`)::

    [transfer]
    stall_floor = "1KiB/s"   # bytes per second, or a rate such as "10kB/s"; 0 turns the check off
    stall_window = "30s"     # seconds, or a duration such as "1m"
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import GadgetStoreError
from ..fsutil import read_utf8
from ..humanize import parse_duration, parse_rate
from ..reference import is_valid_path
from .stall import StallPolicy

DEFAULT_PATH = Path("/etc/gadgetstore/registries.toml")
ENV_VAR = "GADGETSTORE_REGISTRIES_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_MIRRORS = 16
_MIRROR_KEYS = {"url", "insecure", "ca_file", "path_prefix", "resolve"}
_PEER_KEYS = {"urls", "self", "wait", "registries"}
_REGISTRY_KEYS = {"mirror", "cert_dir"}
_TRANSFER_KEYS = {"stall_floor", "stall_window"}
MAX_PEERS = 1024
MAX_CONFIGURED_PEER_WAIT = 50.0  # the largest [peers] wait: under serve's MAX_BLOB_HOLD and the read timeout
DEFAULT_PEER_WAIT = 15.0


class RegistriesConfigError(GadgetStoreError):
    pass


@dataclass(frozen=True)
class Mirror:
    """One mirror of one upstream; ``base_url`` is ``scheme://host[:port]`` without a path."""

    base_url: str
    insecure: bool = False
    ca_file: Path | None = None
    path_prefix: str = ""
    resolve: bool = False

    @property
    def label(self) -> str:
        """How summaries and messages name this mirror."""
        return self.base_url + (f"/{self.path_prefix}" if self.path_prefix else "")


@dataclass(frozen=True)
class Peers:
    """``gadgetstore serve`` nodes sharing blobs; ``urls`` are ``http://host:port``, in config order."""

    urls: tuple[str, ...]
    self_url: str | None = None
    wait: float = DEFAULT_PEER_WAIT
    registries: frozenset[str] | None = None  # None: every upstream

    def applies_to(self, domain: str) -> bool:
        return self.registries is None or domain in self.registries


@dataclass(frozen=True)
class RegistriesConfig:
    mirrors: dict[str, tuple[Mirror, ...]] = field(default_factory=dict)
    source: Path | None = None
    peers: Peers | None = None
    cert_dirs: dict[str, Path] = field(default_factory=dict)  # per upstream registry
    stall: StallPolicy = field(default_factory=StallPolicy)

    def mirrors_for(self, domain: str) -> tuple[Mirror, ...]:
        return self.mirrors.get(domain, ())

    def cert_dir_for(self, domain: str) -> Path | None:
        return self.cert_dirs.get(domain)

    def all_cert_dirs(self) -> list[Path]:
        return sorted(set(self.cert_dirs.values()))


def _base_url(url: str, where: str, default_scheme: str) -> tuple[str, str]:
    """(scheme, netloc) of ``http(s)://host[:port]`` or ``host[:port]``; anything more is an error."""
    explicit = "://" in url
    parts = urlsplit(url if explicit else f"//{url}")
    scheme = parts.scheme.lower() if explicit else default_scheme
    if scheme not in ("http", "https"):
        raise RegistriesConfigError(f"{where}: url {url!r} must be http(s)://HOST[:PORT] or HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        raise RegistriesConfigError(f"{where}: url {url!r} has an invalid port") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise RegistriesConfigError(f"{where}: url {url!r} must be just scheme, host and port")
    if parts.path not in ("", "/"):
        raise RegistriesConfigError(f"{where}: url {url!r} has a path; use path_prefix for that")
    host = parts.hostname.lower()
    return scheme, (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")


def _table(raw: Any, where: str, what: str, keys: set[str]) -> dict[str, Any]:
    """``raw`` as a TOML table with only ``keys``: a typo is an error, never a silently ignored setting."""
    if not isinstance(raw, dict):
        raise RegistriesConfigError(f"{where}: {what} must be a table")
    unknown = set(raw) - keys
    if unknown:
        raise RegistriesConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return raw


def _path(raw: Any, key: str, where: str, base_dir: Path) -> Path:
    """A path setting; a relative one is relative to the config file's directory."""
    if not isinstance(raw, str) or not raw:
        raise RegistriesConfigError(f"{where}: {key} must be a path")
    return Path(raw) if os.path.isabs(raw) else base_dir / raw


def _transfer(raw: Any, where: str) -> StallPolicy:
    raw = _table(raw, where, "[transfer]", _TRANSFER_KEYS)
    floor, window = StallPolicy().floor, StallPolicy().window
    try:
        if "stall_floor" in raw:
            floor = _number_or(raw["stall_floor"], parse_rate, "stall_floor")
        if "stall_window" in raw:
            window = _number_or(raw["stall_window"], parse_duration, "stall_window")
    except ValueError as err:
        raise RegistriesConfigError(f"{where}: {err}") from None
    if floor < 0 or window <= 0:
        raise RegistriesConfigError(f"{where}: stall_floor must be 0 or more and stall_window more than 0")
    return StallPolicy(floor, window)


def _number_or(value: Any, parse: Callable[[str], float], key: str) -> float:
    """A TOML number as it is, or a string with units through ``parse``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} must be a number or a string such as \"1KiB/s\" or \"30s\"")
    return float(parse(value)) if isinstance(value, str) else float(value)


def _mirror(raw: Any, where: str, base_dir: Path) -> Mirror:
    raw = _table(raw, where, "a mirror", _MIRROR_KEYS)
    url = raw.get("url")
    if not isinstance(url, str) or not url.strip():
        raise RegistriesConfigError(f"{where}: url is required")
    for key in ("insecure", "resolve"):
        if key in raw and not isinstance(raw[key], bool):
            raise RegistriesConfigError(f"{where}: {key} must be true or false")
    insecure = bool(raw.get("insecure", False))
    url = url.strip()
    scheme, netloc = _base_url(url, where, "http" if insecure else "https")
    if scheme == "http" and not insecure:
        raise RegistriesConfigError(f"{where}: url {url!r} is plain HTTP; say insecure = true to allow it")
    if scheme == "https" and insecure:
        raise RegistriesConfigError(f"{where}: url {url!r} is https but insecure = true asks for plain HTTP")
    prefix = raw.get("path_prefix", "")
    if not isinstance(prefix, str):
        raise RegistriesConfigError(f"{where}: path_prefix must be a string")
    prefix = prefix.strip("/")
    if prefix and not is_valid_path(prefix):
        raise RegistriesConfigError(f"{where}: path_prefix {prefix!r} is not a valid repository path")
    ca_path: Path | None = None
    if "ca_file" in raw:
        ca_path = _path(raw["ca_file"], "ca_file", where, base_dir)
        if scheme != "https":
            raise RegistriesConfigError(f"{where}: ca_file needs an https mirror")
    return Mirror(f"{scheme}://{netloc}", insecure, ca_path, prefix, bool(raw.get("resolve", False)))


def _peer_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise RegistriesConfigError(f"{where}: a peer url must be a non-empty string")
    scheme, netloc = _base_url(url.strip(), where, "http")
    if scheme != "http":
        raise RegistriesConfigError(f"{where}: peer {url!r} must be plain http:// (gadgetstore serve has no TLS)")
    host = urlsplit(f"//{netloc}").hostname or ""
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name, not an address
        unspecified = False
    if unspecified:
        raise RegistriesConfigError(f"{where}: peer {url!r} is the unspecified address; give the address other "
                                    f"nodes reach this one at")
    return f"http://{netloc}"


def _peers(raw: Any, where: str) -> Peers:
    raw = _table(raw, where, "[peers]", _PEER_KEYS)
    urls = raw.get("urls")
    if not isinstance(urls, list) or not urls:
        raise RegistriesConfigError(f"{where}: urls must be a non-empty list of peer URLs")
    if len(urls) > MAX_PEERS:
        raise RegistriesConfigError(f"{where}: more than {MAX_PEERS} peers")
    normalized = tuple(_peer_url(u, where) for u in urls)
    if len(set(normalized)) != len(normalized):
        raise RegistriesConfigError(f"{where}: a peer is listed twice")
    self_url = _peer_url(raw["self"], where) if "self" in raw else None
    if self_url is not None and self_url not in normalized:
        raise RegistriesConfigError(f"{where}: self {self_url!r} is not one of the urls")
    wait = raw.get("wait", DEFAULT_PEER_WAIT)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_CONFIGURED_PEER_WAIT:
        raise RegistriesConfigError(f"{where}: wait must be a number of seconds from 0 to "
                                    f"{MAX_CONFIGURED_PEER_WAIT:.0f} "
                                    f"(an owner holds a request at most 60 s, and the read timeout is 60 s)")
    registries = raw.get("registries")
    if registries is not None and (not isinstance(registries, list)
                                   or not all(isinstance(r, str) and r for r in registries)):
        raise RegistriesConfigError(f"{where}: registries must be a list of registry names")
    return Peers(normalized, self_url, float(wait), frozenset(registries) if registries is not None else None)


def parse(text: str, source: Path | None = None) -> RegistriesConfig:
    """Validate ``text``; relative ``ca_file`` paths are relative to the file's directory."""
    where = str(source) if source else "registries config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RegistriesConfigError(f"{where}: not valid TOML: {err}") from None
    unknown = set(data) - {"registry", "peers", "transfer"}
    if unknown:
        raise RegistriesConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    registries = data.get("registry", {})
    if not isinstance(registries, dict):
        raise RegistriesConfigError(f"{where}: [registry] must be a table of registries")
    base_dir = source.parent if source else Path.cwd()
    mirrors: dict[str, tuple[Mirror, ...]] = {}
    cert_dirs: dict[str, Path] = {}
    for domain, entry in registries.items():
        here = f"{where}: registry {domain!r}"
        entry = _table(entry, here, "a registry", _REGISTRY_KEYS)
        if "cert_dir" in entry:
            cert_dirs[domain] = _path(entry["cert_dir"], "cert_dir", here, base_dir)
        raw = entry.get("mirror", [])
        if not isinstance(raw, list):
            raise RegistriesConfigError(f"{here}: mirror must be an array of tables ([[registry.\"…\".mirror]])")
        if len(raw) > MAX_MIRRORS:
            raise RegistriesConfigError(f"{here}: more than {MAX_MIRRORS} mirrors")
        mirrors[domain] = tuple(_mirror(m, f"{here} mirror {i + 1}", base_dir) for i, m in enumerate(raw))
    peers = _peers(data["peers"], f"{where}: [peers]") if "peers" in data else None
    stall = _transfer(data["transfer"], f"{where}: [transfer]") if "transfer" in data else StallPolicy()
    return RegistriesConfig(mirrors, source, peers, cert_dirs, stall)


def config_path(explicit: Path | None) -> tuple[Path, bool]:
    """(path, required): an explicit or environment path must exist; the default may be absent."""
    if explicit is not None:
        return explicit, True
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env), True
    return DEFAULT_PATH, False


def load(explicit: Path | None = None) -> RegistriesConfig:
    """Read the config that applies; an absent default file means no mirrors."""
    path, required = config_path(explicit)
    try:
        with open(path, "rb") as f:
            text = read_utf8(f, MAX_CONFIG_BYTES, f"registries config {path}", RegistriesConfigError)
    except FileNotFoundError:
        if required:
            raise RegistriesConfigError(f"registries config {path} does not exist") from None
        return RegistriesConfig()
    except OSError as err:
        raise RegistriesConfigError(f"cannot read registries config {path}: {err.strerror}") from None
    return parse(text, path)
