"""Credentials in a docker ``config.json`` (``{"auths": {"<registry>": {"auth": base64(user:pass)}}}``).

As in docker, a credential helper named by ``credHelpers[<registry>]``, else by ``credsStore``, owns a
registry's login: it is asked instead of ``auths`` (its "not found" means no credentials), ``login``
stores through it and ``logout`` erases through it, leaving no secret in the file.

Where: ``--authfile``, then ``REGISTRY_AUTH_FILE``, then ``/var/lib/gadgetstore/config.json`` (root) or
``$XDG_DATA_HOME/gadgetstore/config.json``; for reading only, a missing default falls back to the
docker CLI's file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), as ``ig`` does.
Writes are atomic, mode 0600, and a directory we create is 0700. Passwords are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GadgetStoreError
from ..gojson import go_loads
from ..paths import SYSTEM_ROOT, data_home
from ..userpath import is_stdio, write_output
from . import credhelper

MAX_AUTH_FILE_BYTES = 4 * 1024 * 1024
DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"  # what docker hands helpers for Docker Hub


class AuthFileError(GadgetStoreError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<redacted>)"


def default_auth_file() -> Path:
    if os.geteuid() == 0:
        return SYSTEM_ROOT / "config.json"
    return data_home() / "gadgetstore" / "config.json"


def docker_auth_file() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def auth_file_path(explicit: Path | None = None, for_write: bool = False) -> Path:
    """The file to use; only an implicit default falls back to docker's file when reading."""
    if explicit is not None:
        return explicit
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    default = default_auth_file()
    if not for_write and not default.exists():
        return docker_auth_file()
    return default


def registry_key(registry: str) -> str:
    """``https://index.docker.io/v1/`` and ``docker.io`` name the same registry as ``index.docker.io``."""
    text = registry.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    return "index.docker.io" if text in DOCKER_HUB_KEYS else text


def load(path: Path, missing_ok: bool = True) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_AUTH_FILE_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise AuthFileError(f"auth file {path} does not exist") from None
    except OSError as err:
        raise AuthFileError(f"cannot read auth file {path}: {err.strerror}") from None
    if len(data) > MAX_AUTH_FILE_BYTES:
        raise AuthFileError(f"auth file {path} is larger than {MAX_AUTH_FILE_BYTES} bytes")
    if not data.strip():
        return {}
    try:
        config = go_loads(data)
    except ValueError:
        raise AuthFileError(f"auth file {path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise AuthFileError(f"auth file {path} is not a JSON object")
    return config


def _entries(config: dict[str, Any]) -> dict[str, Any]:
    auths = config.get("auths")
    return auths if isinstance(auths, dict) else {}


def _find_key(config: dict[str, Any], registry: str) -> str | None:
    wanted = registry_key(registry)
    for key in _entries(config):
        if registry_key(key) == wanted:
            return key
    return None


def lookup(config: dict[str, Any], registry: str) -> Credentials | None:
    key = _find_key(config, registry)
    if key is None:
        return None
    entry = _entries(config)[key]
    if not isinstance(entry, dict):
        return None
    identity = entry.get("identitytoken") if isinstance(entry.get("identitytoken"), str) else ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFileError(f"auth entry for {key} is not valid base64 of user:password") from None
        return Credentials(user, password, identity or "")
    plain_user = entry.get("username")
    plain_password = entry.get("password")
    if isinstance(plain_user, str) and isinstance(plain_password, str):
        return Credentials(plain_user, plain_password, identity or "")
    return Credentials(identity_token=identity) if identity else None


def helper_for(config: dict[str, Any], registry: str) -> str | None:
    """The credential helper that owns ``registry``: ``credHelpers`` (exact key first), else ``credsStore``."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        exact = helpers.get(registry)
        if isinstance(exact, str) and exact:
            return exact
        wanted = registry_key(registry)
        for key, name in helpers.items():
            if registry_key(key) == wanted and isinstance(name, str) and name:
                return name
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def helper_server_url(registry: str) -> str:
    """The ServerURL docker uses with helpers: the host[:port], or its legacy URL for Docker Hub."""
    key = registry_key(registry)
    return DOCKER_HUB_SERVER_URL if key == "index.docker.io" else key


def resolve(config: dict[str, Any], registry: str) -> Credentials | None:
    """The credentials for ``registry``: from its helper if one is configured, else from ``auths``.

    Blocks on the helper's subprocess: async callers use ``trio.to_thread.run_sync``.
    """
    helper = helper_for(config, registry)
    if helper is None:
        return lookup(config, registry)
    found = credhelper.get(helper, helper_server_url(registry))
    if found is None:
        return None
    if found.username == credhelper.TOKEN_USERNAME:
        return Credentials(identity_token=found.secret)
    return Credentials(found.username, found.secret)


def credentials_for(registry: str, authfile: Path | None) -> Credentials | None:
    """What pull/push send to ``registry``; an explicit ``--authfile`` must exist.

    May run a credential helper: call it from trio code only through ``trio.to_thread.run_sync``.
    """
    path = auth_file_path(authfile)
    return resolve(load(path, missing_ok=authfile is None), registry)


def _save(path: Path, config: dict[str, Any]) -> None:
    parent = path.parent
    if not parent.exists():
        os.makedirs(parent, 0o700, exist_ok=True)
        os.chmod(parent, 0o700)
    # Read and written back, so "-" is a file of that name here, never standard output.
    target = path.absolute() if is_stdio(path) else path
    write_output(target, (json.dumps(config, indent="\t") + "\n").encode(), 0o600)


def store_credentials(path: Path, registry: str, username: str, password: str) -> str | None:
    """Store a login; with a helper configured it gets the secret and the file only an empty marker entry.

    Returns the helper's name, if one was used.
    """
    config = load(path)
    auths = dict(_entries(config))
    old = _find_key(config, registry)
    if old is not None:
        del auths[old]
    helper = helper_for(config, registry)
    if helper is not None:
        credhelper.store(helper, helper_server_url(registry), username, password)
        auths[registry_key(registry)] = {}  # as docker: the login is listed, its secret lives in the helper
    else:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        auths[registry_key(registry)] = {"auth": token}
    config["auths"] = auths
    _save(path, config)
    return helper


def remove_credentials(path: Path, registry: str) -> bool:
    """Forget a login in the file and in its helper; False when neither had one."""
    config = load(path)
    helper = helper_for(config, registry)
    erased = credhelper.erase(helper, helper_server_url(registry)) if helper is not None else False
    key = _find_key(config, registry)
    if key is None:
        return erased
    auths = dict(_entries(config))
    del auths[key]
    config["auths"] = auths
    _save(path, config)
    return True


def remove_all(path: Path) -> list[str]:
    """Forget every login the file knows of, erasing helper-held ones too.

    Only registries named in ``auths`` or ``credHelpers`` are erased: a ``credsStore`` keychain also
    holds other tools' logins, so it is never listed and wiped. Returns one warning per helper failure.
    """
    config = load(path)
    known = list(_entries(config))
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        known += [key for key in helpers if isinstance(key, str)]
    warnings: list[str] = []
    done: set[tuple[str, str]] = set()
    for key in known:
        helper = helper_for(config, key)
        url = helper_server_url(key)
        if helper is None or (helper, url) in done:
            continue
        done.add((helper, url))
        try:
            credhelper.erase(helper, url)
        except credhelper.CredentialHelperError as err:
            warnings.append(f"could not erase credentials for {registry_key(key)}: {err}")
    config["auths"] = {}
    _save(path, config)
    return warnings
