"""Docker credential helpers (``credHelpers``/``credsStore``) through a fake ``docker-credential-*`` script."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.registry import authfile, credhelper
from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.credhelper import CredentialHelperError
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.cli import run_cli as run
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, unique_repo

SECRET = "hunter2-helper-only"

# A helper keeping its logins in <name>.json next to itself; FAKE_HELPER_MODE makes it misbehave.
FAKE_HELPER = """\
import json, os, sys, time
name = os.path.basename(sys.argv[0])
here = os.path.dirname(os.path.abspath(sys.argv[0]))
db_path = os.path.join(here, name + ".json")
action = sys.argv[1]
data = sys.stdin.read()
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(json.dumps([name, action, data if action != "store" else json.loads(data)["ServerURL"]]) + "\\n")
mode = os.environ.get("FAKE_HELPER_MODE", "")
if mode == "garbage":
    print("Username: " + os.environ.get("FAKE_HELPER_SECRET", "") + " <-- not json")
    sys.exit(0)
if mode == "nested":
    sys.stdout.write("[" * 200000 + "]" * 200000)
    sys.exit(0)
if mode == "huge":
    sys.stdout.write("x" * (3 * 1024 * 1024))
    sys.exit(0)
if mode == "crash":
    print("keychain is locked")
    sys.exit(3)
if mode == "slow":
    time.sleep(float(os.environ.get("FAKE_HELPER_SLEEP", "0.5")))
db = json.load(open(db_path)) if os.path.exists(db_path) else {}
if action == "get":
    url = data.strip()
    if url not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": url, **db[url]}))
elif action == "store":
    req = json.loads(data)
    db[req["ServerURL"]] = {"Username": req["Username"], "Secret": req["Secret"]}
    json.dump(db, open(db_path, "w"))
elif action == "erase":
    url = data.strip()
    if url not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    del db[url]
    json.dump(db, open(db_path, "w"))
else:
    print("unknown action")
    sys.exit(2)
"""


class Helpers:
    """The tmp dir of fake helpers on PATH and what they hold."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def add(self, name: str) -> None:
        script = self.dir / f"docker-credential-{name}"
        script.write_text(f"#!{sys.executable}\n" + FAKE_HELPER)
        script.chmod(0o755)

    def db(self, name: str) -> dict[str, dict[str, str]]:
        path = self.dir / f"docker-credential-{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def put(self, name: str, server: str, username: str, secret: str) -> None:
        db = self.db(name)
        db[server] = {"Username": username, "Secret": secret}
        (self.dir / f"docker-credential-{name}.json").write_text(json.dumps(db))

    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helpers:
    directory = tmp_path / "helpers"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("FAKE_HELPER_MODE", raising=False)
    result = Helpers(directory)
    result.add("fake")
    return result


