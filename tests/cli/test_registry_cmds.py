"""``image pull``/``image push``/``login``/``logout`` through the click CLI, against real registries."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry import authfile
from gadgetstore.engine.store import Store
from tests.support.cli import run_cli as run
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, unique_repo


def test_login_get_login_logout(htpasswd_registry: RegistryServer, cert_dir: Path, tmp_path: Path) -> None:
    auth = tmp_path / "conf" / "auth.json"
    reg = htpasswd_registry.host
    code, out, err = run("login", reg, "-u", TEST_USER, "--password-stdin", "--authfile", str(auth),
                         "--cert-dir", str(cert_dir), "-v", input=TEST_PASSWORD + "\n")
    assert code == 0, err
    assert out.endswith("Login Succeeded\n") and f"Used: {auth}" in out
    assert TEST_PASSWORD not in out + err
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.parent.stat().st_mode) == 0o700
    assert authfile.lookup(json.loads(auth.read_text()), reg) == authfile.Credentials(TEST_USER, TEST_PASSWORD)

    assert run("login", reg, "--get-login", "--authfile", str(auth)) == (0, f"{TEST_USER}\n", "")
    assert run("logout", reg, "--authfile", str(auth)) == (0, "Logout Succeeded\n", "")
    code, out, err = run("login", reg, "--get-login", "--authfile", str(auth))
    assert code != 0 and err == f"Error: not logged in to {reg}\n"
    code, out, err = run("logout", reg, "--authfile", str(auth))
    assert code != 0 and err == f"Error: not logged in to {reg}\n"


def test_login_password_flag_warns(htpasswd_registry: RegistryServer, cert_dir: Path, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    code, out, err = run("login", htpasswd_registry.host, "-u", TEST_USER, "-p", TEST_PASSWORD,
                         "--authfile", str(auth), "--cert-dir", str(cert_dir))
    assert code == 0
    assert "WARNING! Using --password via the CLI is insecure. Use --password-stdin." in err
    assert out == "Login Succeeded\n"


def test_login_wrong_password_stores_nothing(htpasswd_registry: RegistryServer, cert_dir: Path,
                                             tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    code, _out, err = run("login", htpasswd_registry.host, "-u", TEST_USER, "--password-stdin", "--authfile",
                         str(auth), "--cert-dir", str(cert_dir), input="wrong\n")
    assert code != 0
    assert err.startswith("Error: ") and "invalid username or password" in err and "wrong" not in err
    assert not auth.exists()


def test_logout_all_and_env_auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env-auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    authfile.store_credentials(env_file, "a.example:5000", "u", "p")
    authfile.store_credentials(env_file, "b.example", "u", "p")
    assert run("login", "b.example", "--get-login") == (0, "u\n", "")
    assert run("logout", "--all") == (0, "Logout Succeeded\n", "")
    assert json.loads(env_file.read_text())["auths"] == {}


def test_auth_file_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    default = Path(os.environ["XDG_DATA_HOME"]) / "gadgetstore" / "config.json"
    docker = Path(os.environ["HOME"]) / ".docker" / "config.json"
    assert authfile.auth_file_path() == docker  # default missing: docker's file is read
    assert authfile.auth_file_path(for_write=True) == default
    default.parent.mkdir(parents=True)
    default.write_text("{}")
    assert authfile.auth_file_path() == default
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "env.json"))
    assert authfile.auth_file_path() == tmp_path / "env.json"
    assert authfile.auth_file_path(tmp_path / "flag.json") == tmp_path / "flag.json"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    assert authfile.auth_file_path(for_write=True) == Path("/var/lib/gadgetstore/config.json")


def test_docker_config_fallback_is_used_for_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    docker = Path(os.environ["HOME"]) / ".docker" / "config.json"
    authfile.store_credentials(docker, "https://index.docker.io/v1/", "hub-user", "hub-pass")
    creds = authfile.credentials_for("docker.io", None)
    assert creds is not None and creds.username == "hub-user"


def test_pull_and_push_messages(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    src = Store.open(src_root)
    repo = unique_repo("cli")
    images = [anon_registry.ref(repo, f"v{i}") for i in range(3)]
    digests = [make_gadget_image(src, image).digest for image in images]
    for image in images:
        code, out, err = run("--store", str(src_root), "image", "push", image, "--insecure-registries",
                             anon_registry.host)
        assert code == 0, err
        assert err.splitlines()[-1] == f"Successfully pushed {normalize(image).repository}:{normalize(image).tag}" \
                                       f"@{digests[images.index(image)]}"

    code, out, err = run("--store", str(dst_root), "image", "pull", *images, "--insecure-registries",
                         f"other:1,{anon_registry.host}")
    assert code == 0, err
    assert out == ""
    lines = err.splitlines()
    for image, digest in zip(images, digests, strict=True):
        assert f"Pulling {image}..." in lines  # already a full name: unchanged by normalisation
        assert f"Successfully pulled {anon_registry.host}/{repo}:{image.rsplit(':', 1)[1]}@{digest}" in lines
    assert sorted(Store.open(dst_root).tags()) == sorted(str(normalize(i)) for i in images)
    verify_store(dst_root)


def test_pull_failure_is_one_line(anon_registry: RegistryServer, tmp_path: Path) -> None:
    missing = anon_registry.ref(unique_repo("cli"), "nope")
    code, _out, err = run("--store", str(tmp_path / "s"), "image", "pull", missing, "--insecure-registries",
                         anon_registry.host)
    assert code == 1
    assert err.splitlines()[0] == f"Pulling {missing}..."
    assert err.splitlines()[1].startswith(f"Error: pulling {missing}: ") and "not found" in err
    assert len(err.splitlines()) == 2, "no 'Fetched 0 B for 1 image(s):' summary after a failure"


def test_pull_prints_normalised_name(tmp_path: Path) -> None:
    # A missing --authfile fails before any connection is made, so this never touches the network.
    code, _, err = run("--store", str(tmp_path / "s"), "image", "pull", "trace_open",
                       "--authfile", str(tmp_path / "missing.json"))
    assert code == 1
    assert err.splitlines()[0] == "Pulling ghcr.io/inspektor-gadget/gadget/trace_open:latest..."
    assert "does not exist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("nested", ["authfile", "policy"])
def test_a_nested_auth_file_or_store_policy_fails_the_pull_in_one_line(tmp_path: Path, nested: str) -> None:
    """JSON 200,000 ``[`` deep is read as not valid JSON, before any connection (port 9 is never reached)."""
    store, auth = tmp_path / "s", tmp_path / "auth.json"
    Store.open(store)
    target = auth if nested == "authfile" else store / "policy.json"
    target.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    code, _, err = run("--store", str(store), "image", "pull", "127.0.0.1:9/gadget:v1", "--authfile", str(auth))
    expected = {"authfile": "Pulling 127.0.0.1:9/gadget:v1...\nError: pulling 127.0.0.1:9/gadget:v1: "
                            f"auth file {auth} is not valid JSON\n",
                "policy": f"Error: store policy {target} is not valid JSON (nested too deeply)\n"}
    assert (code, err) == (1, expected[nested])
    assert Store.open(store).tags() == []


@pytest.mark.parametrize("name", ["127.0.0.1:9/gadget:vé", "127.0.0.1:9/gadget:v\u0663", "127.0.0.1:9/gädget:v1",
                                  "127.0.0.1:9/gadget:v1\n"])
@pytest.mark.parametrize("verb", ["pull", "push"])
def test_names_beyond_ascii_are_refused_in_one_line(tmp_path: Path, verb: str, name: str) -> None:
    """Refused by the reference grammar before any connection (port 9 would refuse one anyway)."""
    code, out, err = run("--store", str(tmp_path / "s"), "image", verb, name, "--insecure-registries", "127.0.0.1:9")
    assert code == 1 and out == ""
    assert err.startswith("Error: invalid reference format") and err.count("\n") == 1, err


def test_pull_with_login_over_tls(htpasswd_registry: RegistryServer, cert_dir: Path, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    src_root = tmp_path / "src"
    image = htpasswd_registry.ref(unique_repo("cli"), "v1")
    digest = make_gadget_image(Store.open(src_root), image).digest
    assert run("login", htpasswd_registry.host, "-u", TEST_USER, "--password-stdin", "--authfile", str(auth),
               "--cert-dir", str(cert_dir), input=TEST_PASSWORD)[0] == 0
    code, _, err = run("--store", str(src_root), "image", "push", image, "--authfile", str(auth),
                       "--cert-dir", str(cert_dir))
    assert code == 0, err
    code, _, err = run("--store", str(tmp_path / "dst"), "image", "pull", image, "--authfile", str(auth),
                       "--cert-dir", str(cert_dir))
    assert code == 0, err
    assert f"@{digest}" in err
    code, _, err = run("--store", str(tmp_path / "dst2"), "image", "pull", image, "--cert-dir", str(cert_dir),
                       "--authfile", str(tmp_path / "missing.json"))
    assert code != 0 and "does not exist" in err


def test_tls_to_a_plain_http_registry_says_which_flag_to_add(anon_registry: RegistryServer, tmp_path: Path) -> None:
    host = anon_registry.host
    hint = f"{host} is plain HTTP: add --insecure-registries {host}"
    code, _out, err = run("--store", str(tmp_path / "store"), "image", "pull", f"{host}/demo:v1")
    assert code == 1 and f"Error: pulling {host}/demo:v1: {hint}\n" in err
    code, _out, err = run("login", host, "-u", TEST_USER, "--password-stdin", "--authfile", str(tmp_path / "a.json"),
                          input=TEST_PASSWORD)
    assert (code, err) == (1, f"Error: {hint}\n")


def test_login_to_a_plain_http_registry(plain_htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    reg = plain_htpasswd_registry.host
    auth = tmp_path / "auth.json"
    code, out, err = run("login", reg, "--insecure-registries", reg, "-u", TEST_USER, "--password-stdin",
                         "--authfile", str(auth), input=TEST_PASSWORD + "\n")
    assert (code, out) == (0, "Login Succeeded\n"), err
    assert authfile.lookup(json.loads(auth.read_text()), reg) == authfile.Credentials(TEST_USER, TEST_PASSWORD)
    # What was stored for the plain-HTTP registry by name is what push and pull send it, as Docker does.
    image = plain_htpasswd_registry.ref(unique_repo("plain-login"), "v1")
    digest = make_gadget_image(Store.open(tmp_path / "src"), image).digest
    (tmp_path / "none.json").write_text("{}")
    for store, verb in (("src", "push"), ("dst", "pull")):
        anonymous = run("--store", str(tmp_path / store), "image", verb, image, "--insecure-registries", reg,
                        "--authfile", str(tmp_path / "none.json"))
        assert anonymous[0] == 1 and f"gadgetstore login {reg} --insecure-registries {reg}" in anonymous[2]
        code, _out, err = run("--store", str(tmp_path / store), "image", verb, image, "--insecure-registries", reg,
                              "--authfile", str(auth))
        assert code == 0, err
    assert Store.open(tmp_path / "dst").resolve(image).digest == digest
    code, _out, err = run("login", reg, "--insecure-registries", reg, "-u", TEST_USER, "--password-stdin",
                          "--authfile", str(tmp_path / "other.json"), input="wrong\n")
    assert code == 1 and "invalid username or password" in err
    assert not (tmp_path / "other.json").exists()


def test_login_plain_http_flag_as_ig(plain_htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    """ig's login --plain-http (cmd/common/auth/auth.go): HTTP for this registry, credentials still checked."""
    reg = plain_htpasswd_registry.host
    auth = tmp_path / "auth.json"
    args = ("login", reg, "-u", TEST_USER, "--password-stdin", "--authfile", str(auth))
    code, _out, err = run(*args, input=TEST_PASSWORD + "\n")
    assert code == 1 and "plain HTTP" in err
    assert run(*args, "--plain-http", input=TEST_PASSWORD + "\n")[:2] == (0, "Login Succeeded\n")
    assert authfile.lookup(json.loads(auth.read_text()), reg) == authfile.Credentials(TEST_USER, TEST_PASSWORD)


def test_login_tls_verify_false_checks_without_the_ca_and_does_not_leak(htpasswd_registry: RegistryServer,
                                                                        cert_dir: Path, tmp_path: Path) -> None:
    """ig's login --tls-verify (cmd/common/auth/auth.go): =false checks the credentials without
    verifying the certificate and stores them as usual; pull and push still verify."""
    reg = htpasswd_registry.host
    auth = tmp_path / "auth.json"
    login = ("login", reg, "-u", TEST_USER, "--password-stdin", "--authfile", str(auth))
    untrusted = f"Error: https://{reg}: TLS certificate not trusted: "
    for verifying in ((), ("--tls-verify",), ("--tls-verify=true",), ("--tls-verify=1",), ("--tls-verify=T",)):
        code, out, err = run(*login, *verifying, input=TEST_PASSWORD)
        assert (code, out) == (1, ""), verifying
        assert err.startswith(untrusted) and err.count("\n") == 1, (verifying, err)
        assert not auth.exists()
    code, _out, err = run(*login, "--tls-verify=maybe", input=TEST_PASSWORD)
    assert code == 2 and err.splitlines()[-1] == ("Error: Invalid value for '--tls-verify': 'maybe' is not a "
                                                  "boolean (true, false, 1, 0, t, f, TRUE, False, ...)")
    assert not auth.exists()
    for not_verifying in ("--tls-verify=false", "--tls-verify=0", "--tls-verify=F"):
        assert run(*login, not_verifying, input=TEST_PASSWORD) == (0, "Login Succeeded\n", ""), not_verifying
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert authfile.lookup(json.loads(auth.read_text()), reg) == authfile.Credentials(TEST_USER, TEST_PASSWORD)

    image = htpasswd_registry.ref(unique_repo("tls-verify"), "v1")
    make_gadget_image(Store.open(tmp_path / "src"), image)
    assert run("--store", str(tmp_path / "src"), "image", "push", image, "--authfile", str(auth),
               "--cert-dir", str(cert_dir))[0] == 0
    code, _out, err = run("--store", str(tmp_path / "dst"), "image", "pull", image, "--authfile", str(auth))
    assert code == 1 and f"Error: pulling {image}: {untrusted[len('Error: '):]}" in err
    assert not Store.open(tmp_path / "dst").tags()
    code, _out, err = run("--store", str(tmp_path / "dst"), "image", "pull", image, "--authfile", str(auth),
                          "--cert-dir", str(cert_dir))
    assert code == 0, err  # the credentials the unverified check stored are the registry's


def test_cert_dir_per_registry_in_the_registries_config(htpasswd_registry: RegistryServer, cert_dir: Path,
                                                        tmp_path: Path) -> None:
    reg = htpasswd_registry.host
    config = tmp_path / "registries.toml"
    login = ("login", reg, "-u", TEST_USER, "--password-stdin", "--authfile", str(tmp_path / "auth.json"),
             "--registries-config", str(config))
    config.write_text("")
    code, _out, err = run(*login, input=TEST_PASSWORD)
    assert code == 1 and "TLS certificate not trusted" in err
    config.write_text(f'[registry."{reg}"]\ncert_dir = "{cert_dir}"\n')
    assert run(*login, input=TEST_PASSWORD)[:2] == (0, "Login Succeeded\n")
    empty = tmp_path / "empty-certs"
    empty.mkdir()
    code, _out, err = run(*login, "--cert-dir", str(empty), input=TEST_PASSWORD)  # the flag wins over the file
    assert code == 1 and "TLS certificate not trusted" in err
    config.write_text(f'[registry."{reg}"]\ncert_dir = "{empty}"\n')
    assert run(*login, "--cert-dir", str(cert_dir), input=TEST_PASSWORD)[0] == 0
    config.write_text(f'[registry."{reg}"]\ncert_dir = "{cert_dir}"\n[registry."other.example"]\ncert_dir = "gone"\n')
    assert run(*login, input=TEST_PASSWORD)[0] == 0  # another registry's missing directory is its own problem
    config.write_text(f'[registry."{reg}"]\ncert_dir = "missing"\n')
    code, _out, err = run(*login, input=TEST_PASSWORD)
    assert (code, err) == (1, f"Error: certificate directory {tmp_path / 'missing'} does not exist or is not a "
                              f"directory\n")
