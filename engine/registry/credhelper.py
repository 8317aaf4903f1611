"""Docker credential helpers: ``docker-credential-<name> get|store|erase`` talking JSON over stdin/stdout.

Helpers keep secrets out of ``config.json`` (OS keychains, cloud IAM), so a login stored by
``docker login`` is often only reachable through one. These functions block on a subprocess: trio
code must call them through ``trio.to_thread.run_sync``. The reply of ``get`` *is* the secret, so
output is size-capped, never logged, and only a short first line of a failing helper's output
reaches an error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from select import PIPE_BUF
from typing import IO, Any

from ..errors import GadgetStoreError
from ..gojson import go_loads

log = logging.getLogger("gadgetstore.registry.credhelper")

MAX_OUTPUT_BYTES = 1024 * 1024  # a reply is a few hundred bytes; identity tokens stay far below this
MAX_STDERR_KEPT = 4096
TIMEOUT = 120.0  # a helper may wait for a keychain unlock prompt
TOKEN_USERNAME = "<token>"  # the protocol's marker for an identity (refresh) token in Secret
NOT_FOUND_TEXT = "credentials not found"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class CredentialHelperError(GadgetStoreError):
    pass


@dataclass(frozen=True)
class HelperCredentials:
    username: str
    secret: str = field(repr=False)


def program(name: str) -> str:
    """The helper executable on ``PATH``; the name must be a bare word so config.json cannot point at a path."""
    if not _NAME.fullmatch(name):
        raise CredentialHelperError(f"invalid credential helper name {name!r}")
    found = shutil.which(f"docker-credential-{name}")
    if found is None:
        raise CredentialHelperError(f"credential helper docker-credential-{name} not found in PATH")
    return found


def get(name: str, server_url: str) -> HelperCredentials | None:
    """The helper's credentials for ``server_url``, or None when it has none."""
    code, out, err = _run(name, "get", server_url.encode())
    if code != 0:
        if _not_found(out, err):
            return None
        raise _failure(name, "get", code, out, err)
    try:
        reply = go_loads(out)
    except ValueError:
        raise CredentialHelperError(f"credential helper docker-credential-{name} get returned invalid JSON") from None
    username = reply.get("Username") if isinstance(reply, dict) else None
    secret = reply.get("Secret") if isinstance(reply, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialHelperError(
            f"credential helper docker-credential-{name} get returned no string Username and Secret")
    if not username and not secret:
        return None
    return HelperCredentials(username, secret)


def store(name: str, server_url: str, username: str, secret: str) -> None:
    """Hand a login to the helper (``{"ServerURL","Username","Secret"}`` on stdin)."""
    payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret}).encode()
    code, out, err = _run(name, "store", payload)
    if code != 0:
        raise _failure(name, "store", code, out, err, secret)


def erase(name: str, server_url: str) -> bool:
    """Remove the helper's login for ``server_url``; False when it had none."""
    code, out, err = _run(name, "erase", server_url.encode())
    if code == 0:
        return True
    if _not_found(out, err):
        return False
    raise _failure(name, "erase", code, out, err)


def _not_found(out: bytes, err: bytes) -> bool:
    return NOT_FOUND_TEXT in (out + b"\n" + err).decode("utf-8", "replace").lower()


def _failure(name: str, action: str, code: int, out: bytes, err: bytes, secret: str = "") -> CredentialHelperError:
    """One short line of what the helper said; a JSON-looking line could carry credentials, so it is withheld."""
    text = (out.strip() or err.strip()).decode("utf-8", "replace")
    line = text.splitlines()[0].strip()[:200] if text else ""
    if secret:
        line = line.replace(secret, "<redacted>")
    if line.startswith(("{", "[")):
        line = "(output withheld)"
    detail = f": {line}" if line else ""
    return CredentialHelperError(f"credential helper docker-credential-{name} {action} failed (exit {code}){detail}")


def _run(name: str, action: str, payload: bytes) -> tuple[int, bytes, bytes]:
    """Run one helper action; stdout over the cap or a hang past ``TIMEOUT`` kills it."""
    timeout = TIMEOUT
    exe = program(name)
    log.debug("running docker-credential-%s %s", name, action)
    try:
        proc = subprocess.Popen([exe, action], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=True)
    except OSError as exc:
        raise CredentialHelperError(f"cannot run credential helper {exe}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        out, err = _communicate(proc, payload, deadline, f"docker-credential-{name} {action}")
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CredentialHelperError(
                f"credential helper docker-credential-{name} {action} did not finish within {timeout:g} s") from None
        return code, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _communicate(proc: subprocess.Popen[bytes], payload: bytes, deadline: float, what: str) -> tuple[bytes, bytes]:
    """Like ``Popen.communicate`` but bounded: stdout past the cap is an error, stderr is truncated."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    sent = 0
    with selectors.DefaultSelector() as sel:
        if payload:
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CredentialHelperError(f"credential helper {what} timed out")
            for key, _events in sel.select(remaining):
                pipe: IO[Any] = key.fileobj  # type: ignore[assignment]
                if pipe is proc.stdin:
                    try:
                        sent += os.write(pipe.fileno(), payload[sent:sent + PIPE_BUF])
                    except BrokenPipeError:  # the helper stopped reading; its exit status tells the rest
                        sent = len(payload)
                    if sent >= len(payload):
                        sel.unregister(pipe)
                        pipe.close()
                    continue
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    sel.unregister(pipe)
                    pipe.close()
                elif pipe is proc.stdout:
                    out += chunk
                    if len(out) > MAX_OUTPUT_BYTES:
                        raise CredentialHelperError(
                            f"credential helper {what} printed more than {MAX_OUTPUT_BYTES} bytes")
                else:
                    err += chunk[:max(0, MAX_STDERR_KEPT - len(err))]
    return bytes(out), bytes(err)