def write_config(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def plain_auth(user: str, password: str) -> dict[str, str]:
    import base64

    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- the protocol ------------------------------------------------------------------------------


def test_get_store_erase(helpers: Helpers) -> None:
    assert credhelper.get("fake", "reg.example:5000") is None
    credhelper.store("fake", "reg.example:5000", "alice", SECRET)
    assert helpers.db("fake") == {"reg.example:5000": {"Username": "alice", "Secret": SECRET}}
    found = credhelper.get("fake", "reg.example:5000")
    assert found is not None and (found.username, found.secret) == ("alice", SECRET)
    assert SECRET not in repr(found)
    assert credhelper.erase("fake", "reg.example:5000") is True
    assert credhelper.erase("fake", "reg.example:5000") is False  # "credentials not found": nothing to erase
    assert credhelper.get("fake", "reg.example:5000") is None
    assert [call[:2] for call in helpers.calls()] == [
        ["docker-credential-fake", a] for a in ("get", "store", "get", "erase", "erase", "get")]


def test_identity_token_and_docker_hub_url(helpers: Helpers, tmp_path: Path) -> None:
    helpers.put("fake", "https://index.docker.io/v1/", "<token>", "refresh-me")
    config = {"credsStore": "fake"}
    assert authfile.resolve(config, "docker.io") == Credentials(identity_token="refresh-me")
    assert helpers.calls()[-1] == ["docker-credential-fake", "get", "https://index.docker.io/v1/"]


def test_not_found_means_no_credentials_even_with_auths(helpers: Helpers, tmp_path: Path) -> None:
    """As docker: a configured helper owns the registry, so a stale ``auths`` secret is not used."""
    path = write_config(tmp_path / "config.json",
                        {"credsStore": "fake", "auths": {"reg.example": plain_auth("old", "stale")}})
    assert authfile.credentials_for("reg.example", path) is None


@pytest.mark.parametrize(("mode", "message"), [
    ("garbage", "returned invalid JSON"),
    ("nested", "returned invalid JSON"),
    ("huge", "printed more than"),
    ("crash", r"get failed \(exit 3\): keychain is locked"),
])
def test_misbehaving_helper_is_a_clear_error(helpers: Helpers, monkeypatch: pytest.MonkeyPatch, mode: str,
                                              message: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_HELPER_MODE", mode)
    monkeypatch.setenv("FAKE_HELPER_SECRET", SECRET)
    with pytest.raises(CredentialHelperError, match=message) as info:
        authfile.resolve({"credsStore": "fake"}, "reg.example")
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert len(str(info.value)) < 400


def test_hung_helper_times_out(helpers: Helpers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HELPER_MODE", "slow")
    monkeypatch.setenv("FAKE_HELPER_SLEEP", "30")
    monkeypatch.setattr(credhelper, "TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(CredentialHelperError, match=r"timed out|did not finish"):
        credhelper.get("fake", "reg.example")
    assert time.monotonic() - started < 10


def test_store_failure_does_not_echo_the_secret(helpers: Helpers, monkeypatch: pytest.MonkeyPatch) -> None:
    script = helpers.dir / "docker-credential-echo"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('bad input: ' + sys.stdin.read())\nsys.exit(1)\n")
    script.chmod(0o755)
    with pytest.raises(CredentialHelperError, match="store failed") as info:
        credhelper.store("echo", "reg.example", "u", SECRET)
    assert SECRET not in str(info.value)


def test_missing_or_unsafe_helper_name(helpers: Helpers) -> None:
    with pytest.raises(CredentialHelperError, match="docker-credential-nope not found in PATH"):
        authfile.resolve({"credsStore": "nope"}, "reg.example")
    with pytest.raises(CredentialHelperError, match="invalid credential helper name"):
        authfile.resolve({"credHelpers": {"reg.example": "../fake"}}, "reg.example")


def test_precedence_cred_helpers_then_creds_store_then_auths(helpers: Helpers) -> None:
    helpers.add("other")
    helpers.put("fake", "a.example", "store-user", "store-pass")
    helpers.put("fake", "b.example:5000", "store-user-b", "store-pass-b")
    helpers.put("other", "a.example", "helper-user", "helper-pass")
    auths = {"a.example": plain_auth("file-user", "file-pass"), "c.example": plain_auth("c-user", "c-pass")}
    config = {"credHelpers": {"a.example": "other"}, "credsStore": "fake", "auths": auths}
    assert authfile.resolve(config, "a.example") == Credentials("helper-user", "helper-pass")
    assert authfile.resolve(config, "b.example:5000") == Credentials("store-user-b", "store-pass-b")
    assert authfile.resolve(config, "c.example") is None  # credsStore owns every registry, as in docker
    without_store = {"credHelpers": {"https://a.example": "other"}, "auths": auths}  # a URL key still matches
    assert authfile.resolve(without_store, "a.example") == Credentials("helper-user", "helper-pass")
    assert authfile.resolve(without_store, "c.example") == Credentials("c-user", "c-pass")
    assert authfile.helper_for(without_store, "b.example:5000") is None


def test_store_and_remove_through_the_helper(helpers: Helpers, tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.json",
                        {"credsStore": "fake", "auths": {"reg.example": plain_auth("old", "stale")}})
    assert authfile.store_credentials(path, "reg.example", "alice", SECRET) == "fake"
    saved = json.loads(path.read_text())
    assert saved["auths"] == {"reg.example": {}} and saved["credsStore"] == "fake"
    assert SECRET not in path.read_text() and "stale" not in path.read_text()
    assert authfile.credentials_for("reg.example", path) == Credentials("alice", SECRET)
    assert authfile.remove_credentials(path, "reg.example") is True
    assert helpers.db("fake") == {} and json.loads(path.read_text())["auths"] == {}
    assert authfile.remove_credentials(path, "reg.example") is False


def test_remove_all_erases_known_registries_only(helpers: Helpers, tmp_path: Path) -> None:
    helpers.add("other")
    helpers.put("fake", "a.example", "u", "p")
    helpers.put("fake", "unrelated.example", "u", "p")  # another tool's login in the same keychain
    helpers.put("other", "b.example", "u", "p")
    path = write_config(tmp_path / "config.json", {"credsStore": "fake", "credHelpers": {"b.example": "other"},
                                                    "auths": {"a.example": {}}})
    assert authfile.remove_all(path) == []
    assert helpers.db("fake") == {"unrelated.example": {"Username": "u", "Secret": "p"}}
    assert helpers.db("other") == {}


# -- the async path ----------------------------------------------------------------------------


async def test_session_runs_the_helper_once_off_the_event_loop(helpers: Helpers, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent pulls share one helper run, and the loop keeps ticking while it runs."""
    helpers.put("fake", "reg.example", "alice", SECRET)
    path = write_config(tmp_path / "config.json", {"credsStore": "fake"})
    monkeypatch.setenv("FAKE_HELPER_MODE", "slow")
    monkeypatch.setenv("FAKE_HELPER_SLEEP", "0.5")
    ticks = 0
    clients = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.02)
            ticks += 1

    async def get_client(session: Session) -> None:
        clients.append(await session.client("reg.example"))

    async with Session(TransferOptions(authfile=path)) as session, trio.open_nursery() as outer:
        outer.start_soon(ticker)
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(get_client, session)
        outer.cancel_scope.cancel()
    assert len({id(c) for c in clients}) == 1
    assert clients[0].credentials == Credentials("alice", SECRET)
    assert [c[1] for c in helpers.calls()] == ["get"]
    assert ticks >= 10  # 0.5 s of helper time; a blocked loop would tick ~0 times


# -- against the htpasswd TLS registry ----------------------------------------------------------


def test_pull_with_only_a_helper_login(htpasswd_registry: RegistryServer, helpers: Helpers, cert_dir: Path,
                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reg = htpasswd_registry.host
    src = Store.open(tmp_path / "src")
    image = htpasswd_registry.ref(unique_repo("helper"), "v1")
    root = make_gadget_image(src, image)
    push_options = TransferOptions(cert_dir=cert_dir, credentials={reg: Credentials(TEST_USER, TEST_PASSWORD)})
    trio.run(push_image, src, image, push_options)

    helpers.put("fake", reg, TEST_USER, TEST_PASSWORD)
    config = write_config(tmp_path / "docker" / "config.json", {"credHelpers": {reg: "fake"}})
    assert TEST_PASSWORD not in config.read_text()
    dst_root = tmp_path / "dst"
    code, out, err = run("--store", str(dst_root), "image", "pull", image, "--authfile", str(config),
                         "--cert-dir", str(cert_dir))
    assert code == 0, err
    assert any(line.startswith("Successfully pulled ") and line.endswith(f"@{root.digest}")
               for line in err.splitlines())
    assert ["docker-credential-fake", "get", reg] in helpers.calls()
    assert TEST_PASSWORD not in out + err + caplog.text
    verify_store(dst_root)

    helpers.put("fake", reg, TEST_USER, "wrong-password")  # the helper, not a cached copy, is what counts
    code, out, err = run("--store", str(tmp_path / "dst2"), "image", "pull", image, "--authfile", str(config),
                         "--cert-dir", str(cert_dir))
    assert code == 1 and "invalid username or password" in err
    assert "wrong-password" not in out + err + caplog.text


def test_login_logout_through_a_helper(htpasswd_registry: RegistryServer, helpers: Helpers, cert_dir: Path,
                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reg = htpasswd_registry.host
    config = write_config(tmp_path / "conf" / "config.json", {"credsStore": "fake"})
    code, out, err = run("login", reg, "-u", TEST_USER, "--password-stdin", "--authfile", str(config),
                         "--cert-dir", str(cert_dir), "-v", input=TEST_PASSWORD + "\n")
    assert code == 0, err
    assert out.endswith("Login Succeeded\n") and "docker-credential-fake" in out
    assert helpers.db("fake") == {reg: {"Username": TEST_USER, "Secret": TEST_PASSWORD}}
    assert json.loads(config.read_text()) == {"credsStore": "fake", "auths": {reg: {}}}
    assert run("login", reg, "--get-login", "--authfile", str(config)) == (0, f"{TEST_USER}\n", "")

    assert run("logout", reg, "--authfile", str(config)) == (0, "Logout Succeeded\n", "")
    assert helpers.db("fake") == {}
    code, out, err = run("logout", reg, "--authfile", str(config))
    assert code != 0 and err == f"Error: not logged in to {reg}\n"
    assert TEST_PASSWORD not in caplog.text


def test_logout_all_warns_about_a_failing_helper(helpers: Helpers, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "config.json", {"credsStore": "fake", "auths": {"a.example": {}}})
    monkeypatch.setenv("FAKE_HELPER_MODE", "crash")
    code, out, err = run("logout", "--all", "--authfile", str(config))
    assert code == 0 and out == "Logout Succeeded\n"
    assert "WARN: could not erase credentials for a.example" in err
    assert json.loads(config.read_text())["auths"] == {}

